"""HTTP and SSE to the sync server: requests, the one stream, and the reconnect schedule.

Thin I/O over httpx (events decoded by ``cache.sse``); every message is encoded and parsed by
``queryplanner.protocol``. Error answers are translated here, at the boundary: a 409 with code
``schema_version`` becomes ``SchemaVersionError`` carrying both versions, any other non-2xx a
``ServerError``; network failures stay ``httpx.TransportError`` for the reconnect loop.

``backoff_delay`` is the pure reconnect schedule: exponential with full jitter
(``rng() * min(cap, base * 2**attempt)``), so a server restart is not met by every client at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from queryplanner.protocol import ErrorBody, Event, ProtocolError, parse_event

from .errors import SchemaVersionError, ServerError
from .sse import SSE, SSEDecoder


def backoff_delay(
    attempt: int, rng: Callable[[], float], *, base: float = 0.05, cap: float = 5.0
) -> float:
    """Seconds to wait before reconnect ``attempt`` (0-based): full jitter on 2**attempt."""
    return float(rng()) * min(cap, base * 2.0 ** min(attempt, 30))


@dataclass(frozen=True)
class StreamEvent:
    event: Event
    id: str | None


def raise_for_error(response: httpx.Response, body: bytes, client_version: int) -> None:
    if response.status_code < 300:
        return
    try:
        err = ErrorBody.from_json(orjson.loads(body))
    except (ProtocolError, orjson.JSONDecodeError):
        raise ServerError(
            response.status_code, "unknown", body[:200].decode("utf-8", "replace")
        ) from None
    if err.code == "schema_version":
        raise SchemaVersionError(
            int(err.extra.get("clientVersion", client_version)),
            int(err.extra.get("serverVersion", 0)),
            int(err.extra.get("minClientVersion", 0)),
            err.message,
        )
    raise ServerError(response.status_code, err.code, err.message, err.extra)


class Transport:
    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        schema_version: int,
        token: str | None,
        *,
        arrow: bool = True,
    ) -> None:
        self.http = http
        self.url = url.rstrip("/")
        self.schema_version = schema_version
        self.arrow = arrow  # hydrations as Arrow blocks (``rows=arrow``)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        response = await self.http.post(
            self.url + path,
            content=orjson.dumps(body),
            headers={**self.headers, "Content-Type": "application/json"},
        )
        raise_for_error(response, response.content, self.schema_version)
        return orjson.loads(response.content)

    async def get_json(self, path: str) -> Any:
        response = await self.http.get(self.url + path, headers=self.headers)
        raise_for_error(response, response.content, self.schema_version)
        return orjson.loads(response.content)

    @asynccontextmanager
    async def _sse(
        self, method: str, path: str, **kwargs: Any
    ) -> AsyncIterator[AsyncIterator[SSE]]:
        headers = {**kwargs.pop("headers", {}), "Accept": "text/event-stream",
                   "Cache-Control": "no-store"}
        async with self.http.stream(method, self.url + path, headers=headers, **kwargs) as r:
            if r.status_code >= 300:
                body = await r.aread()
                raise_for_error(r, body, self.schema_version)
            kind = r.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                raise ServerError(
                    r.status_code, "unknown", f"Expected an event stream, got {kind!r:.80}."
                )
            yield _events(r)

    async def sync_stream(
        self, client_id: str, last_event_id: str | None
    ) -> AsyncIterator[StreamEvent]:
        """The client's one stream; parsed events with their SSE ids."""
        headers = dict(self.headers)
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        params = {"clientId": client_id, "schemaVersion": str(self.schema_version)}
        if self.arrow:
            params["rows"] = "arrow"
        timeout = httpx.Timeout(10.0, read=None)
        async with self._sse("GET", "/sync", params=params, headers=headers, timeout=timeout) as it:
            async for sse in it:
                if not sse.event or sse.event == "message":
                    continue
                yield StreamEvent(parse_event(sse.event, sse.data), sse.id or None)

    async def query_stream(self, query: dict[str, Any], *, live: bool) -> AsyncIterator[Event]:
        """``POST /query``: rows/complete events (and ``result`` events when live)."""
        body = {"schemaVersion": self.schema_version, "query": query, "live": live}
        headers = {**self.headers, "Content-Type": "application/json"}
        timeout = httpx.Timeout(30.0, read=None if live else 60.0)
        async with self._sse(
            "POST", "/query", content=orjson.dumps(body), headers=headers, timeout=timeout
        ) as it:
            async for sse in it:
                if sse.event and sse.event != "message":
                    yield parse_event(sse.event, sse.data)


async def _events(response: httpx.Response) -> AsyncIterator[SSE]:
    decoder = SSEDecoder()
    async for chunk in response.aiter_bytes():
        for sse in decoder.feed(chunk):
            yield sse
    for sse in decoder.close():
        yield sse
