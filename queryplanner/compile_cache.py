"""Compiled forms of queries (SQL, row predicate, sort key), cached by query id.

A client re-runs the same few queries on every change, so compiling each once matters: a hit
is a dict lookup (``bench/planner.py`` measures it). The cache is a plain LRU keyed by the
query id the caller already holds; it is not thread-safe (one per store or event loop).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .predicate import RelatedRows, Row, SortKey, compile_predicate, compile_sort_key
from .query import Query
from .schema import Schema
from .sql import CompiledSQL, compile_select


@dataclass(frozen=True)
class CompiledQuery:
    query: Query
    sql: CompiledSQL
    predicate: Callable[[Row], bool]
    sort_key: Callable[[Row], SortKey]


def compile_query(query: Query, schema: Schema, lookup: RelatedRows | None = None) -> CompiledQuery:
    """Compile a bound query (EXISTS conditions need ``lookup`` for the predicate)."""
    return CompiledQuery(
        query,
        compile_select(query, schema),
        compile_predicate(query.where, schema, query.table, lookup),
        compile_sort_key(query.order_by),
    )


class CompileCache:
    """An LRU of ``CompiledQuery`` keyed by query id."""

    def __init__(
        self, schema: Schema, maxsize: int = 1024, lookup: RelatedRows | None = None
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, not {maxsize}.")
        self.schema = schema
        self.maxsize = maxsize
        self.lookup = lookup
        self._items: OrderedDict[str, CompiledQuery] = OrderedDict()

    def get(self, query: Query, query_id: str | None = None) -> CompiledQuery:
        """The compiled query; pass ``query_id`` when known (hashing the query costs more
        than the lookup)."""
        key = query_id if query_id is not None else query.id
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            return found
        compiled = compile_query(query, self.schema, self.lookup)
        self._items[key] = compiled
        if len(self._items) > self.maxsize:
            self._items.popitem(last=False)
        return compiled

    def __len__(self) -> int:
        return len(self._items)
