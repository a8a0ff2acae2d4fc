"""An index of complete queries so that a coverage decision looks at a handful, not all.

Complete queries are grouped by table. Within a table, a query whose condition pins a column
to a few values in every branch (``project_id = 3``, ``status IN ('todo', 'done')``) is filed
under one such "home" column and each of its values; the rest are "unkeyed". A query q that
pins the same column only needs the complete queries filed under its values, plus the unkeyed
ones. The skipped ones are either provably disjoint from q or pin a column that q does not
pin, and ``coverage.decide`` ignores both kinds, so the index gives exactly the answer of the
full scan (``coverage.covers``), which the tests check.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from operator import attrgetter

from .coverage import (
    CachedRows,
    CompleteQuery,
    Coverage,
    column_kinds,
    decide,
)
from .coverage_model import normal_of
from .query import Query
from .schema import Schema


@dataclass(frozen=True)
class _Entry:
    seq: int
    complete: CompleteQuery
    home: str | None
    values: frozenset[object]


class _TableIndex:
    def __init__(self) -> None:
        self.unkeyed: dict[str, _Entry] = {}
        self.by_value: dict[str, dict[object, dict[str, _Entry]]] = {}

    def add(self, e: _Entry) -> None:
        if e.home is None:
            self.unkeyed[e.complete.id] = e
            return
        buckets = self.by_value.setdefault(e.home, {})
        for v in e.values:
            buckets.setdefault(v, {})[e.complete.id] = e

    def remove(self, e: _Entry) -> None:
        if e.home is None:
            del self.unkeyed[e.complete.id]
            return
        buckets = self.by_value[e.home]
        for v in e.values:
            del buckets[v][e.complete.id]
            if not buckets[v]:
                del buckets[v]
        if not buckets:
            del self.by_value[e.home]

    def candidates(self, pins: dict[str, frozenset[object]]) -> list[CompleteQuery]:
        keyed: dict[str, _Entry] = {}
        for home, values in pins.items():
            # decide() skips complete queries pinning a column q leaves open, so only the
            # homes q pins matter.
            buckets = self.by_value.get(home)
            if buckets is None:
                continue
            for v in values:
                found = buckets.get(v)
                if found:
                    keyed.update(found)
        # The unkeyed dict is in insertion order, which is seq order (add() re-inserts).
        if not keyed:
            return [e.complete for e in self.unkeyed.values()]
        merged = [*self.unkeyed.values(), *keyed.values()]
        merged.sort(key=attrgetter("seq"))
        return [e.complete for e in merged]


class CoverageIndex:
    """Complete queries indexed for coverage decisions; ``covers`` agrees with the full scan."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._seq = 0
        self._entries: dict[str, _Entry] = {}
        self._tables: dict[str, _TableIndex] = {}

    def add(self, complete: CompleteQuery) -> None:
        """Add (or replace, e.g. at a newer version) a complete query."""
        self.remove(complete.id)
        q = complete.query
        pins = complete.normal(self.schema).pins
        home = min(pins, key=lambda k: (len(pins[k]), k)) if pins else None
        self._seq += 1
        e = _Entry(self._seq, complete, home, pins[home] if home else frozenset())
        self._entries[complete.id] = e
        self._tables.setdefault(q.table, _TableIndex()).add(e)

    def remove(self, query_id: str) -> bool:
        """Forget a complete query; False when it was not there."""
        e = self._entries.pop(query_id, None)
        if e is None:
            return False
        self._tables[e.complete.query.table].remove(e)
        return True

    def get(self, query_id: str) -> CompleteQuery | None:
        e = self._entries.get(query_id)
        return None if e is None else e.complete

    def __contains__(self, query_id: object) -> bool:
        return query_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[CompleteQuery]:
        return (e.complete for e in sorted(self._entries.values(), key=lambda e: e.seq))

    def candidates(self, q: Query) -> list[CompleteQuery]:
        """The complete queries that may overlap q, oldest first."""
        t = self._tables.get(q.table)
        if t is None:
            return []
        return t.candidates(normal_of(q.where, column_kinds(self.schema, q.table)).pins)

    def covers(self, q: Query, rows: CachedRows | None = None) -> Coverage:
        return decide(q, self.candidates(q), self.schema, rows)
