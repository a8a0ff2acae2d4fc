"""Aggregate queries in Python, with the semantics of the SQL that ``compile_select`` emits.

``aggregate_rows(query, schema, rows)`` filters rows by the query's where, groups them by the
groupBy columns (NULL is a group of its own) and computes each measure:

- ``count`` without a column counts rows; with a column, its non-NULL values;
- ``sum``, ``min``, ``max``, ``avg`` skip NULLs and give NULL when nothing is left;
- ``sum`` of an integer column is an exact integer, of a float column a float; ``avg`` is a float.

Groups come ordered by the groupBy columns ascending, NULLS LAST. Without groupBy the result is
exactly one row, also over no rows at all (``count`` 0, the others NULL). Each result row holds
the groupBy columns and then the measures by alias. Float sums may differ from DuckDB's in the
last bits (summation order); everything else is exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .errors import QueryError
from .predicate import RelatedRows, Row, compile_predicate, compile_sort_key
from .query import Measure, OrderBy, Query
from .schema import Schema


def aggregate_rows(
    query: Query, schema: Schema, rows: Iterable[Row], lookup: RelatedRows | None = None
) -> list[dict[str, Any]]:
    """The groups of an aggregate query over rows of its table."""
    agg = query.aggregate
    if agg is None:
        raise QueryError("aggregate", "aggregate_rows() needs a query with an aggregate.")
    keep = compile_predicate(query.where, schema, query.table, lookup)
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        if keep(r):
            groups.setdefault(tuple(r[c] for c in agg.group_by), []).append(r)
    if not agg.group_by:
        groups.setdefault((), [])
    out = []
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(agg.group_by, key, strict=True))
        for m in agg.measures:
            row[m.alias] = measure(m, members)
        out.append(row)
    out.sort(key=compile_sort_key(tuple(OrderBy(c) for c in agg.group_by)))
    return out


def measure(m: Measure, rows: list[Row]) -> Any:
    if m.column is None:
        return len(rows)
    values = [v for r in rows if (v := r[m.column]) is not None]
    if m.fn == "count":
        return len(values)
    if not values:
        return None
    if m.fn == "min":
        return min(values)
    if m.fn == "max":
        return max(values)
    exact_ints = all(isinstance(v, int) for v in values)
    total = sum(values) if exact_ints else math.fsum(values)
    if m.fn == "sum":
        return total
    return total / len(values)  # avg
