"""A fluent Python builder for queries.

    from queryplanner import table, col, exists

    q = (table("issue")
         .where(col("status").in_(["todo", "in_progress"]), col("priority") >= 2)
         .order_by("modified", desc=True)
         .limit(50)
         .related("comments", table("comment").order_by("created").limit(10))
         .build())

The builder makes unchecked ASTs; ``bind(q, schema)`` (or any client/server entry point)
checks and normalizes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from .query import (
    Aggregate,
    AggregateFn,
    And,
    Compare,
    Condition,
    Exists,
    InList,
    IsNull,
    Like,
    Measure,
    OrderBy,
    Query,
    Related,
    Scalar,
    Start,
)


class Col:
    """A column reference; comparisons build conditions (``col("a") == 1``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, value: object) -> Compare | IsNull:  # type: ignore[override]
        if value is None:
            return IsNull(self.name)
        return Compare(self.name, "=", value)  # type: ignore[arg-type]

    def __ne__(self, value: object) -> Compare | IsNull:  # type: ignore[override]
        if value is None:
            return IsNull(self.name, negated=True)
        return Compare(self.name, "!=", value)  # type: ignore[arg-type]

    def __lt__(self, value: Scalar) -> Compare:
        return Compare(self.name, "<", value)

    def __le__(self, value: Scalar) -> Compare:
        return Compare(self.name, "<=", value)

    def __gt__(self, value: Scalar) -> Compare:
        return Compare(self.name, ">", value)

    def __ge__(self, value: Scalar) -> Compare:
        return Compare(self.name, ">=", value)

    __hash__ = None  # type: ignore[assignment]

    def in_(self, values: Iterable[Scalar]) -> InList:
        return InList(self.name, tuple(values))

    def not_in(self, values: Iterable[Scalar]) -> InList:
        return InList(self.name, tuple(values), negated=True)

    def is_null(self) -> IsNull:
        return IsNull(self.name)

    def is_not_null(self) -> IsNull:
        return IsNull(self.name, negated=True)

    def like(self, pattern: str) -> Like:
        return Like(self.name, pattern)

    def not_like(self, pattern: str) -> Like:
        return Like(self.name, pattern, negated=True)

    def ilike(self, pattern: str) -> Like:
        return Like(self.name, pattern, case_insensitive=True)

    def not_ilike(self, pattern: str) -> Like:
        return Like(self.name, pattern, case_insensitive=True, negated=True)


def col(name: str) -> Col:
    return Col(name)


def exists(relationship: str, *conditions: Condition) -> Exists:
    return Exists(relationship, _all(conditions))


def not_exists(relationship: str, *conditions: Condition) -> Exists:
    return Exists(relationship, _all(conditions), negated=True)


def measure(fn: AggregateFn, column: str | None = None) -> tuple[AggregateFn, str | None]:
    return (fn, column)


def _all(conditions: Iterable[Condition]) -> Condition | None:
    terms = tuple(conditions)
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else And(terms)


class QueryBuilder:
    """Immutable: every method returns a new builder."""

    __slots__ = ("_query",)

    def __init__(self, query: Query) -> None:
        self._query = query

    def _with(self, **changes: Any) -> QueryBuilder:
        return QueryBuilder(dataclasses.replace(self._query, **changes))

    def where(self, *conditions: Condition) -> QueryBuilder:
        """AND the conditions with any already given."""
        existing = () if self._query.where is None else (self._query.where,)
        return self._with(where=_all((*existing, *conditions)))

    def order_by(self, column: str, *, desc: bool = False) -> QueryBuilder:
        return self._with(order_by=(*self._query.order_by, OrderBy(column, desc)))

    def limit(self, n: int) -> QueryBuilder:
        return self._with(limit=n)

    def start(self, row: Mapping[str, Scalar | None], *, inclusive: bool = False) -> QueryBuilder:
        return self._with(start=Start(tuple(row.items()), inclusive))

    def related(self, relationship: str, child: QueryBuilder | None = None) -> QueryBuilder:
        sub = child.build() if child is not None else Query(table="")
        rel = Related(relationship, dataclasses.replace(sub, table=""))
        return self._with(related=(*self._query.related, rel))

    def aggregate(
        self, group_by: Iterable[str] = (), **measures: tuple[AggregateFn, str | None]
    ) -> QueryBuilder:
        ms = tuple(Measure(alias, fn, column) for alias, (fn, column) in measures.items())
        return self._with(aggregate=Aggregate(tuple(group_by), ms))

    def build(self) -> Query:
        return self._query


def table(name: str) -> QueryBuilder:
    return QueryBuilder(Query(name))


def as_query(query: Query | QueryBuilder) -> Query:
    return query.build() if isinstance(query, QueryBuilder) else query
