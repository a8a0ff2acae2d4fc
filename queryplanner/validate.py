"""JSON -> checked query AST.

``parse_query(doc, schema)`` turns the wire form of a query into a normalized ``Query`` or raises
``QueryError`` naming the bad part by path (``where.and[1].column``) with the nearest valid name.
``bind(query, schema)`` does the same for a query built in Python. Nothing a client sends can
make these raise anything but ``QueryError``: every access is type-checked, and depth, size and
IN-list caps are enforced before recursion could run away.

Normalization: values are coerced to the column's Python type (timestamps to naive UTC
``datetime``, integers to ``float`` on float columns), and the primary key is appended to
``order_by`` as the final tiebreaker.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import QueryError, did_you_mean
from .query import (
    AGGREGATE_FNS,
    COMPARE_OPS,
    Aggregate,
    And,
    Compare,
    Condition,
    Exists,
    InList,
    IsNull,
    Like,
    Measure,
    Not,
    Or,
    OrderBy,
    Query,
    Related,
    Scalar,
    Start,
    to_json,
)
from .schema import Column, ColumnType, Schema, Table
from .wire import to_naive_utc

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_ALIAS = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_QUERY_KEYS = {"table", "where", "orderBy", "limit", "start", "related", "aggregate"}
_OPS = (*COMPARE_OPS, "in", "not in", "is null", "is not null", "like", "not like", "ilike",
        "not ilike")
_ORDERABLE = {ColumnType.INTEGER, ColumnType.FLOAT, ColumnType.TEXT, ColumnType.BOOLEAN,
              ColumnType.TIMESTAMP}


@dataclass(frozen=True)
class Limits:
    """Caps on what one query may ask for; the server may pass tighter ones."""

    max_limit: int = 10_000
    max_depth: int = 12
    max_in_values: int = 1_000
    max_nodes: int = 2_000
    max_string_length: int = 10_000


DEFAULT_LIMITS = Limits()


def parse_query(doc: Any, schema: Schema, limits: Limits = DEFAULT_LIMITS) -> Query:
    """Check a query's JSON form against ``schema`` and return the normalized AST."""
    return _Parser(schema, limits).query(doc, "", None, 0)


def bind(query: Query, schema: Schema, limits: Limits = DEFAULT_LIMITS) -> Query:
    """Check a query built in Python against ``schema`` and return the normalized AST."""
    if not isinstance(query, Query):
        raise QueryError("", f"Expected a Query, not {type(query).__name__}.")
    try:
        doc = to_json(query)
    except RecursionError:
        raise QueryError("", "The query is nested too deeply.") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise QueryError("", f"The query is not well formed: {exc}.") from None
    return parse_query(doc, schema, limits)


def parse_value(column: Column, value: Any, path: str) -> Scalar:
    """Check and coerce one literal for ``column`` (None is not a literal)."""
    t = column.type
    if t is ColumnType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(column, value, path, "an integer")
        if not _INT_MIN <= value <= _INT_MAX:
            raise QueryError(path, f"{value} is outside the 64-bit integer range.")
        return value
    if t is ColumnType.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(column, value, path, "a number")
        if not math.isfinite(value):
            raise QueryError(path, f"{value!r} is not a finite number.")
        return float(value)
    if t is ColumnType.TEXT:
        if not isinstance(value, str):
            raise _type_error(column, value, path, "a string")
        return value
    if t is ColumnType.BOOLEAN:
        if not isinstance(value, bool):
            raise _type_error(column, value, path, "true or false")
        return value
    if t is ColumnType.TIMESTAMP:
        return parse_timestamp(value, path, column.name)
    raise QueryError(
        path, f"Column {column.name!r} has type json; it can only be tested with is null."
    )


def parse_timestamp(value: Any, path: str, column: str) -> dt.datetime:
    parsed = to_naive_utc(value)
    if parsed is not None:
        return parsed
    if isinstance(value, str):
        raise QueryError(
            path,
            f"{value!r} is not an ISO 8601 timestamp for column {column!r} "
            "(e.g. '2026-11-30T12:00:00').",
        )
    raise QueryError(
        path, f"Column {column!r} needs an ISO 8601 timestamp string, not {_describe(value)}."
    )


def _type_error(column: Column, value: Any, path: str, wanted: str) -> QueryError:
    return QueryError(
        path,
        f"Column {column.name!r} has type {column.type.value}; expected {wanted}, "
        f"not {_describe(value)}.",
    )


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _join(path: str, part: str) -> str:
    if part.startswith("["):
        return path + part
    return f"{path}.{part}" if path else part


class _Parser:
    def __init__(self, schema: Schema, limits: Limits) -> None:
        self.schema = schema
        self.limits = limits
        self.nodes = 0

    def _count(self, path: str, depth: int) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise QueryError(path, f"The query has more than {self.limits.max_nodes} parts.")
        if depth > self.limits.max_depth:
            raise QueryError(
                path, f"The query is nested deeper than {self.limits.max_depth} levels."
            )

    def _object(self, doc: Any, path: str, what: str) -> Mapping[str, Any]:
        if not isinstance(doc, Mapping):
            raise QueryError(path, f"Expected {what} (a JSON object), not {_describe(doc)}.")
        return doc

    def _column(self, table: Table, name: Any, path: str) -> Column:
        if not isinstance(name, str):
            raise QueryError(path, f"A column name must be a string, not {_describe(name)}.")
        if not table.has_column(name):
            raise QueryError(
                path,
                f"Unknown column {name!r} in table {table.name!r}."
                + did_you_mean(name, table.column_names),
            )
        return table.column(name)

    # -- query -------------------------------------------------------------------------

    def query(self, doc: Any, path: str, table: Table | None, depth: int) -> Query:
        self._count(path, depth)
        d = self._object(doc, path, "a query")
        for key in d:
            if key not in _QUERY_KEYS:
                raise QueryError(
                    _join(path, str(key)),
                    f"Unknown query key {key!r}." + did_you_mean(str(key), _QUERY_KEYS),
                )
        if table is None:
            name = d.get("table")
            if not isinstance(name, str):
                raise QueryError(
                    _join(path, "table"), f"A query needs a table name, not {_describe(name)}."
                )
            if not self.schema.has_table(name):
                raise QueryError(
                    _join(path, "table"),
                    f"Unknown table {name!r}." + did_you_mean(name, self.schema.table_names),
                )
            table = self.schema.table(name)
        elif "table" in d and d["table"] != table.name:
            raise QueryError(
                _join(path, "table"),
                f"This related query reads table {table.name!r}, not {d['table']!r}.",
            )
        where = None
        if d.get("where") is not None:
            where = self.condition(d["where"], _join(path, "where"), table, depth + 1)
        aggregate = None
        if d.get("aggregate") is not None:
            apath = _join(path, "aggregate")
            if path:
                raise QueryError(apath, "Aggregates are allowed on the top-level query only.")
            for key in ("orderBy", "limit", "start", "related"):
                if d.get(key) is not None:
                    raise QueryError(
                        _join(path, key),
                        f"An aggregate query cannot have {key!r}: groups come ordered by the "
                        "groupBy columns.",
                    )
            aggregate = self.aggregate(d["aggregate"], apath, table)
            return Query(table.name, where, (), None, None, (), aggregate)
        order_by = self.order_by(d.get("orderBy"), _join(path, "orderBy"), table)
        limit = self.limit(d.get("limit"), _join(path, "limit"))
        start = None
        if d.get("start") is not None:
            start = self.start(d["start"], _join(path, "start"), table, order_by)
        related = self.related(d.get("related"), _join(path, "related"), table, depth)
        return Query(table.name, where, order_by, limit, start, related, None)

    def order_by(self, doc: Any, path: str, table: Table) -> tuple[OrderBy, ...]:
        items: list[OrderBy] = []
        if doc is not None:
            if not isinstance(doc, list):
                raise QueryError(
                    path, f"orderBy must be a list of [column, 'asc'|'desc'], not {_describe(doc)}."
                )
            for i, item in enumerate(doc):
                ipath = f"{path}[{i}]"
                if isinstance(item, str):
                    item = [item, "asc"]
                if not isinstance(item, list) or len(item) != 2:
                    raise QueryError(ipath, "Each orderBy entry is [column, 'asc'|'desc'].")
                col = self._column(table, item[0], ipath)
                if col.type not in _ORDERABLE:
                    raise QueryError(ipath, f"Column {col.name!r} of type json cannot be ordered.")
                if item[1] not in ("asc", "desc"):
                    raise QueryError(
                        ipath, f"The direction must be 'asc' or 'desc', not {_describe(item[1])}."
                    )
                if any(o.column == col.name for o in items):
                    raise QueryError(ipath, f"Column {col.name!r} appears twice in orderBy.")
                items.append(OrderBy(col.name, item[1] == "desc"))
        for key in table.primary_key:
            if not any(o.column == key for o in items):
                items.append(OrderBy(key, False))
        return tuple(items)

    def limit(self, doc: Any, path: str) -> int | None:
        if doc is None:
            return None
        if isinstance(doc, bool) or not isinstance(doc, int):
            raise QueryError(path, f"limit must be a whole number, not {_describe(doc)}.")
        if doc < 0:
            raise QueryError(path, f"limit must not be negative ({doc}).")
        if doc > self.limits.max_limit:
            raise QueryError(path, f"limit {doc} is above the maximum {self.limits.max_limit}.")
        return doc

    def start(self, doc: Any, path: str, table: Table, order_by: tuple[OrderBy, ...]) -> Start:
        d = self._object(doc, path, "a start cursor")
        for key in d:
            if key not in ("row", "inclusive"):
                raise QueryError(_join(path, str(key)), f"Unknown start key {key!r}.")
        inclusive = d.get("inclusive", False)
        if not isinstance(inclusive, bool):
            raise QueryError(_join(path, "inclusive"), "inclusive must be true or false.")
        row = self._object(d.get("row"), _join(path, "row"), "the start row")
        values: list[tuple[str, Scalar | None]] = []
        for o in order_by:
            vpath = _join(_join(path, "row"), o.column)
            if o.column not in row:
                raise QueryError(
                    vpath, f"The start row needs a value for the order column {o.column!r}."
                )
            col = table.column(o.column)
            value = row[o.column]
            if value is None:
                if not col.nullable:
                    raise QueryError(vpath, f"Column {o.column!r} is not nullable.")
                values.append((o.column, None))
            else:
                values.append((o.column, parse_value(col, value, vpath)))
        for key in row:
            if not any(o.column == key for o in order_by):
                raise QueryError(
                    _join(_join(path, "row"), str(key)),
                    f"{key!r} is not an order column; the start row holds only the orderBy "
                    "columns and the primary key.",
                )
        return Start(tuple(values), inclusive)

    def related(self, doc: Any, path: str, table: Table, depth: int) -> tuple[Related, ...]:
        if doc is None:
            return ()
        d = self._object(doc, path, "related queries keyed by relationship")
        out = []
        for name in sorted(d):
            rpath = _join(path, str(name))
            if not table.has_relationship(name):
                raise QueryError(
                    rpath,
                    f"Unknown relationship {name!r} on table {table.name!r}."
                    + did_you_mean(str(name), [r.name for r in table.relationships]),
                )
            rel = table.relationship(name)
            sub = d[name] if d[name] is not None else {}
            child = self.query(sub, rpath, self.schema.table(rel.target), depth + 1)
            out.append(Related(name, child))
        return tuple(out)

    def aggregate(self, doc: Any, path: str, table: Table) -> Aggregate:
        d = self._object(doc, path, "an aggregate")
        for key in d:
            if key not in ("groupBy", "measures"):
                raise QueryError(_join(path, str(key)), f"Unknown aggregate key {key!r}.")
        group_doc = d.get("groupBy", [])
        if not isinstance(group_doc, list):
            raise QueryError(_join(path, "groupBy"), "groupBy must be a list of column names.")
        group_by: list[str] = []
        for i, name in enumerate(group_doc):
            gpath = f"{_join(path, 'groupBy')}[{i}]"
            col = self._column(table, name, gpath)
            if col.type is ColumnType.JSON:
                raise QueryError(gpath, f"Column {col.name!r} of type json cannot be grouped.")
            if col.name in group_by:
                raise QueryError(gpath, f"Column {col.name!r} appears twice in groupBy.")
            group_by.append(col.name)
        mpath = _join(path, "measures")
        measures_doc = self._object(d.get("measures"), mpath, "measures keyed by alias")
        if not measures_doc:
            raise QueryError(mpath, "An aggregate needs at least one measure.")
        measures = []
        for alias in sorted(measures_doc):
            apath = _join(mpath, str(alias))
            if not _ALIAS.match(alias) or alias in group_by:
                raise QueryError(
                    apath,
                    f"Invalid measure alias {alias!r}: use lower-case letters, digits and '_', "
                    "and not the name of a groupBy column.",
                )
            m = self._object(measures_doc[alias], apath, "a measure {fn, column}")
            for key in m:
                if key not in ("fn", "column"):
                    raise QueryError(_join(apath, str(key)), f"Unknown measure key {key!r}.")
            fn = m.get("fn")
            if fn not in AGGREGATE_FNS:
                raise QueryError(
                    _join(apath, "fn"),
                    f"Unknown aggregate function {fn!r}; expected one of "
                    f"{', '.join(AGGREGATE_FNS)}." + did_you_mean(str(fn), AGGREGATE_FNS),
                )
            column = m.get("column")
            if column is None:
                if fn != "count":
                    raise QueryError(_join(apath, "column"), f"{fn} needs a column.")
            else:
                col = self._column(table, column, _join(apath, "column"))
                numeric = col.type in (ColumnType.INTEGER, ColumnType.FLOAT)
                if fn in ("sum", "avg") and not numeric:
                    raise QueryError(
                        _join(apath, "column"),
                        f"{fn} needs an integer or float column; {col.name!r} is "
                        f"{col.type.value}.",
                    )
                if fn in ("min", "max") and col.type not in _ORDERABLE:
                    raise QueryError(_join(apath, "column"), f"{fn} cannot read a json column.")
            measures.append(Measure(alias, fn, column))
        return Aggregate(tuple(group_by), tuple(measures))

    # -- conditions --------------------------------------------------------------------

    def condition(self, doc: Any, path: str, table: Table, depth: int) -> Condition:
        self._count(path, depth)
        d = self._object(doc, path, "a condition")
        for key in ("and", "or"):
            if key in d:
                self._lone_key(d, key, path)
                terms = d[key]
                kpath = _join(path, key)
                if not isinstance(terms, list) or not terms:
                    raise QueryError(kpath, f"{key!r} needs a non-empty list of conditions.")
                parsed = tuple(
                    self.condition(t, f"{kpath}[{i}]", table, depth + 1)
                    for i, t in enumerate(terms)
                )
                if len(parsed) == 1:
                    return parsed[0]
                return And(parsed) if key == "and" else Or(parsed)
        if "not" in d:
            self._lone_key(d, "not", path)
            return Not(self.condition(d["not"], _join(path, "not"), table, depth + 1))
        for key in ("exists", "notExists"):
            if key in d:
                return self.exists(d, key, path, table, depth)
        if "column" in d:
            return self.comparison(d, path, table)
        raise QueryError(
            path,
            "A condition is {column, op, value}, {and: [...]}, {or: [...]}, {not: ...} or "
            f"{{exists: relationship, where: ...}}; got keys {sorted(map(str, d))}.",
        )

    def _lone_key(self, d: Mapping[str, Any], key: str, path: str) -> None:
        if len(d) != 1:
            extra = sorted(str(k) for k in d if k != key)
            raise QueryError(path, f"A {key!r} condition cannot also have keys {extra}.")

    def exists(
        self, d: Mapping[str, Any], key: str, path: str, table: Table, depth: int
    ) -> Condition:
        for k in d:
            if k not in (key, "where"):
                raise QueryError(_join(path, str(k)), f"Unknown key {k!r} in an {key} condition.")
        name = d[key]
        kpath = _join(path, key)
        if not isinstance(name, str) or not table.has_relationship(name):
            raise QueryError(
                kpath,
                f"Unknown relationship {name!r} on table {table.name!r}."
                + did_you_mean(str(name), [r.name for r in table.relationships]),
            )
        target = self.schema.table(table.relationship(name).target)
        where = None
        if d.get("where") is not None:
            where = self.condition(d["where"], _join(path, "where"), target, depth + 1)
        return Exists(name, where, key == "notExists")

    def comparison(self, d: Mapping[str, Any], path: str, table: Table) -> Condition:
        for k in d:
            if k not in ("column", "op", "value"):
                raise QueryError(
                    _join(path, str(k)),
                    f"Unknown key {k!r} in a comparison; expected column, op and value.",
                )
        col = self._column(table, d["column"], _join(path, "column"))
        op = d.get("op")
        opath = _join(path, "op")
        if not isinstance(op, str) or op.lower() not in _OPS:
            raise QueryError(
                opath, f"Unknown operator {op!r}; expected one of {', '.join(_OPS)}."
            )
        op = op.lower()
        vpath = _join(path, "value")
        value = d.get("value")
        if op in ("is null", "is not null"):
            if value is not None:
                raise QueryError(vpath, f"{op!r} takes no value.")
            return IsNull(col.name, op == "is not null")
        if value is None:
            raise QueryError(
                vpath,
                f"{op!r} needs a value; comparing with null is never true, use 'is null'.",
            )
        if op in ("in", "not in"):
            if not isinstance(value, list) or not value:
                raise QueryError(vpath, f"{op!r} needs a non-empty list of values.")
            if len(value) > self.limits.max_in_values:
                raise QueryError(
                    vpath,
                    f"The list has {len(value)} values; the maximum is "
                    f"{self.limits.max_in_values}.",
                )
            values = tuple(
                self._literal(col, v, f"{vpath}[{i}]") for i, v in enumerate(value)
            )
            return InList(col.name, values, op == "not in")
        if op.endswith("like"):
            if col.type is not ColumnType.TEXT:
                raise QueryError(
                    opath, f"{op!r} needs a text column; {col.name!r} is {col.type.value}."
                )
            pattern = self._literal(col, value, vpath)
            assert isinstance(pattern, str)
            return Like(col.name, pattern, "ilike" in op, op.startswith("not"))
        return Compare(col.name, op, self._literal(col, value, vpath))  # type: ignore[arg-type]

    def _literal(self, col: Column, value: Any, path: str) -> Scalar:
        if value is None:
            raise QueryError(path, "null is not a value here; use 'is null'.")
        if isinstance(value, str) and len(value) > self.limits.max_string_length:
            raise QueryError(
                path, f"The string is longer than {self.limits.max_string_length} characters."
            )
        return parse_value(col, value, path)
