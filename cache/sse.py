"""Server-Sent Events decoded from bytes as they arrive (the WHATWG event-stream format).

The client's stream carries hydrations of ~100 MB in events of a few MB each. A decoder that
first turns bytes into text and then splits lines in Python spent a sixth of a hydration
there; this one finds line ends with ``bytearray.find`` (in C), only in the bytes not yet
scanned, and hands each event's data over as bytes (``orjson`` parses bytes directly).

Per the format: lines end with CRLF, LF or CR; ``field: value`` (one leading space of the
value dropped; a line without a colon is a field with an empty value); lines starting with a
colon are comments; ``data`` lines join with LF; a blank line dispatches the event (none when
it has no data); ``id`` persists to the following events and is ignored when it holds NUL.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SSE:
    event: str
    data: bytes
    id: str


class SSEDecoder:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no line end
        self._event = ""
        self._data: list[bytes] = []
        self._last_id = ""

    def feed(self, chunk: bytes) -> list[SSE]:
        """The events completed by ``chunk``."""
        buf = self._buf
        buf += chunk
        out: list[SSE] = []
        start = 0
        while True:
            lf = buf.find(b"\n", self._scanned)
            cr = buf.find(b"\r", self._scanned, lf if lf >= 0 else len(buf))
            if cr < 0 and lf < 0:
                self._scanned = len(buf)
                break
            if cr >= 0:
                if cr + 1 == len(buf):  # a CR last: it may be the first half of a CRLF
                    self._scanned = cr
                    break
                end, nxt = cr, cr + 2 if buf[cr + 1] == 0x0A else cr + 1
            else:
                end, nxt = lf, lf + 1
            self._line(bytes(buf[start:end]), out)
            start = self._scanned = nxt
        if start:
            del buf[:start]
            self._scanned -= start
        return out

    def close(self) -> list[SSE]:
        """At the end of the stream: a line ended by a lone CR last is complete; an event
        without its blank line is dropped (as the format says)."""
        out: list[SSE] = []
        if self._buf.endswith(b"\r"):
            self._line(bytes(self._buf[:-1]), out)
        self._buf.clear()
        self._scanned = 0
        return out

    def _line(self, line: bytes, out: list[SSE]) -> None:
        if not line:
            if self._data:
                out.append(SSE(self._event or "message", b"\n".join(self._data), self._last_id))
            self._event, self._data = "", []
            return
        if line[0] == 0x3A:  # ":" a comment (the server's keep-alive pings)
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id" and b"\0" not in value:
            self._last_id = value.decode("utf-8", "replace")
