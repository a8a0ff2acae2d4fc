"""Which tables a query's result reads (its own, related targets, junctions, EXISTS targets).

A write to one of them may change the result; a write to any other table cannot.
"""

from __future__ import annotations

from typing import Any

from queryplanner import Query, Schema, Table
from queryplanner.query import Exists, Not


def query_tables(schema: Schema, query: Query) -> frozenset[str]:
    """Every table a query's result reads: its own, related targets, junctions, EXISTS targets."""
    out: set[str] = set()

    def visit(table: str, q: Query) -> None:
        out.add(table)
        t = schema.table(table)
        _exists_tables(schema, t, q.where, out)
        for rel in q.related:
            r = t.relationship(rel.relationship)
            if r.through is not None:
                out.add(r.through.table)
            visit(r.target, rel.query)

    visit(query.table, query)
    return frozenset(out)


def _exists_tables(schema: Schema, t: Table, cond: Any, out: set[str]) -> None:
    if cond is None:
        return
    if isinstance(cond, Exists):
        r = t.relationship(cond.relationship)
        out.add(r.target)
        if r.through is not None:
            out.add(r.through.table)
        _exists_tables(schema, schema.table(r.target), cond.where, out)
    elif isinstance(cond, Not):
        _exists_tables(schema, t, cond.term, out)
    else:
        for term in getattr(cond, "terms", ()):
            _exists_tables(schema, t, term, out)
