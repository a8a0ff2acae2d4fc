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
from sse_starlette import EventSourceResponse, ServerSentEvent

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

    def push(self, item: Item) -> None:
        if self.closed:
            return
        size = len(item[2])
        # Cut off once what waits reaches the limit: the queue never holds more than the limit
        # plus one event, and one event larger than the limit (a big hydration) still goes out.
        if self.bytes >= self.limit:
            self.close(
                ErrorEvent(
                    "slow_consumer",
                    f"The client fell more than {self.limit} bytes behind; resume from the "
                    "last event id.",
                )
            )
            return
        self._items.append(item)
        self.bytes += size
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

    async def drain(self) -> AsyncIterator[Item]:
        while True:
            while self._items:
                item = self._items.popleft()
                if not (self.closed and item[1] == "error"):
                    self.bytes -= len(item[2])
                yield item
            if self.closed:
                return
            self._ready.clear()
            await self._ready.wait()


def sse_response(
    outbox: Outbox,
    *,
    ping: float,
    on_end: Callable[[], None],
    shutdown: anyio.Event,
    grace: float = 1.0,
) -> EventSourceResponse:
    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            async for sse_id, name, data in outbox.drain():
                yield ServerSentEvent(data=data.decode(), event=name, id=sse_id)
        finally:
            on_end()

    return EventSourceResponse(
        events(),
        ping=ping,
        shutdown_event=shutdown,
        shutdown_grace_period=grace,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
