"""What the engine needs from the table data: the ``Store`` protocol and walks over links.

The store holds the committed state *after* the batch being applied (the engine reads it to
refill windows, evaluate EXISTS and follow relationships). Two questions are enough:

- ``scan(query)``: the rows of ``query.table`` that satisfy ``query.where`` (EXISTS included)
  and come after ``query.start``, in ``query.order_by`` (a total order ending with the primary
  key), at most ``query.limit``. The query never has ``related`` or ``aggregate``; it is the
  refill "next k rows after this sort position", a re-hydration, or a min/max lookup. A DuckDB
  store runs ``compile_select(query, schema)``.
- ``lookup(table, columns, values)``: the rows whose ``columns`` equal ``values`` (SQL
  equality: a ``None`` value matches nothing). Point lookups, relationship walks both ways.

``MemoryStore`` (``queryplanner.ivm.memory``) is the reference implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from ..query import Query
from ..schema import Relationship
from .changes import Row


class Lookup(Protocol):
    """Point lookups only: enough to follow relationships (``related_rows``)."""

    def lookup(
        self, table: str, columns: tuple[str, ...], values: tuple[Any, ...]
    ) -> Sequence[Row]: ...


class Store(Lookup, Protocol):
    def scan(self, query: Query) -> Sequence[Row]: ...


def values_of(row: Row, columns: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The row's values for ``columns``, or None when one is NULL (it links to nothing)."""
    out = tuple(row[c] for c in columns)
    return None if any(v is None for v in out) else out


def related_rows(store: Lookup, rel: Relationship, row: Row) -> list[Row]:
    """The target rows linked to ``row`` (of the relationship's source table)."""
    vals = values_of(row, rel.source_columns)
    if vals is None:
        return []
    if rel.through is None:
        return list(store.lookup(rel.target, rel.target_columns, vals))
    out: list[Row] = []
    for j in store.lookup(rel.through.table, rel.through.source_columns, vals):
        tvals = values_of(j, rel.through.target_columns)
        if tvals is not None:
            out.extend(store.lookup(rel.target, rel.target_columns, tvals))
    return out


def prefetch_related(store: Store, rel: Relationship, rows: Iterable[Row]) -> None:
    """Warm ``store`` for ``related_rows(store, rel, row)`` of every row in ``rows``.

    A hydration opens one child window per parent row; without this each one is a store
    lookup (a DuckDB query of its own). A store with ``lookup_many(table, columns, values)``
    answers them all in one query per table; other stores are left alone.
    """
    many = getattr(store, "lookup_many", None)
    if many is None:
        return
    vals = {v for r in rows if (v := values_of(r, rel.source_columns)) is not None}
    if not vals:
        return
    if rel.through is None:
        many(rel.target, rel.target_columns, vals)
        return
    junction = many(rel.through.table, rel.through.source_columns, vals)
    through = rel.through
    tvals = {
        v
        for found in junction.values()
        for j in found
        if (v := values_of(j, through.target_columns)) is not None
    }
    if tvals:
        many(rel.target, rel.target_columns, tvals)


def is_linked(store: Store, rel: Relationship, source: Row, target: Row) -> bool:
    """True when ``target`` is one of ``related_rows(store, rel, source)``."""
    svals = values_of(source, rel.source_columns)
    tvals = values_of(target, rel.target_columns)
    if svals is None or tvals is None:
        return False
    if rel.through is None:
        return svals == tvals
    cols = rel.through.source_columns + rel.through.target_columns
    return bool(store.lookup(rel.through.table, cols, svals + tvals))


def source_rows(store: Store, source_table: str, rel: Relationship, row: Row,
                table: str) -> list[Row]:
    """The rows of ``source_table`` linked through ``rel`` to ``row`` of ``table``.

    ``table`` is the relationship's target or (for many-to-many) its junction table: the
    backward step of an EXISTS path or of a related child level.
    """
    if rel.through is not None and table == rel.through.table:
        svals = values_of(row, rel.through.source_columns)
        return [] if svals is None else list(store.lookup(source_table, rel.source_columns, svals))
    tvals = values_of(row, rel.target_columns)
    if tvals is None:
        return []
    if rel.through is None:
        return list(store.lookup(source_table, rel.source_columns, tvals))
    out: list[Row] = []
    for j in store.lookup(rel.through.table, rel.through.target_columns, tvals):
        svals = values_of(j, rel.through.source_columns)
        if svals is not None:
            out.extend(store.lookup(source_table, rel.source_columns, svals))
    return out


class StoreRelated:
    """Adapts a ``Store`` to ``predicate.RelatedRows`` so compiled EXISTS can read it."""

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    def related_rows(self, relationship: Relationship, row: Row) -> Iterable[Row]:
        return related_rows(self.store, relationship, row)
