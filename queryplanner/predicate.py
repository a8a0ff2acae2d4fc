"""Conditions and orders as Python functions over rows, with exactly DuckDB's semantics.

Rows are mappings from column name to value (``None`` for NULL). Conditions follow SQL's
three-valued logic: a comparison with NULL is *unknown*, NOT unknown is unknown, and a row
matches only when the whole condition is *true*. ``compile_condition`` returns a function
giving True/False/None (unknown); ``compile_predicate`` one giving a plain bool.

Orders are total: ``order_by`` always ends with the primary key (see ``validate``), and NULL
sorts after every value in both directions (``NULLS LAST``), as the SQL compiler emits.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from .errors import QueryError
from .query import And, Compare, Condition, Exists, InList, IsNull, Like, Not, Or, OrderBy, Query
from .schema import Relationship, Schema

Row = Mapping[str, Any]
Tri = bool | None
RowTest = Callable[[Row], Tri]


class RelatedRows(Protocol):
    """Gives the rows related to ``row`` through ``relationship`` (needed by EXISTS)."""

    def related_rows(self, relationship: Relationship, row: Row) -> Iterable[Row]: ...


def compile_predicate(
    cond: Condition | None, schema: Schema, table: str, lookup: RelatedRows | None = None
) -> Callable[[Row], bool]:
    """A function that is True exactly for the rows SQL's WHERE would keep."""
    if cond is None:
        return lambda row: True
    test = compile_condition(cond, schema, table, lookup)
    return lambda row: test(row) is True


def compile_condition(
    cond: Condition, schema: Schema, table: str, lookup: RelatedRows | None = None
) -> RowTest:
    """A function giving the condition's three-valued truth for a row."""
    if isinstance(cond, Compare):
        return _compare(cond)
    if isinstance(cond, InList):
        values = frozenset(cond.values)
        column = cond.column
        if cond.negated:
            return lambda row: None if (v := row[column]) is None else v not in values
        return lambda row: None if (v := row[column]) is None else v in values
    if isinstance(cond, IsNull):
        column = cond.column
        if cond.negated:
            return lambda row: row[column] is not None
        return lambda row: row[column] is None
    if isinstance(cond, Like):
        return _like(cond)
    if isinstance(cond, And):
        and_terms = tuple(compile_condition(t, schema, table, lookup) for t in cond.terms)
        return functools.partial(_and, and_terms)
    if isinstance(cond, Or):
        or_terms = tuple(compile_condition(t, schema, table, lookup) for t in cond.terms)
        return functools.partial(_or, or_terms)
    if isinstance(cond, Not):
        inner = compile_condition(cond.term, schema, table, lookup)
        return lambda row: None if (v := inner(row)) is None else not v
    if isinstance(cond, Exists):
        return _exists(cond, schema, table, lookup)
    raise TypeError(f"not a condition: {cond!r}")


def _and(terms: tuple[RowTest, ...], row: Row) -> Tri:
    result: Tri = True
    for term in terms:
        v = term(row)
        if v is False:
            return False
        if v is None:
            result = None
    return result


def _or(terms: tuple[RowTest, ...], row: Row) -> Tri:
    result: Tri = False
    for term in terms:
        v = term(row)
        if v is True:
            return True
        if v is None:
            result = None
    return result


def _compare(cond: Compare) -> RowTest:
    column, value, op = cond.column, cond.value, cond.op
    if op == "=":
        return lambda row: None if (v := row[column]) is None else v == value
    if op == "!=":
        return lambda row: None if (v := row[column]) is None else v != value
    if op == "<":
        return lambda row: None if (v := row[column]) is None else v < value
    if op == "<=":
        return lambda row: None if (v := row[column]) is None else v <= value
    if op == ">":
        return lambda row: None if (v := row[column]) is None else v > value
    if op == ">=":
        return lambda row: None if (v := row[column]) is None else v >= value
    raise QueryError("", f"Unknown operator {op!r}.")


@functools.lru_cache(maxsize=4096)
def like_regex(pattern: str, case_insensitive: bool) -> re.Pattern[str]:
    """Translate a LIKE pattern: ``%`` any run, ``_`` one character, ``\\`` escapes."""
    out = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars, None)
            out.append(re.escape(nxt if nxt is not None else "\\"))
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(re.escape(ch))
    flags = re.DOTALL | (re.IGNORECASE if case_insensitive else 0)
    return re.compile("".join(out), flags)


class _SimpleLower(dict[int, str]):
    """Code point -> its simple lowercase mapping, one code point for one (as DuckDB's lower).

    ``str.lower`` differs in two ways DuckDB's ILIKE does not follow: it maps 'İ' to two code
    points ('i' + combining dot) and lowers 'Σ' to 'ς' at the end of a word.
    """

    def __missing__(self, code: int) -> str:
        low = chr(code).lower()
        folded = low if len(low) == 1 else low[0]
        self[code] = folded
        return folded


_LOWER = _SimpleLower()


def fold_case(text: str) -> str:
    """ILIKE's case folding: each code point to its simple lowercase, without context."""
    return text.translate(_LOWER)


def _like(cond: Like) -> RowTest:
    column, negated, ci = cond.column, cond.negated, cond.case_insensitive
    if ci:
        regex = like_regex(fold_case(cond.pattern), False)

        def match(v: str) -> bool:
            return regex.fullmatch(fold_case(v)) is not None
    else:
        regex = like_regex(cond.pattern, False)

        def match(v: str) -> bool:
            return regex.fullmatch(v) is not None

    if negated:
        return lambda row: None if (v := row[column]) is None else not match(v)
    return lambda row: None if (v := row[column]) is None else match(v)


def _exists(cond: Exists, schema: Schema, table: str, lookup: RelatedRows | None) -> RowTest:
    if lookup is None:
        raise QueryError("", f"EXISTS over {cond.relationship!r} needs access to related rows.")
    rel = schema.table(table).relationship(cond.relationship)
    child = compile_predicate(cond.where, schema, rel.target, lookup)
    negated = cond.negated

    def test(row: Row) -> Tri:
        found = any(child(r) for r in lookup.related_rows(rel, row))
        return not found if negated else found

    return test


# -- ordering ------------------------------------------------------------------------------


@functools.total_ordering
class _Desc:
    """Wraps a value so that it sorts in reverse."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.value == other.value

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.value < self.value)

    def __hash__(self) -> int:
        return hash(self.value)


SortKey = tuple[Any, ...]


def compile_sort_key(order_by: tuple[OrderBy, ...]) -> Callable[[Row], SortKey]:
    """A key function giving the query's total order; NULL sorts last in both directions."""
    parts = tuple((o.column, o.descending) for o in order_by)
    if len(parts) == 1:
        ((c1, d1),) = parts

        def key1(row: Row) -> SortKey:
            v1 = row[c1]
            return ((1, 0) if v1 is None else (0, _Desc(v1) if d1 else v1),)

        return key1
    if len(parts) == 2:
        # The common shape (one column, then the primary-key tiebreak) without the loop: a
        # hydration computes this key for every row.
        (c1, d1), (c2, d2) = parts

        def key2(row: Row) -> SortKey:
            v1, v2 = row[c1], row[c2]
            return (
                (1, 0) if v1 is None else (0, _Desc(v1) if d1 else v1),
                (1, 0) if v2 is None else (0, _Desc(v2) if d2 else v2),
            )

        return key2

    def key(row: Row) -> SortKey:
        out: list[Any] = []
        for column, desc in parts:
            v = row[column]
            if v is None:
                out.append((1, 0))
            else:
                out.append((0, _Desc(v) if desc else v))
        return tuple(out)

    return key


def compile_start_filter(query: Query) -> Callable[[Row], bool]:
    """True for rows at or after the query's keyset ``start`` (all rows when it has none)."""
    if query.start is None:
        return lambda row: True
    key = compile_sort_key(query.order_by)
    bound = key(query.start.as_dict())
    if query.start.inclusive:
        return lambda row: key(row) >= bound
    return lambda row: key(row) > bound


def row_key(pk: tuple[str, ...], row: Row) -> tuple[Any, ...]:
    """The primary key of a row as a tuple (the identity used across the whole system)."""
    return tuple(row[k] for k in pk)


def evaluate(query: Query, schema: Schema, rows: Iterable[Row],
             lookup: RelatedRows | None = None) -> list[Row]:
    """Run a non-aggregate query's where/order/start/limit over rows of its table."""
    if query.aggregate is not None:
        raise QueryError("aggregate", "evaluate() runs row queries; aggregate them separately.")
    keep = compile_predicate(query.where, schema, query.table, lookup)
    after = compile_start_filter(query)
    selected = [r for r in rows if keep(r) and after(r)]
    selected.sort(key=compile_sort_key(query.order_by))
    return selected if query.limit is None else selected[: query.limit]
