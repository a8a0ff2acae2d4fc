"""SQL fragments: conditions, orders and keyset starts as parameterized DuckDB SQL.

Every fragment is a ``Frag``: SQL text with ``?`` placeholders and the parameters in the order
the placeholders appear, so fragments can be concatenated in any shape without renumbering.
Identifiers come only from the schema (checked through ``Table.column``/``relationship`` and
quoted); every value, including limits, is a parameter. Two queries that differ only in their
values therefore compile to the same SQL text.

Read rules (``rules``: a condition per table) are ANDed into every access of a table: the
compiled query's own table, each EXISTS subquery's target and each junction table. A rule's own
conditions are compiled without rules (a rule filters; it never leaks rows of the tables it reads).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import QueryError
from .query import (
    And,
    Compare,
    Condition,
    Exists,
    InList,
    IsNull,
    Like,
    Not,
    Or,
    OrderBy,
    Query,
    Start,
)
from .schema import ColumnType, Relationship, Schema, Table

Rules = Mapping[str, Condition]
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass(frozen=True)
class Frag:
    sql: str
    params: tuple[Any, ...] = ()

    def __add__(self, other: Frag | str) -> Frag:
        if isinstance(other, str):
            return Frag(self.sql + other, self.params)
        return Frag(self.sql + other.sql, self.params + other.params)

    def __radd__(self, other: str) -> Frag:
        return Frag(other + self.sql, self.params)


TRUE = Frag("TRUE")
FALSE = Frag("FALSE")


def join(parts: Iterable[Frag | str], sep: str) -> Frag:
    sql: list[str] = []
    params: list[Any] = []
    for p in parts:
        if isinstance(p, str):
            sql.append(p)
        else:
            sql.append(p.sql)
            params.extend(p.params)
    return Frag(sep.join(sql), tuple(params))


def ident(name: str) -> str:
    """Quote a schema name; refuses anything a schema could not hold."""
    if not _SAFE_NAME.match(name):
        raise QueryError("", f"{name!r} is not a valid identifier.")
    return f'"{name}"'


def colref(alias: str, table: Table, column: str) -> str:
    if not table.has_column(column):  # an unbound query naming a column the schema lacks
        raise QueryError("", f"Unknown column {column!r} in table {table.name!r}.")
    return f"{alias}.{ident(column)}"


def like_pattern(pattern: str) -> str:
    """The pattern DuckDB gets: a trailing lone backslash is doubled, so it matches itself.

    DuckDB refuses a pattern ending in its escape character; the Python side treats that
    backslash as a literal one, and this keeps both paths on that one meaning.
    """
    trailing = len(pattern) - len(pattern.rstrip("\\"))
    return pattern + "\\" if trailing % 2 else pattern


class Emitter:
    """Compiles conditions against table aliases, naming fresh aliases t1, t2, ..."""

    def __init__(
        self, schema: Schema, rules: Rules | None = None, _counter: list[int] | None = None
    ) -> None:
        self.schema = schema
        self.rules = rules or {}
        self._counter = _counter if _counter is not None else [0]

    def alias(self) -> str:
        self._counter[0] += 1
        return f"t{self._counter[0]}"

    def rule(self, table: str, alias: str) -> Frag | None:
        """The read rule of ``table`` over ``alias`` (compiled without rules), if any."""
        cond = self.rules.get(table)
        if cond is None:
            return None
        # Shares the alias counter: a rule's subqueries never reuse an alias of the query.
        plain = Emitter(self.schema, None, self._counter)
        return plain.condition(cond, self.schema.table(table), alias)

    def filters(
        self, table: Table, alias: str, where: Condition | None, extra: Sequence[Frag] = ()
    ) -> Frag:
        """``where`` AND the table's rule AND ``extra`` over ``alias`` (TRUE when empty)."""
        parts: list[Frag] = []
        if where is not None:
            parts.append(self.condition(where, table, alias))
        rule = self.rule(table.name, alias)
        if rule is not None:
            parts.append(rule)
        parts.extend(extra)
        if not parts:
            return TRUE
        return parts[0] if len(parts) == 1 else join(parts, " AND ")

    def condition(self, cond: Condition, table: Table, alias: str) -> Frag:
        if isinstance(cond, Compare):
            op = _SQL_OPS.get(cond.op)
            if op is None:
                raise QueryError("", f"Unknown operator {cond.op!r}.")
            return Frag(f"{colref(alias, table, cond.column)} {op} ?", (cond.value,))
        if isinstance(cond, InList):
            if not cond.values:
                return TRUE if cond.negated else FALSE
            marks = ", ".join("?" * len(cond.values))
            neg = "NOT IN" if cond.negated else "IN"
            return Frag(f"{colref(alias, table, cond.column)} {neg} ({marks})", cond.values)
        if isinstance(cond, IsNull):
            test = "IS NOT NULL" if cond.negated else "IS NULL"
            return Frag(f"{colref(alias, table, cond.column)} {test}")
        if isinstance(cond, Like):
            op = ("NOT " if cond.negated else "") + ("ILIKE" if cond.case_insensitive else "LIKE")
            return Frag(
                f"{colref(alias, table, cond.column)} {op} ? ESCAPE '\\'",
                (like_pattern(cond.pattern),),
            )
        if isinstance(cond, And | Or):
            sep = " AND " if isinstance(cond, And) else " OR "
            if not cond.terms:
                return TRUE if isinstance(cond, And) else FALSE
            return "(" + join((self.condition(t, table, alias) for t in cond.terms), sep) + ")"
        if isinstance(cond, Not):
            return "(NOT " + self.condition(cond.term, table, alias) + ")"
        if isinstance(cond, Exists):
            rel = table.relationship(cond.relationship)
            body = self.related_from(table, alias, rel, cond.where)
            return Frag("NOT EXISTS (" if cond.negated else "EXISTS (") + body + ")"
        raise QueryError("", f"Not a condition: {cond!r}.")

    def related_from(
        self, table: Table, alias: str, rel: Relationship, where: Condition | None
    ) -> Frag:
        """``SELECT 1 FROM ... WHERE`` the rows related to ``alias`` through ``rel``."""
        target = self.schema.table(rel.target)
        t = self.alias()
        if rel.through is None:
            link = [
                Frag(f"{colref(t, target, tc)} = {colref(alias, table, sc)}")
                for sc, tc in zip(rel.source_columns, rel.target_columns, strict=True)
            ]
            cond = self.filters(target, t, where, link)
            return Frag(f"SELECT 1 FROM {ident(target.name)} AS {t} WHERE ") + cond
        junction = self.schema.table(rel.through.table)
        j = self.alias()
        on = " AND ".join(
            f"{colref(j, junction, jc)} = {colref(t, target, tc)}"
            for jc, tc in zip(rel.through.target_columns, rel.target_columns, strict=True)
        )
        link = [
            Frag(f"{colref(j, junction, jc)} = {colref(alias, table, sc)}")
            for sc, jc in zip(rel.source_columns, rel.through.source_columns, strict=True)
        ]
        jrule = self.rule(junction.name, j)
        cond = self.filters(target, t, where, [*link, *([jrule] if jrule else [])])
        return (
            Frag(
                f"SELECT 1 FROM {ident(junction.name)} AS {j} JOIN {ident(target.name)} AS {t} "
                f"ON {on} WHERE "
            )
            + cond
        )


def order_sql(order_by: Sequence[OrderBy], table: Table, alias: str) -> str:
    """ORDER BY terms with explicit NULLS LAST in both directions (the documented order)."""
    return ", ".join(
        f"{colref(alias, table, o.column)} {'DESC' if o.descending else 'ASC'} NULLS LAST"
        for o in order_by
    )


def start_sql(start: Start, order_by: Sequence[OrderBy], table: Table, alias: str) -> Frag:
    """Rows after (or at) the start row in the total order ``order_by`` (NULLS LAST).

    Lexicographic: for some i, the first i-1 order columns equal the start row's and the i-th
    comes after it. After a NULL nothing comes (NULL is last); after v come the greater (or, in
    a descending column, smaller) values and NULL.
    """
    bound = start.as_dict()
    equal_so_far: list[Frag] = []
    options: list[Frag] = []
    for o in order_by:
        ref = colref(alias, table, o.column)
        if o.column not in bound:
            raise QueryError("start.row", f"The start row needs a value for {o.column!r}.")
        value = bound[o.column]
        if value is not None:
            cmp = "<" if o.descending else ">"
            if table.column(o.column).nullable:
                after = Frag(f"({ref} {cmp} ? OR {ref} IS NULL)", (value,))
            else:
                after = Frag(f"{ref} {cmp} ?", (value,))
            options.append("(" + join([*equal_so_far, after], " AND ") + ")")
            equal_so_far.append(Frag(f"{ref} = ?", (value,)))
        else:
            equal_so_far.append(Frag(f"{ref} IS NULL"))
    if start.inclusive:
        options.append("(" + join(equal_so_far, " AND ") + ")")
    if not options:
        return FALSE
    return "(" + join(options, " OR ") + ")"


def select_columns(table: Table, columns: Sequence[str] | None = None) -> list[str]:
    if columns is None:
        return list(table.column_names)
    wanted = set(columns)
    for name in wanted:
        table.column(name)
    return [c for c in table.column_names if c in wanted]


def iso_text(ref: str) -> str:
    """A timestamp as the wire's ISO text, exactly Python's ``datetime.isoformat()`` (no
    fraction when the microseconds are 0): DuckDB formats a large result faster than Python."""
    return (
        f"CASE WHEN microsecond({ref}) % 1000000 = 0 THEN strftime({ref}, '%Y-%m-%dT%H:%M:%S') "
        f"ELSE strftime({ref}, '%Y-%m-%dT%H:%M:%S.%f') END"
    )


def select_rows(
    em: Emitter,
    query: Query,
    table: Table,
    alias: str,
    columns: Sequence[str],
    *,
    iso_timestamps: bool = False,
    ordered: bool = True,
) -> Frag:
    """``SELECT columns FROM table WHERE where+rule+start ORDER BY ... LIMIT ?``.

    ``iso_timestamps``: timestamp columns come out as the wire's ISO text (``iso_text``).
    ``ordered=False``: no ORDER BY unless a LIMIT needs it.
    """

    def head_of(c: str) -> str:
        ref = colref(alias, table, c)
        if iso_timestamps and table.column(c).type is ColumnType.TIMESTAMP:
            return f"{iso_text(ref)} AS {ident(c)}"
        return ref

    head = ", ".join(head_of(c) for c in columns)
    frag = Frag(f"SELECT {head} FROM {ident(table.name)} AS {alias} WHERE ") + where_sql(
        em, query, table, alias
    )
    if query.order_by and (ordered or query.limit is not None):
        frag = frag + f" ORDER BY {order_sql(query.order_by, table, alias)}"
    if query.limit is not None:
        frag = frag + Frag(" LIMIT ?", (query.limit,))
    return frag


def where_sql(
    em: Emitter, query: Query, table: Table, alias: str, extra: Sequence[Frag] = ()
) -> Frag:
    """``extra``, the query's where, the table's read rule and its keyset start, ANDed."""
    more = [] if query.start is None else [start_sql(query.start, query.order_by, table, alias)]
    return em.filters(table, alias, query.where, [*extra, *more])
