"""Writes: optimistic mutations, the persisted outbox and their outcomes (a part of ``Client``).

A mutation gets the next client mutation id, goes into the outbox (``_qs_outbox``, persisted
with the store) and into the pending layer in one step, so every affected subscription sees it
at once. The flush loop sends the whole outbox in order whenever it is woken and online; the
server answers replays of already processed ids with their recorded outcomes, so a write is
applied exactly once however often it is sent (after a reconnect or a restart). An outcome
settles the pending layer: applied writes give way to the server's rows when its version
arrives, rejected ones are rolled back and their future fails with ``MutationRejected``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from queryplanner import Schema
from queryplanner.protocol import MutationResult

from .errors import ClientClosed, MutationRejected, SchemaVersionError, ServerError
from .local import LocalState
from .locking import locked as _locked
from .store import LocalStore
from .transport import Transport

log = logging.getLogger("querysync.cache")


class Writes:
    # Provided by ``Client``.
    schema: Schema
    store: LocalStore
    local: LocalState
    client_id: str
    _closed: bool
    _futures: dict[int, asyncio.Future[MutationResult]]
    _flush_wake: asyncio.Event
    _online: asyncio.Event

    _check_open: Callable[[], Transport]
    _update_needed: Callable[[SchemaVersionError], None]
    _refresh: Callable[[set[str] | None], None]

    def insert(self, table: str, row: Mapping[str, Any]) -> asyncio.Future[MutationResult]:
        return self.mutate({"op": "insert", "table": table, "row": dict(row)})

    def upsert(self, table: str, row: Mapping[str, Any]) -> asyncio.Future[MutationResult]:
        return self.mutate({"op": "upsert", "table": table, "row": dict(row)})

    def update(
        self,
        table: str,
        key: Sequence[Any],
        set: Mapping[str, Any],
        *,
        if_version: int | None = None,
    ) -> asyncio.Future[MutationResult]:
        body: dict[str, Any] = {"op": "update", "table": table, "key": list(key), "set": dict(set)}
        if if_version is not None:
            body["ifVersion"] = if_version
        return self.mutate(body)

    def delete(self, table: str, key: Sequence[Any]) -> asyncio.Future[MutationResult]:
        return self.mutate({"op": "delete", "table": table, "key": list(key)})

    @_locked
    def mutate(self, mutation: Mapping[str, Any]) -> asyncio.Future[MutationResult]:
        """Apply a write optimistically now; the future resolves when the server decides it.

        ``mutation`` is the wire form without ``id`` (docs/protocol.md, POST /mutate). Rejection
        rolls the optimistic change back and fails the future with ``MutationRejected``.
        """
        if self._closed:
            raise ClientClosed("The client is closed; create a new Client.")
        self.schema.table(mutation["table"])
        mid = int(self.store.get_meta("next_mutation_id") or 1)
        body = {**mutation, "id": mid}
        with self.store.transaction():
            self.store.set_meta("next_mutation_id", str(mid + 1))
            self.store.outbox_add(body)
        self.local.add_pending(body)
        fut: asyncio.Future[MutationResult] = asyncio.get_running_loop().create_future()
        self._futures[mid] = fut
        self._refresh({mutation["table"]})
        self._flush_wake.set()
        return fut

    @_locked
    def _restore_pending(self) -> None:
        """Lay the persisted outbox back on the store after a restart."""
        self.local.restore(self.store.outbox())

    async def _flush_loop(self) -> None:
        transport = self._check_open()
        while not self._closed:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            await self._online.wait()
            with self.local.lock:
                batch = self.store.outbox()
            if not batch:
                continue
            body = {
                "clientId": self.client_id,
                "schemaVersion": self.schema.version,
                "mutations": batch,
            }
            try:
                answer = await transport.post("/mutate", body)
            except SchemaVersionError as exc:
                self._update_needed(exc)
                continue
            except ServerError as exc:
                log.warning("the outbox was refused: %s", exc)
                continue
            except httpx.HTTPError as exc:
                log.info("sending the outbox failed (will retry on reconnect): %s", exc)
                continue
            results = [MutationResult.from_json(r) for r in answer.get("results", [])]
            self._settle(batch, results, answer)

    @_locked
    def _settle(
        self, batch: list[dict[str, Any]], results: list[MutationResult], answer: Any
    ) -> None:
        if results:
            self.store.outbox_remove_through(max(r.id for r in results))
        self.local.settle(
            {
                r.id: (r.version or answer.get("version")) if r.status == "applied" else None
                for r in results
            }
        )
        for res in results:
            self._resolve(res)
        self._refresh({m["table"] for m in batch})

    @_locked
    def _resolve(self, res: MutationResult) -> None:
        fut = self._futures.pop(res.id, None)
        if fut is None or fut.done():
            return
        if res.status == "rejected":
            fut.set_exception(MutationRejected(res.id, res.reason or "no reason given"))
        else:
            fut.set_result(res)


