"""Columnar hydration: a new subscription's rows read from DuckDB as Arrow and sent as Arrow.

For a client whose stream asked for it (``rows=arrow``), a one-table query's first hydration
goes out as Arrow IPC blocks (``Poke.arrow``) read straight from the step's snapshot, before
the subscription's incremental state is built: no Python object per row on the way to the
client. The engine then builds that state after the step's last poke (``Subscription.defer``),
from the same snapshot, so the client completes while the server still does its bookkeeping.

The rows split as in a streamed hydration (docs/protocol.md, *Hydration*): rows new to the
client that no live change of the step touched go ahead, in pokes carrying nothing else; the
others (held by the client already, or touched by the step) ride in the step's last poke as
JSON rows, so no poke shows the client a state the server never had.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import duckdb
import orjson
import pyarrow as pa

from queryplanner import ColumnType, Schema, Table
from queryplanner.protocol import Poke
from queryplanner.wire_arrow import VERSION_COLUMN, arrow_schema, select_wire_columns, to_ipc

from .subscriptions import RowKey, Subscription, WireRow


@dataclass
class ColumnarRows:
    """A subscription's rows in the wire layout, with their keys and versions."""

    table: Table
    rows: pa.Table
    keys: list[RowKey]
    versions: list[int]


def columnar(sub: Subscription, schema: Schema) -> bool:
    """Whether ``sub``'s hydration can go out as Arrow: one table (no related children, no
    aggregate) without a timestamp in its primary key (keys are compared as read from DuckDB,
    and the wire layout holds timestamps as text)."""
    query = sub.query
    if query.related or query.aggregate is not None or len(sub.row_sets) != 1:
        return False
    t = schema.table(query.table)
    return not any(t.column(k).type is ColumnType.TIMESTAMP for k in t.primary_key)


def read_rows(cur: duckdb.DuckDBPyConnection, sub: Subscription, schema: Schema) -> ColumnarRows:
    """The subscription's rows at the step's snapshot, read by its own compiled SQL (the
    read rules included), as Arrow."""
    (rs,) = sub.row_sets
    table = schema.table(rs.table)
    # ``sql`` (a relation), not ``execute``: DuckDB then hands over its Arrow without a copy.
    # It needs the step's earlier ``execute`` results finished first (they are read already).
    cur.complete()
    arrow = cur.sql(select_wire_columns(table, rs.sql), params=list(rs.params)).to_arrow_table()
    arrow = arrow.cast(arrow_schema(table))
    cols = [arrow.column(k).to_pylist() for k in table.primary_key]
    keys = [(table.name, k) for k in zip(*cols, strict=True)]
    return ColumnarRows(table, arrow, keys, arrow.column(VERSION_COLUMN).to_pylist())


def split(
    rows: ColumnarRows, ahead: Callable[[RowKey], bool]
) -> tuple[pa.Table, list[RowKey], list[int], dict[RowKey, WireRow]]:
    """(the rows that go ahead as Arrow, their keys and versions, the other rows as wire
    rows). ``ahead(key)`` says whether a row may go ahead."""
    mask = [ahead(k) for k in rows.keys]
    keys = [k for k, m in zip(rows.keys, mask, strict=True) if m]
    versions = [v for v, m in zip(rows.versions, mask, strict=True) if m]
    if len(keys) == len(rows.keys):
        return rows.rows, keys, versions, {}
    flags = pa.array(mask, pa.bool_())
    rest = rows.rows.filter(pa.compute.invert(flags))
    rest_keys = [k for k, m in zip(rows.keys, mask, strict=True) if not m]
    return (
        rows.rows.filter(flags),
        keys,
        versions,
        dict(zip(rest_keys, wire_rows(rows.table, rest), strict=True)),
    )


def wire_rows(table: Table, arrow: pa.Table) -> list[WireRow]:
    """Arrow rows of the wire layout as wire rows (JSON values parsed from their text)."""
    out: list[WireRow] = arrow.to_pylist()
    json_cols = [c.name for c in table.columns if c.type is ColumnType.JSON]
    for row in out:
        for name in json_cols:
            text = row[name]
            if text is not None:
                row[name] = orjson.loads(text)
    return out


def arrow_pokes(version: int, table: Table, arrow: pa.Table, max_bytes: int) -> Iterator[Poke]:
    """``arrow`` in pokes of about ``max_bytes`` of Arrow data each (whole rows)."""
    n = arrow.num_rows
    if not n:
        return
    per_poke = max(1, int(n * max_bytes / max(1, arrow.nbytes)))
    for start in range(0, n, per_poke):
        part = arrow.slice(start, per_poke)
        yield Poke(version, arrow={table.name: (to_ipc(table, part.to_batches()),)})

