"""Queries -> parameterized DuckDB SQL, and the DDL of a schema.

    create_table_sql(schema, version_column="_v")    -> ["CREATE TABLE IF NOT EXISTS ...", ...]
    compile_select(query, schema, rules=...)          -> CompiledSQL(sql, params): the root rows
                                                         (or the groups of an aggregate query)
    compile_row_sets(query, schema, rules=...)        -> [RowSetSQL]: every row of the result,
                                                         related children and junction rows too
    nest_rows(query, schema, rows_by_path)            -> the hierarchical result, in Python

The SQL follows the semantics of docs/queries.md, the same as ``queryplanner.predicate``:
three-valued NULL logic, NULLS LAST in both directions, the primary key as the final tiebreaker,
strings by code point, LIKE with ``\\`` as the escape character. Identifiers come only from the
schema and every value is a ``?`` parameter, so nothing a client sends can change the SQL's shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .query import Measure, Query
from .schema import ColumnType, Schema, Table
from .sql_expr import Emitter, Frag, Rules, colref, ident, select_columns, select_rows, where_sql
from .sql_nest import junction_key, nest_rows
from .sql_rowsets import RowSetSQL, compile_row_sets

__all__ = [
    "DUCKDB_SETUP",
    "SQL_TYPES",
    "CompiledSQL",
    "RowSetSQL",
    "compile_row_sets",
    "compile_select",
    "create_table_sql",
    "junction_key",
    "nest_rows",
]

SQL_TYPES: dict[ColumnType, str] = {
    ColumnType.INTEGER: "BIGINT",
    ColumnType.FLOAT: "DOUBLE",
    ColumnType.TEXT: "VARCHAR",
    ColumnType.BOOLEAN: "BOOLEAN",
    ColumnType.TIMESTAMP: "TIMESTAMP",
    ColumnType.JSON: "JSON",
}


DUCKDB_SETUP: tuple[str, ...] = ("SET disabled_optimizers = 'row_group_pruner'",)
"""Run these once on every DuckDB connection that executes compiled SQL (cursors inherit them).

DuckDB 2.0.1's row-group pruner trusts column statistics that DELETE leaves stale: after some
DELETE/INSERT cycles on a table with a primary key, ``SELECT ... ORDER BY id LIMIT 1`` returns
no row although the table has rows (reproduced in tests/queryplanner/test_sql.py). Disabling
that one optimizer gives correct answers; drop this once DuckDB fixes it.
"""


@dataclass(frozen=True)
class CompiledSQL:
    sql: str
    params: tuple[Any, ...]


def create_table_sql(schema: Schema, *, version_column: str | None = None) -> list[str]:
    """One ``CREATE TABLE IF NOT EXISTS`` per table, in schema order.

    ``version_column`` adds a ``BIGINT NOT NULL DEFAULT 0`` column of that name (the server
    keeps each row's last-changed version there).
    """
    out = []
    for t in schema.tables:
        cols = [
            f"{ident(c.name)} {SQL_TYPES[c.type]}" + ("" if c.nullable else " NOT NULL")
            for c in t.columns
        ]
        if version_column is not None:
            if t.has_column(version_column):
                raise ValueError(
                    f"The version column {version_column!r} clashes with a column of {t.name!r}."
                )
            cols.append(f"{ident(version_column)} BIGINT NOT NULL DEFAULT 0")
        cols.append(f"PRIMARY KEY ({', '.join(ident(k) for k in t.primary_key)})")
        out.append(f"CREATE TABLE IF NOT EXISTS {ident(t.name)} ({', '.join(cols)})")
    return out


def compile_select(
    query: Query,
    schema: Schema,
    *,
    rules: Rules | None = None,
    columns: Sequence[str] | None = None,
    iso_timestamps: bool = False,
    ordered: bool = True,
) -> CompiledSQL:
    """The root rows of a bound query (or the groups of an aggregate query) as one SELECT.

    Rows have all the table's columns in schema order (or ``columns``, kept in schema order);
    related children are not included (see ``compile_row_sets``). Groups have the groupBy
    columns, then the measures by alias, ordered by the groupBy columns (NULLS LAST).
    ``iso_timestamps``: the rows' timestamps as the wire's ISO text (not for aggregates).
    ``ordered=False``: the rows of a query without a limit in any order (a row set, not an
    answer: DuckDB need not sort, and can stream the first rows before it has read the last).
    """
    table = schema.table(query.table)
    em = Emitter(schema, rules)
    alias = em.alias()
    if query.aggregate is not None:
        frag = _aggregate(em, query, table, alias)
    else:
        frag = select_rows(
            em, query, table, alias, select_columns(table, columns),
            iso_timestamps=iso_timestamps, ordered=ordered,
        )
    return CompiledSQL(frag.sql, frag.params)


def _measure(m: Measure, table: Table, alias: str) -> str:
    arg = "*" if m.column is None else colref(alias, table, m.column)
    return f"{m.fn}({arg}) AS {ident(m.alias)}"


def _aggregate(em: Emitter, query: Query, table: Table, alias: str) -> Frag:
    assert query.aggregate is not None
    groups = [colref(alias, table, g) for g in query.aggregate.group_by]
    head = ", ".join([*groups, *(_measure(m, table, alias) for m in query.aggregate.measures)])
    frag = Frag(f"SELECT {head} FROM {ident(table.name)} AS {alias} WHERE ") + where_sql(
        em, query, table, alias
    )
    if groups:
        frag = frag + f" GROUP BY {', '.join(groups)}"
        frag = frag + f" ORDER BY {', '.join(g + ' ASC NULLS LAST' for g in groups)}"
    return frag
