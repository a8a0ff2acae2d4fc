"""Helpers of the client tests against a real server: seeding, bounded waits, recorders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import reactivex

from cache import Client, Snapshot
from queryplanner import Schema
from server.testing import Api, seed_mutations

T = TypeVar("T")
WAIT = 15.0


def run(coro_fn: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
    """Run one async test body with a hard bound."""

    async def main() -> T:
        return await asyncio.wait_for(coro_fn(), timeout)  # type: ignore[arg-type]

    return asyncio.run(main())


def seed(url: str, n_issues: int = 6) -> Api:
    api = Api(url, "seed-client")
    api.mutate(*seed_mutations(n_issues))
    return api


async def until(cond: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Wait (bounded) until ``cond()`` holds; the error names what was awaited."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out after {timeout}s waiting for {what}.")
        await asyncio.sleep(0.01)


class Recorder:
    """Subscribes to an observable of snapshots and keeps every one."""

    def __init__(self, source: reactivex.Observable[Snapshot]) -> None:
        self.snaps: list[Snapshot] = []
        self.errors: list[Exception] = []
        self.disposable = source.subscribe(self.snaps.append, self.errors.append)

    @property
    def last(self) -> Snapshot:
        assert self.snaps, "no snapshot yet"
        return self.snaps[-1]

    async def complete(self, timeout: float = WAIT) -> Snapshot:
        await until(
            lambda: bool(self.snaps) and self.snaps[-1].complete, "a complete snapshot", timeout
        )
        return self.last

    async def matching(
        self, cond: Callable[[Snapshot], bool], what: str, timeout: float = WAIT
    ) -> Snapshot:
        await until(lambda: bool(self.snaps) and cond(self.snaps[-1]), what, timeout)
        return self.last

    def dispose(self) -> None:
        self.disposable.dispose()


def ids(snap: Snapshot) -> list[Any]:
    return [r["id"] for r in snap.rows]


async def online(client: Client) -> None:
    await until(lambda: client.connection_state.value.value == "online", "the client online")


def locked(client: Client, fn: Callable[..., T], *args: Any) -> T:
    """Read the client's store as the client does: holding its lock (a poke may be applying
    on the worker thread)."""
    with client.local.lock:
        return fn(*args)


def client_for(url: str, schema: Schema, **kw: Any) -> Client:
    return Client(url, schema, backoff_base=0.02, backoff_cap=0.2, **kw)
