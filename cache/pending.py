"""The optimistic pending layer (a part of ``LocalState``).

Pending mutations live in the DuckDB tables as ordinary rows, so every local query sees them,
and in ``shadow``: the server's row (or its absence) from before the first pending write touched
it. Applying a server version lifts the layer (the shadow is written back), applies the
server's rows, then lays the still-pending writes on top again (a rebase, as Replicache does).
An insert of a key already held is shown too; the server rejects it and the rollback restores
the held row from the shadow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import orjson

from queryplanner import Schema, Table
from queryplanner.protocol import Poke
from queryplanner.wire import encode_row, row_bytes
from queryplanner.wire_arrow import VERSION_COLUMN

from .budget import Budget, RowId
from .membership import Changed
from .store import LocalStore


@dataclass
class Pending:
    """An optimistic mutation (wire form, as sent) waiting for the server version that has it."""

    body: dict[str, Any]
    ack_version: int | None = None

    @property
    def id(self) -> int:
        return int(self.body["id"])


class PendingLayer:
    # Provided by ``LocalState``.
    schema: Schema
    store: LocalStore
    version: int
    pending: list[Pending]
    shadow: dict[RowId, dict[str, Any] | None]
    overlay: dict[RowId, int]
    budget: Budget
    row_id: Callable[[Table, Any], RowId]
    _refresh_members: Callable[[Changed], None]
    transaction: Callable[[], AbstractContextManager[None]]

    def save_shadow(self) -> None:
        self.store.set_meta("shadow", self._shadow_doc())

    def _shadow_doc(self) -> str | None:
        doc = [[t, list(k), row] for (t, k), row in self.shadow.items()]
        return orjson.dumps(doc, default=str).decode() if doc else None

    def _settle_pending(self, poke: Poke) -> None:
        """Drop pending writes the server has decided by ``poke.version``."""
        decided = {m.id for m in poke.mutations}
        self.pending = [
            p
            for p in self.pending
            if p.id not in decided and (p.ack_version is None or p.ack_version > self.version)
        ]

    def add_pending(self, body: dict[str, Any]) -> None:
        with self.transaction():
            self.pending.append(Pending(body))
            changed: dict[str, set[tuple[Any, ...]]] = {}
            self._apply_mutation(body, changed)
            self._refresh_members(changed)
            self._count_pending()
            self.save_shadow()

    def settle(self, decided: Mapping[int, int | None]) -> None:
        """Mutation outcomes from a ``/mutate`` answer: id -> version (None when rejected)."""
        with self.transaction():
            self._lift_pending()
            for p in self.pending:
                if p.id in decided:
                    v = decided[p.id]
                    p.ack_version = -1 if v is None else v
            self.pending = [
                p for p in self.pending if p.ack_version is None or p.ack_version > self.version
            ]
            self._lay_pending()
            self.save_shadow()

    def _lift_pending(self) -> None:
        """Restore the server's rows under every pending write (the shadow)."""
        restore: dict[str, list[dict[str, Any]]] = {}
        remove: dict[str, list[tuple[Any, ...]]] = {}
        for (table, key), row in self.shadow.items():
            if row is None:
                remove.setdefault(table, []).append(key)
            else:
                restore.setdefault(table, []).append(row)
        for table, keys in remove.items():
            self.store.delete_keys(table, keys)
        for table, rows in restore.items():
            self.store.put_rows(table, rows)
        changed: dict[str, set[tuple[Any, ...]]] = {}
        for table, key in self.shadow:
            changed.setdefault(table, set()).add(key)
        self.shadow.clear()
        self.overlay.clear()
        if changed:
            self._refresh_members(changed)

    def _lay_pending(self) -> None:
        changed: dict[str, set[tuple[Any, ...]]] = {}
        for p in self.pending:
            self._apply_mutation(p.body, changed)
        if changed:
            self._refresh_members(changed)
        self._count_pending()

    def _count_pending(self) -> None:
        """The layer's bytes beyond the server rows the budget counts: each laid row's size
        minus the size the budget holds for that key (a deleted row frees its own)."""
        size_of = self.budget.size_of
        self.budget.pending_bytes = max(
            0, sum(size - size_of(rid) for rid, size in self.overlay.items())
        )

    def _apply_mutation(
        self, body: Mapping[str, Any], changed: dict[str, set[tuple[Any, ...]]]
    ) -> None:
        """Lay one pending write on the store; its key goes into ``changed``."""
        t = self.schema.table(body["table"])
        op = body["op"]
        if op in ("insert", "upsert"):
            row = {c: body["row"].get(c) for c in t.column_names}
            key = self.row_id(t, [row[k] for k in t.primary_key])
            # An insert of a key already held is shown too (the app asked for it); the server
            # rejects it and the rollback restores the held row from the shadow.
            self._remember(key, self._current(t, key))
            changed.setdefault(t.name, set()).add(key[1])
            laid = {**row, VERSION_COLUMN: 0}
            self.store.put_rows(t.name, [laid])
            self.overlay[key] = row_bytes(laid)
            return
        wire_key = body["key"]
        if isinstance(wire_key, Mapping):
            wire_key = [wire_key[k] for k in t.primary_key]
        key = self.row_id(t, wire_key)
        current = self._current(t, key)
        if current is None:
            return
        self._remember(key, current)
        changed.setdefault(t.name, set()).add(key[1])
        if op == "delete":
            self.store.delete_keys(t.name, [key[1]])
            self.overlay[key] = 0
        else:
            merged = {
                **encode_row(t, current),
                **body["set"],
                VERSION_COLUMN: current[VERSION_COLUMN],
            }
            self.store.put_rows(t.name, [merged])
            self.overlay[key] = row_bytes(merged)

    def _current(self, t: Table, key: RowId) -> dict[str, Any] | None:
        return self.store.get_rows(t.name, [key[1]]).get(key[1])

    def _remember(self, key: RowId, current: dict[str, Any] | None) -> None:
        if key not in self.shadow:
            self.shadow[key] = (
                None if current is None else wire_with_version(self.schema.table(key[0]), current)
            )



def wire_with_version(t: Table, row: dict[str, Any]) -> dict[str, Any]:
    return {**encode_row(t, row), VERSION_COLUMN: row.get(VERSION_COLUMN, 0)}


