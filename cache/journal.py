"""The store's record of row changes, for the incremental engine (``cache.live_engine``).

``queryplanner.ivm.Engine`` needs every write as a ``RowChange`` with the row's old and new
image. The store already writes in two statements per batch (``DELETE ... USING`` and
``INSERT ... SELECT``); with ``RETURNING`` those same statements hand back the old and the new
images, as DuckDB stores them (timestamps as ``datetime``, JSON as text) — exactly what the
engine's store adapter reads later, so images compare equal. No extra statement is run.

Only tables a live subscription reads are recorded (``watched``); writes to others cost
nothing. A table that receives more than ``bulk_rows`` changes before the next flush is marked
*bulk*: its changes are no longer recorded and the subscriptions that read it are re-hydrated
(one ``scan`` beats pushing thousands of rows through: a hydration poke, a ``reset``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from queryplanner import Schema
from queryplanner.ivm import RowChange

BULK_ROWS = 2_000

Image = dict[str, Any]


class Journal:
    def __init__(self, schema: Schema, *, bulk_rows: int = BULK_ROWS) -> None:
        self.schema = schema
        self.bulk_rows = bulk_rows
        self.watched: frozenset[str] = frozenset()
        self.changes: list[RowChange] = []
        self.bulk: set[str] = set()
        self._counts: dict[str, int] = {}
        self._pk = {t.name: t.primary_key for t in schema.tables}

    def wants(self, table: str, n: int) -> bool:
        """Should a write of ``n`` rows to ``table`` return its images? (Marks bulk tables.)"""
        if table not in self.watched or table in self.bulk:
            return False
        count = self._counts.get(table, 0) + n
        if count > self.bulk_rows:
            self.mark_bulk([table])
            return False
        self._counts[table] = count
        return True

    def mark_bulk(self, tables: Iterable[str]) -> None:
        """These tables changed in a way not recorded: what reads them must be re-hydrated."""
        marked = set(tables) & self.watched
        if marked:
            self.bulk |= marked
            self.changes = [c for c in self.changes if c.table not in marked]

    def invalidate(self) -> None:
        """The recorded changes may not have happened (a rolled-back transaction)."""
        self.mark_bulk(self.watched)

    def put(self, table: str, old: Sequence[Image], new: Sequence[Image]) -> None:
        """The images a ``DELETE ... RETURNING`` and the following ``INSERT ... RETURNING`` of
        the same keys gave back."""
        pk = self._pk[table]
        before = {tuple(r[k] for k in pk): r for r in old}
        for row in new:
            self.changes.append(RowChange(table, before.get(tuple(row[k] for k in pk)), row))

    def delete(self, table: str, old: Sequence[Image]) -> None:
        self.changes.extend(RowChange(table, r, None) for r in old)

    def take(self) -> tuple[list[RowChange], set[str]]:
        """The changes and bulk tables since the last call; the journal starts over."""
        out = (self.changes, self.bulk)
        self.changes, self.bulk, self._counts = [], set(), {}
        return out

    def __bool__(self) -> bool:
        return bool(self.changes or self.bulk)
