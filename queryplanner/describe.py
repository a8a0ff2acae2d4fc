"""A compact, human description of a query, for plans' ``explain()`` and logs.

    issue[status IN ('todo', 'done') AND priority >= 2] order by modified desc limit 50

The primary-key tiebreaker that ``bind`` appends to every order is left out (given the schema),
values are written as SQL literals, and related children follow as ``with comments[...]``.
"""

from __future__ import annotations

import datetime as dt

from .query import (
    Aggregate,
    And,
    Compare,
    Condition,
    Exists,
    InList,
    IsNull,
    Like,
    Not,
    Or,
    Query,
    Scalar,
)
from .schema import Schema


def literal(value: Scalar | None) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, dt.datetime):
        return "'" + value.isoformat() + "'"
    return repr(value)


def describe_condition(cond: Condition) -> str:
    if isinstance(cond, Compare):
        return f"{cond.column} {cond.op} {literal(cond.value)}"
    if isinstance(cond, InList):
        values = ", ".join(literal(v) for v in cond.values)
        return f"{cond.column} {'NOT IN' if cond.negated else 'IN'} ({values})"
    if isinstance(cond, IsNull):
        return f"{cond.column} IS {'NOT ' if cond.negated else ''}NULL"
    if isinstance(cond, Like):
        op = ("NOT " if cond.negated else "") + ("ILIKE" if cond.case_insensitive else "LIKE")
        return f"{cond.column} {op} {literal(cond.pattern)}"
    if isinstance(cond, And | Or):
        sep = " AND " if isinstance(cond, And) else " OR "
        return sep.join(_term(t, type(cond)) for t in cond.terms)
    if isinstance(cond, Not):
        return f"NOT ({describe_condition(cond.term)})"
    if isinstance(cond, Exists):
        inner = "" if cond.where is None else f"[{describe_condition(cond.where)}]"
        return f"{'NOT ' if cond.negated else ''}EXISTS {cond.relationship}{inner}"
    raise TypeError(f"not a condition: {cond!r}")


def _term(cond: Condition, parent: type) -> str:
    text = describe_condition(cond)
    return f"({text})" if isinstance(cond, And | Or) and not isinstance(cond, parent) else text


def _aggregate(agg: Aggregate) -> str:
    parts = [f"{m.fn}({m.column or '*'}) as {m.alias}" for m in agg.measures]
    text = ", ".join(parts)
    return text + (f" group by {', '.join(agg.group_by)}" if agg.group_by else "")


def describe(query: Query, schema: Schema | None = None) -> str:
    """``table[where] order by ... limit n after (...) with child[...]``."""
    return _describe(query, schema, query.table, query.table)


def _describe(query: Query, schema: Schema | None, table: str, label: str) -> str:
    text = label + (f"[{describe_condition(query.where)}]" if query.where is not None else "")
    known = schema is not None and schema.has_table(table)
    order = list(query.order_by)
    if schema is not None and known:
        pk = schema.table(table).primary_key
        # Drop the tiebreaker bind appended: the trailing ascending primary-key columns.
        while order and order[-1].column in pk and not order[-1].descending:
            order.pop()
    if order:
        text += " order by " + ", ".join(
            o.column + (" desc" if o.descending else "") for o in order
        )
    if query.limit is not None:
        text += f" limit {query.limit}"
    if query.start is not None:
        values = ", ".join(f"{k} = {literal(v)}" for k, v in query.start.row)
        text += f" {'from' if query.start.inclusive else 'after'} ({values})"
    if query.aggregate is not None:
        text += " " + _aggregate(query.aggregate)
    for rel in query.related:
        target = rel.query.table
        if schema is not None and known:
            target = schema.table(table).relationship(rel.relationship).target
        text += " with " + _describe(rel.query, schema, target, rel.relationship)
    return text
