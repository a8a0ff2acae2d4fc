"""``MemoryStore``: the in-memory reference ``Store`` (for tests, benches and the client).

Rows live in one dict per table keyed by primary key. Indexes are built on first use and kept
up to date on every write:

- hash indexes on one column, for ``lookup`` (relationship walks, point lookups);
- ordered indexes partitioned by the columns of the where's ``column = value`` conjuncts
  (think ``CREATE INDEX ON issue(project_id, status, modified DESC, id)``): "the next k rows of
  project 3 with status 'todo' after sort position S" bisects into one partition and walks
  forward, testing the rest of the where, until k rows are found.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

from ..predicate import SortKey, compile_predicate, compile_sort_key, row_key
from ..query import And, Compare, Condition, OrderBy, Query
from ..schema import Schema
from .changes import Key, Row, RowChange
from .store import StoreRelated

_CACHE_MAX = 4096
_first = itemgetter(0)
Entries = list[tuple[SortKey, Key]]
_OrderKey = tuple[str, tuple[str, ...], tuple[OrderBy, ...]]


class MemoryStore:
    """Tables as dicts with lazily built hash and ordered indexes; implements ``Store``."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._rows: dict[str, dict[Key, dict[str, Any]]] = {t.name: {} for t in schema.tables}
        self._pk = {t.name: t.primary_key for t in schema.tables}
        self._hash: dict[tuple[str, str], dict[Any, dict[Key, dict[str, Any]]]] = {}
        self._ordered: dict[_OrderKey, dict[tuple[Any, ...], Entries]] = {}
        self._sort_keys: dict[tuple[OrderBy, ...], Callable[[Row], SortKey]] = {}
        self._preds: dict[tuple[str, Condition | None], Callable[[Row], bool]] = {}
        self._related = StoreRelated(self)

    # -- writes --------------------------------------------------------------------------

    def insert(self, table: str, row: Row) -> None:
        self.apply([RowChange.add(table, row)])

    def apply(self, batch: Iterable[RowChange]) -> None:
        """Apply row changes in order (the store side of a committed transaction)."""
        for change in batch:
            if change.old is not None:
                self._delete(change.table, row_key(self._pk[change.table], change.old))
            if change.new is not None:
                self._put(change.table, dict(change.new))

    def _put(self, table: str, row: dict[str, Any]) -> None:
        pk = row_key(self._pk[table], row)
        if pk in self._rows[table]:
            self._delete(table, pk)
        self._rows[table][pk] = row
        for (t, col), index in self._hash.items():
            if t == table and row[col] is not None:
                index.setdefault(row[col], {})[pk] = row
        for (t, cols, order), parts in self._ordered.items():
            if t == table:
                entries = parts.setdefault(tuple(row[c] for c in cols), [])
                bisect.insort(entries, (self._sort_key(order)(row), pk), key=_first)

    def _delete(self, table: str, pk: Key) -> None:
        row = self._rows[table].pop(pk, None)
        if row is None:
            return
        for (t, col), index in self._hash.items():
            if t == table and row[col] is not None:
                bucket = index[row[col]]
                del bucket[pk]
                if not bucket:
                    del index[row[col]]
        for (t, cols, order), parts in self._ordered.items():
            if t == table:
                part = tuple(row[c] for c in cols)
                entries = parts[part]
                del entries[bisect.bisect_left(entries, self._sort_key(order)(row), key=_first)]
                if not entries:
                    del parts[part]

    # -- reads ---------------------------------------------------------------------------

    def get(self, table: str, key: Key) -> Row | None:
        return self._rows[table].get(key)

    def rows(self, table: str) -> list[Row]:
        return list(self._rows[table].values())

    def count(self, table: str) -> int:
        return len(self._rows[table])

    def lookup(
        self, table: str, columns: tuple[str, ...], values: tuple[Any, ...]
    ) -> Sequence[Row]:
        if any(v is None for v in values):
            return []
        if columns == self._pk[table]:
            row = self._rows[table].get(values)
            return [] if row is None else [row]
        bucket = self._bucket(table, columns[0], values[0]).values()
        if len(columns) == 1:
            return list(bucket)
        pairs = tuple(zip(columns, values, strict=True))
        return [r for r in bucket if all(r[c] == v for c, v in pairs)]

    def scan(self, query: Query) -> Sequence[Row]:
        table, limit = query.table, query.limit
        if limit == 0:
            return []
        keep = self._predicate(table, query.where)
        key = self._sort_key(query.order_by)
        eq = _equalities(query.where)
        pk = self._pk[table]
        if all(c in eq for c in pk):
            row = self._rows[table].get(tuple(eq[c] for c in pk))
            rows = [] if row is None or not keep(row) else [row]
            if rows and query.start is not None:
                bound, row_sk = key(query.start.as_dict()), key(rows[0])
                rows = rows if row_sk > bound or (query.start.inclusive and row_sk == bound) else []
            return rows
        cols = tuple(sorted(eq))
        entries = self._ordered_index(table, cols, query.order_by).get(
            tuple(eq[c] for c in cols), []
        )
        i = 0
        if query.start is not None:
            find = bisect.bisect_left if query.start.inclusive else bisect.bisect_right
            i = find(entries, key(query.start.as_dict()), key=_first)
        rows_of = self._rows[table]
        found: list[Row] = []
        for j in range(i, len(entries)):
            row = rows_of[entries[j][1]]
            if keep(row):
                found.append(row)
                if limit is not None and len(found) >= limit:
                    break
        return found

    # -- indexes and caches --------------------------------------------------------------

    def _bucket(self, table: str, column: str, value: Any) -> dict[Key, dict[str, Any]]:
        index = self._hash.get((table, column))
        if index is None:
            index = {}
            for pk, row in self._rows[table].items():
                if row[column] is not None:
                    index.setdefault(row[column], {})[pk] = row
            self._hash[(table, column)] = index
        return index.get(value, {})

    def _ordered_index(self, table: str, cols: tuple[str, ...],
                       order: tuple[OrderBy, ...]) -> dict[tuple[Any, ...], Entries]:
        parts = self._ordered.get((table, cols, order))
        if parts is None:
            key = self._sort_key(order)
            parts = {}
            for pk, row in self._rows[table].items():
                parts.setdefault(tuple(row[c] for c in cols), []).append((key(row), pk))
            for entries in parts.values():
                entries.sort(key=_first)
            self._ordered[(table, cols, order)] = parts
        return parts

    def _sort_key(self, order: tuple[OrderBy, ...]) -> Callable[[Row], SortKey]:
        fn = self._sort_keys.get(order)
        if fn is None:
            fn = self._sort_keys[order] = compile_sort_key(order)
        return fn

    def _predicate(self, table: str, where: Condition | None) -> Callable[[Row], bool]:
        fn = self._preds.get((table, where))
        if fn is None:
            if len(self._preds) >= _CACHE_MAX:
                self._preds.clear()
            fn = compile_predicate(where, self.schema, table, self._related)
            self._preds[(table, where)] = fn
        return fn


def _equalities(where: Condition | None) -> dict[str, Any]:
    """The ``column = value`` conjuncts at the top of a where (the partition of a scan)."""
    terms = where.terms if isinstance(where, And) else (where,)
    out: dict[str, Any] = {}
    for term in terms:
        if isinstance(term, Compare) and term.op == "=" and term.column not in out:
            out[term.column] = term.value
    return out
