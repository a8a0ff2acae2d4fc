"""The database as the batch being decided has left it: what EXISTS in a write rule reads.

A write rule is checked on the writer thread while a batch is decided, before any of its
statements run. Its EXISTS follows relationships from the old or new row; the rows it reaches
must be the ones the batch has produced so far, so a batch that inserts a project and then an
issue in it, or deletes a row and then relies on its absence, is judged on that state. Reads go
to DuckDB in the writer's transaction (the committed state), and the rows the batch has written
or deleted so far (``layers``, later ones win) replace what DuckDB returns for their keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import duckdb
import orjson

from queryplanner import ColumnType, Schema, Table
from queryplanner.ivm import related_rows
from queryplanner.predicate import Row, row_key
from queryplanner.schema import Relationship
from queryplanner.sql_expr import ident

from .mutations import VERSION_COLUMN, RowKey

Layer = Mapping[RowKey, Row | None]


class BatchRows:
    """``RelatedRows`` (for compiled EXISTS) over DuckDB plus the batch's own changes."""

    def __init__(self, cur: duckdb.DuckDBPyConnection, schema: Schema, layers: Sequence[Layer]):
        self.cur = cur
        self.schema = schema
        self.layers = layers

    def related_rows(self, relationship: Relationship, row: Row) -> list[Row]:
        return related_rows(self, relationship, row)

    def lookup(
        self, table: str, columns: tuple[str, ...], values: tuple[Any, ...]
    ) -> list[Row]:
        if any(v is None for v in values):
            return []  # SQL equality: NULL links to nothing
        t = self.schema.table(table)
        names = [*t.column_names, VERSION_COLUMN]
        sql = (
            f"SELECT {', '.join(ident(n) for n in names)} FROM {ident(table)} WHERE "
            + " AND ".join(f"{ident(c)} = ?" for c in columns)
        )
        found: dict[tuple[Any, ...], Row] = {}
        for rec in self.cur.execute(sql, list(values)).fetchall():
            found_row = dict(zip(names, rec, strict=True))
            parse_json_columns(t, found_row)
            found[row_key(t.primary_key, found_row)] = found_row
        for layer in self.layers:
            for (tname, key), written in layer.items():
                if tname != table:
                    continue
                if written is not None and all(
                    written.get(c) == v for c, v in zip(columns, values, strict=True)
                ):
                    found[key] = written
                else:
                    found.pop(key, None)
        return list(found.values())


def parse_json_columns(table: Table, row: dict[str, Any]) -> None:
    """DuckDB returns json columns as their text; rows carry the values."""
    for c in table.columns:
        if c.type is ColumnType.JSON and isinstance(row.get(c.name), str):
            row[c.name] = orjson.loads(row[c.name])
