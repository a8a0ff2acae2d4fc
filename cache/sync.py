"""A synchronous facade for scripts and notebooks: the asyncio ``Client`` on a background loop.

    client = SyncClient("http://127.0.0.1:8000", schema)
    snap = client.query(q)                 # blocks until answered
    client.update("issue", [42], {"status": "done"}).result(timeout=5)
    client.subscribe(q).subscribe(print)   # observers run on the client's loop thread
    client.close()

Every call is handed to the client's own event loop thread (DuckDB is only ever used there);
blocking calls take a ``timeout`` in seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import reactivex
from reactivex.abc import ObserverBase, SchedulerBase
from reactivex.disposable import Disposable

from queryplanner import Query, Schema
from queryplanner.protocol import MutationResult

from .client import DEFAULT_BUDGET, Client
from .live import Snapshot

T = TypeVar("T")


class SyncClient:
    def __init__(
        self,
        url: str,
        schema: Schema,
        token: str | None = None,
        budget_bytes: int = DEFAULT_BUDGET,
        path: str | None = None,
        **options: Any,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="querysync", daemon=True
        )
        self._thread.start()

        async def make() -> Client:
            client = Client(url, schema, token, budget_bytes, path, **options)
            await client.start()
            return client

        self.client: Client = self._run(make(), timeout=30)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _call(self, fn: Callable[[], T], timeout: float | None = 30) -> T:
        async def call() -> T:
            return fn()

        return self._run(call(), timeout)

    @property
    def connection_state(self) -> reactivex.Observable[Any]:
        return self.client.connection_state

    @property
    def cache_usage(self) -> reactivex.Observable[Any]:
        return self.client.cache_usage

    def query(self, query: Query, timeout: float | None = 30) -> Snapshot:
        return self._run(self.client.query(query), timeout)

    def preload(
        self, query: Query, *, ttl: float | None = None, timeout: float | None = 300
    ) -> int:
        """Like ``Client.preload``: blocks until the store holds the query complete."""
        return self._run(self.client.preload(query, ttl=ttl), timeout)

    def explain(self, query: Query) -> str:
        return self._call(lambda: self.client.explain(query))

    def subscribe(
        self, query: Query, *, ttl: float | None = None
    ) -> reactivex.Observable[Snapshot]:
        """Like ``Client.subscribe``; subscribing and disposing hop onto the client's loop."""
        source = self._call(lambda: self.client.subscribe(query, ttl=ttl))

        def on_subscribe(
            observer: ObserverBase[Snapshot], scheduler: SchedulerBase | None = None
        ) -> Disposable:
            inner = self._call(lambda: source.subscribe(observer))
            def dispose() -> None:
                self._loop.call_soon_threadsafe(inner.dispose)

            return Disposable(dispose)

        return reactivex.create(on_subscribe)

    def mutate(self, mutation: Mapping[str, Any]) -> concurrent.futures.Future[MutationResult]:
        """Applied optimistically before this returns; ``.result(timeout)`` waits for the server."""
        return self._write(lambda: self.client.mutate(mutation))

    def insert(
        self, table: str, row: Mapping[str, Any]
    ) -> concurrent.futures.Future[MutationResult]:
        return self._write(lambda: self.client.insert(table, row))

    def upsert(
        self, table: str, row: Mapping[str, Any]
    ) -> concurrent.futures.Future[MutationResult]:
        return self._write(lambda: self.client.upsert(table, row))

    def update(
        self,
        table: str,
        key: Sequence[Any],
        set: Mapping[str, Any],
        *,
        if_version: int | None = None,
    ) -> concurrent.futures.Future[MutationResult]:
        return self._write(lambda: self.client.update(table, key, set, if_version=if_version))

    def delete(self, table: str, key: Sequence[Any]) -> concurrent.futures.Future[MutationResult]:
        return self._write(lambda: self.client.delete(table, key))

    def _write(
        self, start: Callable[[], asyncio.Future[MutationResult]]
    ) -> concurrent.futures.Future[MutationResult]:
        """Start a write on the client's loop (the async client builds its body); the returned
        future waits for the server's decision."""
        fut = self._call(start)

        async def wait() -> MutationResult:
            return await fut

        return asyncio.run_coroutine_threadsafe(wait(), self._loop)

    def close(self) -> None:
        try:
            self._run(self.client.close(), timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
