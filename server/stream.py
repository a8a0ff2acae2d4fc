"""One client's outgoing SSE queue, bounded in bytes, and the response that drains it.

The engine thread pushes encoded events with ``loop.call_soon_threadsafe(outbox.push, ...)``.
Events wait here while the socket is slower than the engine; when the waiting bytes pass the
limit the client is cut off: the queue is dropped (memory is freed at once), one ``error``
event ``slow_consumer`` is sent and the stream ends. The client resumes from its last id.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

import anyio
from sse_starlette import EventSourceResponse

from queryplanner.protocol import ErrorEvent, encode_event

Item = tuple[str | None, str, bytes]  # (SSE id, event name, JSON data)


class Outbox:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self._items: deque[Item] = deque()
        self.bytes = 0
        self._ready = asyncio.Event()
        self.closed = False
        self.on_close: Callable[[Outbox], None] | None = None
        # Set (by the engine) while a hydration streams rows to this client ahead of its
        # step's last push: until that push, waiting bytes do not cut the client off.
        self.hydrating = False

    def hydrated(self) -> None:
        self.hydrating = False

    def push(self, item: Item) -> None:
        self.push_many([item])

    def push_many(self, items: list[Item]) -> None:
        """Queue one engine step's events for this client (checked against the bound once)."""
        if self.closed:
            return
        # Cut off once what waits reaches the limit: the queue never holds more than the limit
        # plus one step's events, and a step larger than the limit (a big hydration) still
        # goes out when nothing waits.
        if self.bytes >= self.limit and not self.hydrating:
            self.close(
                ErrorEvent(
                    "slow_consumer",
                    f"The client fell more than {self.limit} bytes behind; resume from the "
                    "last event id.",
                )
            )
            return
        for item in items:
            self._items.append(item)
            self.bytes += len(item[2])
        self._ready.set()

    def close(self, final: ErrorEvent | None = None) -> None:
        """End the stream after ``final`` (dropping whatever still waits)."""
        if self.closed:
            return
        self._items.clear()
        self.bytes = 0
        if final is not None:
            name, data = encode_event(final)
            self._items.append((None, name, data))
        self.closed = True
        self._ready.set()
        if self.on_close is not None:
            self.on_close(self)

    async def drain(self) -> AsyncIterator[list[Item]]:
        """Everything waiting, as one list per wake-up (written to the socket as one chunk)."""
        while True:
            if self._items:
                items = list(self._items)
                self._items.clear()
                if not self.closed:
                    self.bytes = 0
                yield items
                continue
            if self.closed:
                return
            self._ready.clear()
            await self._ready.wait()


def frame(sse_id: str | None, name: str, data: bytes) -> bytes:
    """One SSE event; ``data`` is compact JSON (orjson), so it is one ``data:`` line."""
    head = b"event: " + name.encode() + b"\r\n"
    if sse_id is not None:
        head = b"id: " + sse_id.encode() + b"\r\n" + head
    return head + b"data: " + data + b"\r\n\r\n"


def sse_response(
    outbox: Outbox,
    *,
    ping: float,
    on_end: Callable[[], None],
    shutdown: anyio.Event,
    grace: float = 1.0,
) -> EventSourceResponse:
    async def events() -> AsyncIterator[bytes]:
        try:
            async for items in outbox.drain():
                # Pre-encoded frames, joined: one socket write for all that waited.
                yield b"".join(frame(*item) for item in items)
        finally:
            on_end()

    return EventSourceResponse(
        events(),
        ping=ping,
        shutdown_event=shutdown,
        shutdown_grace_period=grace,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
