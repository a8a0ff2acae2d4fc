"""Subscription values: snapshots, row-level changes, connection states, and the live-query record.

A subscription emits ``Snapshot`` values: the whole result (``rows``, in wire form: timestamps
as ISO strings, json columns as values, ``related`` children nested), whether it is ``complete``,
the server ``version`` it reflects, and its ``source``: ``"local"`` when the local store computed
it, ``"server"`` when the server did (offloaded aggregates, queries demoted by the budget).
``changes`` lists the root rows added, removed and updated since the previous snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import reactivex
from reactivex.abc import ObserverBase

from queryplanner import Query, Schema

Source = Literal["local", "server"]
Mode = Literal["local", "sync", "server"]


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    UPDATE_NEEDED = "update-needed"
    CLOSED = "closed"


@dataclass(frozen=True)
class Changes:
    """Root rows (by primary key, or by group for aggregates) changed since the last snapshot."""

    added: tuple[tuple[Any, ...], ...] = ()
    removed: tuple[tuple[Any, ...], ...] = ()
    updated: tuple[tuple[Any, ...], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.updated)


@dataclass(frozen=True)
class Snapshot:
    query_id: str
    rows: tuple[dict[str, Any], ...]
    complete: bool
    version: int
    source: Source
    changes: Changes = Changes()


def identity_columns(schema: Schema, query: Query) -> tuple[str, ...]:
    if query.aggregate is not None:
        return query.aggregate.group_by
    return schema.table(query.table).primary_key


def diff(
    before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]], ident: tuple[str, ...]
) -> Changes:
    old: dict[tuple[Any, ...], Mapping[str, Any]]
    new: dict[tuple[Any, ...], Mapping[str, Any]]
    if len(ident) == 1:  # the usual single-column key, without a generator per row
        (name,) = ident
        old = {(r.get(name),): r for r in before}
        new = {(r.get(name),): r for r in after}
    else:
        old = {tuple(r.get(k) for k in ident): r for r in before}
        new = {tuple(r.get(k) for k in ident): r for r in after}
    return Changes(
        tuple(k for k in new if k not in old),
        tuple(k for k in old if k not in new),
        tuple(k for k, r in new.items() if k in old and old[k] != r),
    )


@dataclass(eq=False)
class LiveQuery:
    """One subscribed query and its observers (several subscribers share one record)."""

    query: Query
    qid: str
    mode: Mode
    relies_on: tuple[str, ...] = ()
    observers: list[ObserverBase[Snapshot]] = field(default_factory=list)
    last: Snapshot | None = None
    task: asyncio.Task[None] | None = None
    explanation: str = ""
    emit_scheduled: bool = False
    emit_cost: float = 0.0  # seconds the last partial snapshot took to read (throttling)

    def emit(self, snap: Snapshot, ident: tuple[str, ...], *, force: bool = False) -> None:
        prev = self.last
        if (
            not force
            and prev is not None
            and prev.rows == snap.rows
            and prev.complete == snap.complete
            and prev.source == snap.source
        ):
            return
        changes = diff(prev.rows if prev else (), snap.rows, ident)
        snap = Snapshot(snap.query_id, snap.rows, snap.complete, snap.version, snap.source, changes)
        self.last = snap
        for obs in list(self.observers):
            obs.on_next(snap)

    def fail(self, error: Exception) -> None:
        for obs in list(self.observers):
            obs.on_error(error)
        self.observers.clear()


def empty_observable() -> reactivex.Observable[Snapshot]:
    return reactivex.empty()
