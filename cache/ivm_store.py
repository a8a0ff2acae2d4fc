"""The incremental engine's ``Store`` over the local DuckDB store.

``queryplanner.ivm.Engine`` reads the state *after* the changes it is given: to refill a window
that ran short, walk relationships, re-check EXISTS and hydrate a new subscription. Here that
state is the client's own connection (``LocalStore.con``), read under ``LocalState.lock`` by the
thread that wrote it. Rows are the schema's columns (no ``_v``) as DuckDB returns them
(timestamps as ``datetime``, JSON as text), the same images ``cache.journal`` records.

Within one engine call the store does not change, so answers are cached until ``begin`` (the
engine may ask the same point lookup for several windows). The local tables have no indexes
(see ``cache.store``), so a lookup scans its table: a refill or a related-child walk costs a
DuckDB query (~0.2-1 ms), a window update that needs neither costs none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from queryplanner import Query, Schema
from queryplanner.ivm import Row
from queryplanner.sql import compile_select

from .store import LocalStore

_CACHE_MAX = 10_000  # answers kept within one engine call before the cache starts over


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class LocalIvmStore:
    def __init__(self, schema: Schema, store: LocalStore) -> None:
        self.schema = schema
        self.store = store
        self.statements = 0  # DuckDB statements run (benchmarks and tests read it)
        self._scans: dict[Query, list[Row]] = {}
        self._lookups: dict[tuple[str, tuple[str, ...], tuple[Any, ...]], list[Row]] = {}
        self._columns = {
            t.name: ", ".join(_q(c) for c in t.column_names) for t in schema.tables
        }

    def begin(self) -> None:
        """The store may have changed since the last engine call: forget cached answers."""
        self._scans.clear()
        self._lookups.clear()

    def scan(self, query: Query) -> Sequence[Row]:
        hit = self._scans.get(query)
        if hit is None:
            c = compile_select(query, self.schema)
            hit = self._select(c.sql, c.params)
            if len(self._scans) >= _CACHE_MAX:
                self._scans.clear()
            self._scans[query] = hit
        return hit

    def lookup(
        self, table: str, columns: tuple[str, ...], values: tuple[Any, ...]
    ) -> Sequence[Row]:
        if any(v is None for v in values):
            return []  # SQL equality: NULL links to nothing
        key = (table, columns, values)
        hit = self._lookups.get(key)
        if hit is None:
            where = " AND ".join(f"{_q(c)} = ?" for c in columns)
            hit = self._select(
                f"SELECT {self._columns[table]} FROM {_q(table)} WHERE {where}", values
            )
            if len(self._lookups) >= _CACHE_MAX:
                self._lookups.clear()
            self._lookups[key] = hit
        return hit

    def _select(self, sql: str, params: Sequence[Any]) -> list[Row]:
        self.statements += 1
        return list(self.store.select(sql, params))
