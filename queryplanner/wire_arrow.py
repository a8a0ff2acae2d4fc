"""A table's rows as Arrow: the columnar form of wire rows (hydration blocks, client batches).

A client that asks for it (``GET /sync?rows=arrow``) receives a new query's hydration rows as
Arrow IPC streams inside pokes (``Poke.arrow``) instead of one JSON object per row: the server
reads them from DuckDB as Arrow and the client writes them into its DuckDB store as Arrow, so
neither side builds a Python object per row (docs/protocol.md, *Columnar hydration*).

The layout: the table's columns in schema order, then ``_v``; integers int64, floats float64,
text and booleans as such, timestamps as Arrow timestamps (microseconds, naive UTC, as stored)
and JSON values as their JSON text. The client's batches of JSON rows (``cache.batch``) have
the same columns with the timestamps as the wire's ISO text (``ROW_TYPES``); DuckDB's CAST
takes either when the client stores them, so both kinds of poke take one path into the store.
A timestamp travels as 8 bytes, neither side formats or parses its text, and the client still
sizes it as its ISO text (19 characters, 26 with a fraction of a second).
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from .protocol import ProtocolError
from .schema import ColumnType, Table

VERSION_COLUMN = "_v"

BLOCK_TYPES: dict[ColumnType, pa.DataType] = {
    ColumnType.INTEGER: pa.int64(),
    ColumnType.FLOAT: pa.float64(),
    ColumnType.TEXT: pa.string(),
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.TIMESTAMP: pa.timestamp("us"),
    ColumnType.JSON: pa.string(),  # JSON text
}
ROW_TYPES = {**BLOCK_TYPES, ColumnType.TIMESTAMP: pa.string()}  # ISO text, as in JSON rows


def arrow_schema(table: Table) -> pa.Schema:
    """The Arrow schema of ``table``'s wire rows (its columns, then ``_v``)."""
    fields = [pa.field(c.name, BLOCK_TYPES[c.type]) for c in table.columns]
    fields.append(pa.field(VERSION_COLUMN, pa.int64(), nullable=False))
    return pa.schema(fields)


def select_wire_columns(table: Table, source: str) -> str:
    """SQL reading ``source`` (a row set selecting the table's columns and ``_v``) in the block
    layout (JSON as its text)."""
    exprs = []
    for c in table.columns:
        ref = f'"$w"."{c.name}"'
        if c.type is ColumnType.JSON:
            ref = f"CAST({ref} AS VARCHAR)"
        exprs.append(f'{ref} AS "{c.name}"')
    exprs.append(f'"$w"."{VERSION_COLUMN}" AS "{VERSION_COLUMN}"')
    return f'SELECT {", ".join(exprs)} FROM ({source}) AS "$w"'


# Buffers compressed with zstd when this pyarrow has it: ~1 KB issue rows shrink 3.4x, which
# the client's stream reading (and base64) pays for per byte; reading the stream decompresses.
_WRITE = pa.ipc.IpcWriteOptions(compression="zstd" if pa.Codec.is_available("zstd") else None)


def to_ipc(table: Table, batches: Iterable[pa.RecordBatch]) -> bytes:
    """Record batches of ``table``'s wire layout as one Arrow IPC stream."""
    schema = arrow_schema(table)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema, options=_WRITE) as writer:
        for batch in batches:
            writer.write_batch(batch if batch.schema.equals(schema) else batch.cast(schema))
    return bytes(sink.getvalue())


def from_ipc(table: Table, data: bytes) -> pa.Table:
    """An Arrow IPC stream of ``table``'s rows; ``ProtocolError`` names what does not fit."""
    where = f"poke.arrow.{table.name}"
    try:
        rows = pa.ipc.open_stream(data).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ProtocolError(where, f"Not an Arrow IPC stream: {exc}") from None
    expected = arrow_schema(table)
    if rows.schema.names != expected.names:
        raise ProtocolError(
            where,
            f"The columns are {rows.schema.names!r:.200}; table {table.name!r} has "
            f"{expected.names!r:.200}.",
        )
    for got, want in zip(rows.schema, expected, strict=True):
        if got.type != want.type:
            raise ProtocolError(
                where, f"Column {got.name!r} is {got.type}; the wire layout has {want.type}."
            )
    if rows.column(VERSION_COLUMN).null_count:
        raise ProtocolError(where, f"A row has no {VERSION_COLUMN!r}.")
    return rows
