"""The query AST: immutable values, their canonical JSON form and the stable query id.

A ``Query`` names one table, an optional ``where`` condition, an ``order_by`` that always ends
with the primary key (the tiebreaker that makes the order total), an optional ``limit`` and
keyset ``start``, nested ``related`` child queries and an optional ``aggregate``.

Queries built here are *unchecked*: ``queryplanner.validate.bind`` checks one against a schema
and returns the normalized query every other module expects. ``to_json`` gives the canonical
wire form; two queries with the same meaning up to the order of AND/OR terms and IN values
have the same canonical form and therefore the same ``query_id``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import orjson

Scalar: TypeAlias = bool | int | float | str | dt.datetime
"""A literal in a condition. ``None`` is never a literal: use ``IsNull``."""

CompareOp = Literal["=", "!=", "<", "<=", ">", ">="]
COMPARE_OPS: tuple[CompareOp, ...] = ("=", "!=", "<", "<=", ">", ">=")
AggregateFn = Literal["count", "sum", "min", "max", "avg"]
AGGREGATE_FNS: tuple[AggregateFn, ...] = ("count", "sum", "min", "max", "avg")


class _Combinable:
    """Lets conditions be combined with ``&``, ``|`` and ``~`` in the builder."""

    def __and__(self, other: Condition) -> And:
        return And((self, other))  # type: ignore[arg-type]

    def __or__(self, other: Condition) -> Or:
        return Or((self, other))  # type: ignore[arg-type]

    def __invert__(self) -> Not:
        return Not(self)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Compare(_Combinable):
    column: str
    op: CompareOp
    value: Scalar


@dataclass(frozen=True)
class InList(_Combinable):
    column: str
    values: tuple[Scalar, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull(_Combinable):
    column: str
    negated: bool = False


@dataclass(frozen=True)
class Like(_Combinable):
    column: str
    pattern: str
    case_insensitive: bool = False
    negated: bool = False


@dataclass(frozen=True)
class And(_Combinable):
    terms: tuple[Condition, ...]


@dataclass(frozen=True)
class Or(_Combinable):
    terms: tuple[Condition, ...]


@dataclass(frozen=True)
class Not(_Combinable):
    term: Condition


@dataclass(frozen=True)
class Exists(_Combinable):
    """True when the row has at least one related row matching ``where``."""

    relationship: str
    where: Condition | None = None
    negated: bool = False


Condition: TypeAlias = Compare | InList | IsNull | Like | And | Or | Not | Exists


@dataclass(frozen=True)
class OrderBy:
    column: str
    descending: bool = False


@dataclass(frozen=True)
class Start:
    """Keyset pagination: begin after (or at, when inclusive) the row with these values."""

    row: tuple[tuple[str, Scalar | None], ...]
    inclusive: bool = False

    def as_dict(self) -> dict[str, Scalar | None]:
        return dict(self.row)


@dataclass(frozen=True)
class Measure:
    alias: str
    fn: AggregateFn
    column: str | None = None  # None only for count(*)


@dataclass(frozen=True)
class Aggregate:
    group_by: tuple[str, ...]
    measures: tuple[Measure, ...]


@dataclass(frozen=True)
class Related:
    relationship: str
    query: Query


@dataclass(frozen=True)
class Query:
    table: str
    where: Condition | None = None
    order_by: tuple[OrderBy, ...] = ()
    limit: int | None = None
    start: Start | None = None
    related: tuple[Related, ...] = ()
    aggregate: Aggregate | None = None

    @property
    def id(self) -> str:
        return query_id(self)

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    def walk(self) -> Iterator[tuple[str, Query]]:
        """Yield (path, query) for this query and every related child, depth first."""
        yield "", self
        for rel in self.related:
            for path, q in rel.query.walk():
                yield f"related.{rel.relationship}" + (f".{path}" if path else ""), q


# -- canonical JSON ------------------------------------------------------------------------


def value_to_json(value: Scalar | None) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _value_sort_key(value: Scalar) -> tuple[str, Any]:
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, dt.datetime):
        return ("t", value.isoformat())
    return ("s", value)


def _dumps(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def condition_to_json(cond: Condition) -> dict[str, Any]:
    """Canonical JSON of a condition: AND/OR terms and IN values sorted and deduplicated."""
    if isinstance(cond, Compare):
        return {"column": cond.column, "op": cond.op, "value": value_to_json(cond.value)}
    if isinstance(cond, InList):
        unique = sorted(set(cond.values), key=_value_sort_key)
        return {
            "column": cond.column,
            "op": "not in" if cond.negated else "in",
            "value": [value_to_json(v) for v in unique],
        }
    if isinstance(cond, IsNull):
        return {"column": cond.column, "op": "is not null" if cond.negated else "is null"}
    if isinstance(cond, Like):
        op = ("not " if cond.negated else "") + ("ilike" if cond.case_insensitive else "like")
        return {"column": cond.column, "op": op, "value": cond.pattern}
    if isinstance(cond, And | Or):
        key = "and" if isinstance(cond, And) else "or"
        flat: dict[bytes, dict[str, Any]] = {}
        for term in _flatten(cond):
            doc = condition_to_json(term)
            flat[_dumps(doc)] = doc
        if len(flat) == 1:
            return next(iter(flat.values()))
        return {key: [flat[k] for k in sorted(flat)]}
    if isinstance(cond, Not):
        return {"not": condition_to_json(cond.term)}
    if isinstance(cond, Exists):
        edoc: dict[str, Any] = {("notExists" if cond.negated else "exists"): cond.relationship}
        if cond.where is not None:
            edoc["where"] = condition_to_json(cond.where)
        return edoc
    raise TypeError(f"not a condition: {cond!r}")


def _flatten(cond: And | Or) -> Iterator[Condition]:
    for term in cond.terms:
        if type(term) is type(cond):
            yield from _flatten(term)
        else:
            yield term


def to_json(query: Query, *, include_table: bool = True) -> dict[str, Any]:
    """The canonical JSON form of a query (the wire format)."""
    doc: dict[str, Any] = {}
    if include_table:
        doc["table"] = query.table
    if query.where is not None:
        doc["where"] = condition_to_json(query.where)
    if query.order_by:
        doc["orderBy"] = [[o.column, "desc" if o.descending else "asc"] for o in query.order_by]
    if query.limit is not None:
        doc["limit"] = query.limit
    if query.start is not None:
        doc["start"] = {
            "row": {k: value_to_json(v) for k, v in query.start.row},
            "inclusive": query.start.inclusive,
        }
    if query.related:
        doc["related"] = {
            r.relationship: to_json(r.query, include_table=False) for r in query.related
        }
    if query.aggregate is not None:
        agg = query.aggregate
        doc["aggregate"] = {
            "groupBy": list(agg.group_by),
            "measures": {
                m.alias: ({"fn": m.fn, "column": m.column} if m.column else {"fn": m.fn})
                for m in agg.measures
            },
        }
    return doc


def canonical_bytes(query: Query) -> bytes:
    return _dumps(to_json(query))


def query_id(query: Query) -> str:
    """A stable id: the first 16 hex digits of the SHA-256 of the canonical JSON."""
    return hashlib.sha256(canonical_bytes(query)).hexdigest()[:16]


def condition_id(cond: Condition | None) -> str:
    return hashlib.sha256(_dumps(None if cond is None else condition_to_json(cond))).hexdigest()[
        :16
    ]
