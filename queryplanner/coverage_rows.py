"""``CachedRows`` over rows held in memory: what a local store answers for window coverage.

The store holds true rows of the server (as of the version its complete queries are complete
at), so a complete query's cached result is that query evaluated over the store's rows of its
table: any row before the window's last row that satisfies its condition is in the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .coverage import CompleteQuery
from .predicate import RelatedRows, Row, compile_predicate, compile_start_filter, evaluate
from .query import Query
from .schema import Schema


class RowsInMemory:
    """Counts matching rows of complete queries' results over ``rows_by_table``."""

    def __init__(
        self, schema: Schema, rows_by_table: Mapping[str, Sequence[Row]],
        lookup: RelatedRows | None = None,
    ) -> None:
        self.schema = schema
        self.rows_by_table = rows_by_table
        self.lookup = lookup

    def result(self, complete: CompleteQuery) -> list[Row]:
        """The rows of ``complete``'s result (its root rows) that the store holds."""
        q = complete.query
        rows: Iterable[Row] = self.rows_by_table.get(q.table, ())
        return evaluate(Query(q.table, q.where, q.order_by, q.limit, q.start), self.schema,
                        rows, self.lookup)

    def count_matching(self, complete: CompleteQuery, query: Query) -> int:
        keep = compile_predicate(query.where, self.schema, query.table, self.lookup)
        after = compile_start_filter(query)
        return sum(1 for r in self.result(complete) if keep(r) and after(r))
