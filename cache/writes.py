"""Writes: optimistic mutations, the persisted outbox and their outcomes (a part of ``Client``).

A mutation gets the next client mutation id, goes into the outbox (``_qs_outbox``, persisted
with the store) and into the pending layer in one step, so every affected subscription sees it
at once. The flush loop sends the outbox in order whenever it is woken and online; the
server answers replays of already processed ids with their recorded outcomes, so a write is
applied exactly once however often it is sent (after a reconnect or a restart). An outcome
settles the pending layer: applied writes give way to the server's rows when its version
arrives, rejected ones are rolled back and their future fails with ``MutationRejected``.

An error answer to the whole request is classified by ``classify`` (pure): a malformed
mutation the server refuses (400/422, or 413 for one mutation) is rolled back like a rejected
one; a gap in the ids (409 ``mutation_order``) renumbers the unsent mutations from the server's
``lastMutationId`` (``renumbering``, pure); anything else keeps the outbox and retries with
backoff. docs/client.md, "Writes the server refuses", has the timeline.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from queryplanner import Schema
from queryplanner.protocol import MutationResult

from .errors import ClientClosed, MutationRejected, SchemaVersionError, ServerError
from .local import LocalState
from .locking import locked as _locked
from .store import LocalStore
from .transport import Transport, backoff_delay

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
    _rng: Callable[[], float]
    _sleep: Callable[[float], Awaitable[Any]]
    _backoff: tuple[float, float]

    _check_open: Callable[[], Transport]
    _update_needed: Callable[[SchemaVersionError], None]
    _refresh: Callable[[set[str] | None], None]
    _enforce_after_admit: Callable[[], None]

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
        if self.local.budget.pending_bytes:
            self._enforce_after_admit()  # the write's bytes count against the budget
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
        """Send the outbox, a contiguous run of ids at a time, until it is empty.

        Each error answer is classified (``classify``): refused mutations are rolled back and
        their futures fail, a gap renumbers the outbox from the server's last id, a body too
        large is split; network failures, 5xx and other 4xx keep the writes and retry after an
        exponential, capped backoff (the server answers a resent id with its recorded outcome).
        """
        transport = self._check_open()
        limit, failures = MAX_BATCH, 0
        while not self._closed:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            await self._online.wait()
            with self.local.lock:
                batch = next_batch(self.store.outbox(), limit)
            if not batch:
                limit = MAX_BATCH
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
                step = classify(exc, batch)
            except httpx.HTTPError as exc:
                step = Refusal("retry", reason=f"sending the outbox failed: {exc}")
            else:
                failures = 0
                results = [MutationResult.from_json(r) for r in answer.get("results", [])]
                self._settle(batch, results, answer)
                self._flush_wake.set()  # the rest of the outbox, or what was written meanwhile
                continue
            if step.kind == "split":
                limit = max(1, len(batch) // 2)
            elif step.kind == "reject":
                log.warning("the server refused mutation(s) %s: %s", list(step.ids), step.reason)
                self._refuse(step.ids, step.reason)
            elif step.kind == "renumber" and self._renumber(step.last):
                log.info("the server's last mutation id is %d; outbox renumbered", step.last)
            else:
                (log.info if step.kind == "retry" else log.warning)(
                    "the outbox is kept and will be sent again: %s", step.reason
                )
                await self._sleep(
                    backoff_delay(failures, self._rng, base=self._backoff[0], cap=self._backoff[1])
                )
                failures += 1
            self._flush_wake.set()

    @_locked
    def _refuse(self, ids: Collection[int], reason: str) -> None:
        """The server refused these mutations without processing them (nothing was recorded):
        they leave the outbox, their optimistic effect is rolled back, their futures fail.
        Their ids stay unused; the next send meets a gap and renumbers from the server's id."""
        refused = set(ids)
        outbox = self.store.outbox()
        keep = [m for m in outbox if m["id"] not in refused]
        with self.store.transaction():
            self._rewrite_outbox(outbox, keep, None)
        self.local.settle(dict.fromkeys(refused))
        for mid in sorted(refused):
            if mid not in self._futures:
                # Written before a restart: nobody awaits it any more; say so at least.
                log.warning("mutation %d, written before a restart, was refused: %s", mid, reason)
            self._resolve(MutationResult(mid, "rejected", reason))
        self._refresh({m["table"] for m in outbox if m["id"] in refused})

    @_locked
    def _renumber(self, last: int) -> bool:
        """The server has processed ids up to ``last`` and expects ``last + 1``: give the
        outbox's later mutations consecutive ids from there. Returns False when nothing moves."""
        outbox = self.store.outbox()
        moves = renumbering([m["id"] for m in outbox], last)
        next_id = max([last, *(moves.get(m["id"], m["id"]) for m in outbox)]) + 1
        if not moves and str(next_id) == self.store.get_meta("next_mutation_id"):
            return False
        renumbered = [{**m, "id": moves.get(m["id"], m["id"])} for m in outbox]
        with self.store.transaction():
            self._rewrite_outbox(outbox, renumbered, next_id)
        for p in self.local.pending:
            if p.id in moves:
                p.body["id"] = moves[p.id]
        self._futures = {moves.get(mid, mid): fut for mid, fut in self._futures.items()}
        return True

    def _rewrite_outbox(
        self,
        old: Sequence[Mapping[str, Any]],
        new: Sequence[Mapping[str, Any]],
        next_id: int | None,
    ) -> None:
        """Replace the persisted outbox (inside the caller's store transaction)."""
        if old:
            self.store.outbox_remove_through(max(m["id"] for m in old))
        for m in new:
            self.store.outbox_add(m)
        if next_id is not None:
            self.store.set_meta("next_mutation_id", str(next_id))

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


# -- pure decisions of the flush loop ---------------------------------------------------------

MAX_BATCH = 500  # mutations per POST /mutate (the server's default cap is 1,000)
_MUTATION_FIELD = re.compile(r"^mutations\[(\d+)\]")


@dataclass(frozen=True)
class Refusal:
    """What an error answer to ``POST /mutate`` means for the batch that was sent.

    ``reject``: the server refused ``ids`` without processing them, for ``reason``;
    ``renumber``: a gap, the server's last processed id is ``last``; ``split``: the body was
    too large, send fewer at a time; ``retry``: transient (network, 5xx), send again later;
    ``hold``: not the writes' fault (401, 403, 404, ...), keep them and send again later.
    """

    kind: Literal["reject", "renumber", "split", "retry", "hold"]
    ids: tuple[int, ...] = ()
    reason: str = ""
    last: int = 0


def classify(error: ServerError, batch: Sequence[Mapping[str, Any]]) -> Refusal:
    extra = error.body if isinstance(error.body, Mapping) else {}
    if error.status == 409 and error.code == "mutation_order":
        last, expected = extra.get("lastMutationId"), extra.get("expected")
        if isinstance(last, int):
            return Refusal("renumber", reason=str(error), last=last)
        if isinstance(expected, int):
            return Refusal("renumber", reason=str(error), last=expected - 1)
        return Refusal("retry", reason=str(error))
    if error.status == 413 and len(batch) > 1:
        return Refusal("split", reason=str(error))
    if error.status in (400, 413, 422):
        # A malformed mutation is named by its place in the batch (``mutations[2].op``): only
        # it is refused; the others were not judged and are sent again.
        field = extra.get("field")
        found = _MUTATION_FIELD.match(field) if isinstance(field, str) else None
        if found is not None and int(found.group(1)) < len(batch):
            return Refusal("reject", (int(batch[int(found.group(1))]["id"]),), error.message)
        return Refusal("reject", tuple(int(m["id"]) for m in batch), error.message)
    return Refusal("retry" if error.status >= 500 else "hold", reason=str(error))


def next_batch(outbox: Sequence[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The outbox's first run of consecutive ids, at most ``limit`` long (the server refuses
    a batch whose ids are not consecutive; a refused mutation leaves a hole until renumbered)."""
    batch: list[dict[str, Any]] = []
    for m in outbox[:limit]:
        if batch and m["id"] != batch[-1]["id"] + 1:
            break
        batch.append(m)
    return batch


def renumbering(ids: Iterable[int], last: int) -> dict[int, int]:
    """New ids after the server said it processed up to ``last``: ids at or below ``last``
    keep theirs (a resend is answered with the recorded outcome, never applied again); the
    later ones, which the server has never seen, become consecutive from ``last + 1`` in order.
    Only the ids that change are returned."""
    moves: dict[int, int] = {}
    nxt = last + 1
    for mid in sorted(i for i in ids if i > last):
        if mid != nxt:
            moves[mid] = nxt
        nxt += 1
    return moves
