"""Columnar hydration: a subscription's rows read from DuckDB as Arrow and sent as Arrow.

For a client whose stream asked for it (``rows=arrow``), a one-table query's hydration goes
out as Arrow IPC blocks (``Poke.arrow``) read straight from the step's snapshot: no Python
object per row on the way to the client. For a new subscription this happens before its
incremental state is built; the engine builds that state after the step's last poke
(``Subscription.defer``), from the same snapshot, so the client completes while the server
still does its bookkeeping.

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
import pyarrow.compute as pc

from queryplanner import ColumnType, Schema, Table, compile_select
from queryplanner.protocol import Poke
from queryplanner.wire_arrow import VERSION_COLUMN, arrow_schema, select_wire_columns, to_ipc

from .subscriptions import RowKey, Subscription, WireRow, internal_schema

READ_ROWS = 2048  # rows per Arrow batch read from DuckDB


def columnar(sub: Subscription, schema: Schema) -> bool:
    """Whether ``sub``'s hydration can go out as Arrow: one table (no related children, no
    aggregate) without a timestamp in its primary key (a client keys such rows by the ISO
    text of their JSON form)."""
    query = sub.query
    if query.related or query.aggregate is not None:
        return False
    t = schema.table(query.table)
    return not any(t.column(k).type is ColumnType.TIMESTAMP for k in t.primary_key)


@dataclass
class SentAhead:
    """One poke of Arrow rows, with the keys and versions of its rows."""

    poke: Poke
    keys: list[RowKey]
    versions: list[int]


class ArrowHydration:
    """Reads a subscription's rows at the step's snapshot by its own compiled SQL (the read
    rules included) in Arrow batches, and turns the rows that may go ahead into pokes of about
    ``max_bytes`` each as they are read: the first poke leaves before the last row is read.
    ``later`` collects the other rows, as wire rows."""

    def __init__(
        self, sub: Subscription, schema: Schema, ahead: Callable[[RowKey], bool], max_bytes: int
    ) -> None:
        self.table = schema.table(sub.query.table)
        # The query's root rows under its read rules, as the row set selects them, but with
        # no DISTINCT and no ORDER BY without a limit: DuckDB streams the first rows at once.
        self.select = compile_select(
            sub.query, internal_schema(schema), rules=sub.rules, ordered=False
        )
        self.ahead = ahead
        self.max_bytes = max_bytes
        self.later: dict[RowKey, WireRow] = {}

    def pokes(self, cur: duckdb.DuckDBPyConnection, version: int) -> Iterator[SentAhead]:
        table, select = self.table, self.select
        schema = arrow_schema(table)
        # ``sql`` (a relation), not ``execute``: DuckDB then hands over its Arrow without a
        # copy. It needs the step's earlier ``execute`` results finished (they are read).
        cur.complete()
        rel = cur.sql(select_wire_columns(table, select.sql), params=list(select.params))
        parts: list[pa.RecordBatch] = []
        keys: list[RowKey] = []
        versions: list[int] = []
        size = 0
        for batch in rel.to_arrow_reader(READ_ROWS):
            batch = batch.cast(schema)
            cols = [batch.column(k).to_pylist() for k in table.primary_key]
            bkeys = [(table.name, k) for k in zip(*cols, strict=True)]
            bvers = batch.column(VERSION_COLUMN).to_pylist()
            mask = [self.ahead(k) for k in bkeys]
            if not all(mask):
                flags = pa.array(mask, pa.bool_())
                rest = batch.filter(pc.invert(flags))
                rest_keys = [k for k, m in zip(bkeys, mask, strict=True) if not m]
                self.later.update(zip(rest_keys, wire_rows(table, rest), strict=True))
                batch = batch.filter(flags)
                bkeys = [k for k, m in zip(bkeys, mask, strict=True) if m]
                bvers = [v for v, m in zip(bvers, mask, strict=True) if m]
            if not bkeys:
                continue
            parts.append(batch)
            keys += bkeys
            versions += bvers
            size += batch.nbytes
            if size >= self.max_bytes:
                yield SentAhead(self._poke(version, parts), keys, versions)
                parts, keys, versions, size = [], [], [], 0
        if keys:
            yield SentAhead(self._poke(version, parts), keys, versions)

    def _poke(self, version: int, parts: list[pa.RecordBatch]) -> Poke:
        return Poke(version, arrow={self.table.name: (to_ipc(self.table, parts),)})


def wire_rows(table: Table, arrow: pa.Table | pa.RecordBatch) -> list[WireRow]:
    """Rows of the block layout as wire rows (timestamps as ISO text, JSON values parsed)."""
    out: list[WireRow] = arrow.to_pylist()
    stamps = [c.name for c in table.columns if c.type is ColumnType.TIMESTAMP]
    json_cols = [c.name for c in table.columns if c.type is ColumnType.JSON]
    for row in out:
        for name in stamps:
            value = row[name]
            if value is not None:
                row[name] = value.isoformat()
        for name in json_cols:
            text = row[name]
            if text is not None:
                row[name] = orjson.loads(text)
    return out

