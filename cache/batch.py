"""Rows of one table as an Arrow batch: built once per poke, then written, sized and keyed.

A poke's rows arrive as dicts (wire form) or, for a columnar hydration, already as Arrow in the
same layout (``queryplanner.wire_arrow``: timestamps as ISO text, JSON values as JSON text;
DuckDB casts both on insert). Either way they become one ``pyarrow.Table`` per table, and
everything the client needs besides the write is read from that batch with vectorized kernels
instead of a Python loop per value:

- ``sizes``: each row's byte estimate, exactly ``queryplanner.wire.row_bytes`` of the stored
  row in wire form (every column plus ``_v``): ``64 + Σ (8 + size(value))`` with 4 for null and
  booleans, 8 for numbers, the UTF-8 length of text and ISO timestamps. JSON values are sized
  in Python with ``value_bytes`` (a JSON string's size is its text without the quotes), parsed
  from their text when the rows came as Arrow.
- ``keys``: the primary keys, as tuples of wire values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from queryplanner import ColumnType, Table
from queryplanner.wire import ROW_OVERHEAD_BYTES, VALUE_OVERHEAD_BYTES, value_bytes
from queryplanner.wire_arrow import ROW_TYPES, VERSION_COLUMN

from .errors import StoreError


def key_table(table: Table, keys: Sequence[Sequence[Any]]) -> pa.Table:
    """Primary keys as an Arrow table (timestamps as ISO text, as in ``RowBatch``)."""
    arrays = {}
    for i, name in enumerate(table.primary_key):
        values = [k[i] for k in keys]
        if table.column(name).type is ColumnType.TIMESTAMP:
            values = [v.isoformat() if hasattr(v, "isoformat") else v for v in values]
        arrays[name] = pa.array(values, type=ROW_TYPES[table.column(name).type])
    return pa.table(arrays)


class RowBatch:
    """One table's rows as Arrow (plus the JSON columns' values, for their sizes)."""

    @classmethod
    def from_arrow(cls, table: Table, arrow: pa.Table) -> RowBatch:
        """Rows already in the wire layout (checked by ``wire_arrow.from_ipc``)."""
        batch = cls.__new__(cls)
        batch.table, batch.rows, batch.arrow = table, None, arrow
        return batch

    def __init__(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        self.table = table
        self.rows: Sequence[Mapping[str, Any]] | None = rows
        arrays = {}
        try:
            for c in table.columns:
                name = c.name
                values = [r.get(name) for r in rows]
                if c.type is ColumnType.JSON:
                    values = [None if v is None else orjson.dumps(v).decode() for v in values]
                elif c.type is ColumnType.TIMESTAMP:
                    values = [
                        v if v is None or isinstance(v, str) else v.isoformat() for v in values
                    ]
                arrays[name] = pa.array(values, type=ROW_TYPES[c.type])
            arrays[VERSION_COLUMN] = pa.array([r.get(VERSION_COLUMN) for r in rows], pa.int64())
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise StoreError(
                f"A row for table {table.name!r} does not fit its columns: {exc}"
            ) from None
        self.arrow = pa.table(arrays)

    def __len__(self) -> int:
        return int(self.arrow.num_rows)

    def keys(self) -> list[tuple[Any, ...]]:
        cols = [self.arrow.column(k).to_pylist() for k in self.table.primary_key]
        return list(zip(*cols, strict=True))

    def sizes(self) -> list[int]:
        n = self.arrow.num_rows
        fixed = ROW_OVERHEAD_BYTES + VALUE_OVERHEAD_BYTES * self.arrow.num_columns
        total = pa.array([fixed] * n, pa.int64()) if n else pa.array([], pa.int64())
        json_cols = []
        for c in [*self.table.columns, None]:
            name = VERSION_COLUMN if c is None else c.name
            kind = ColumnType.INTEGER if c is None else c.type
            if kind is ColumnType.JSON:
                json_cols.append(name)
                continue
            col = self.arrow.column(name)
            if pa.types.is_timestamp(col.type):  # a block's: sized as its ISO text
                iso = pc.if_else(pc.equal(pc.subsecond(col), 0), 19, 26)
                size = pc.fill_null(iso, 4)
            elif kind in (ColumnType.TEXT, ColumnType.TIMESTAMP):
                size = pc.fill_null(pc.binary_length(col), 4)
            else:
                width = 4 if kind is ColumnType.BOOLEAN else 8
                size = pc.if_else(pc.is_null(col), 4, width)
            total = pc.add(total, pc.cast(size, pa.int64()))
        out: list[int] = total.to_pylist()
        for name in json_cols:
            if self.rows is None:
                texts = self.arrow.column(name).to_pylist()
                values = [None if t is None else orjson.loads(t) for t in texts]
            else:
                values = [r.get(name) for r in self.rows]
            for i, v in enumerate(values):
                out[i] += value_bytes(v)
        return out
