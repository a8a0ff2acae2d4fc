"""The vectorized row sizes of a batch are exactly ``queryplanner.wire.row_bytes``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cache.batch import RowBatch
from queryplanner import ColumnType, Schema
from queryplanner.wire import row_bytes
from tests.conftest import DEMO_SCHEMA_PATH

SCHEMA = Schema.load(DEMO_SCHEMA_PATH)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def _value(kind: ColumnType, nullable: bool) -> st.SearchStrategy[Any]:
    base: st.SearchStrategy[Any] = {
        ColumnType.INTEGER: st.integers(-(2**63), 2**63 - 1),
        ColumnType.FLOAT: st.floats(allow_nan=False, allow_infinity=False),
        ColumnType.TEXT: TEXT,
        ColumnType.BOOLEAN: st.booleans(),
        ColumnType.TIMESTAMP: st.sampled_from(
            ["2026-01-01T00:00:00", "2026-11-30T12:00:00.123456"]
        ),
        ColumnType.JSON: st.one_of(TEXT, st.integers(), st.lists(st.integers(), max_size=3)),
    }[kind]
    return st.one_of(st.none(), base) if nullable else base


@st.composite
def rows(draw: st.DrawFn, table: str) -> list[dict[str, Any]]:
    t = SCHEMA.table(table)
    n = draw(st.integers(0, 5))
    out = []
    for _ in range(n):
        row = {c.name: draw(_value(c.type, c.nullable)) for c in t.columns}
        row["_v"] = draw(st.integers(0, 10**6))
        out.append(row)
    return out


@settings(deadline=None, max_examples=60)
@given(data=st.data(), table=st.sampled_from([t.name for t in SCHEMA.tables]))
def test_batch_sizes_equal_row_bytes(data: st.DataObject, table: str) -> None:
    batch_rows = data.draw(rows(table))
    got = RowBatch(SCHEMA.table(table), batch_rows).sizes()
    assert got == [row_bytes(r) for r in batch_rows]


def test_json_values_are_sized_as_values() -> None:
    """A JSON string counts its text without quotes, like ``value_bytes`` (not its JSON text)."""
    schema = Schema.from_dict(
        {
            "version": 1,
            "tables": {
                "doc": {
                    "columns": {"id": {"type": "integer", "nullable": False}, "body": "json"},
                    "primaryKey": ["id"],
                }
            },
        }
    )
    rows_ = [
        {"id": 1, "body": "héllo", "_v": 1},
        {"id": 2, "body": {"a": [1, 2]}, "_v": 1},
        {"id": 3, "body": None, "_v": 1},
    ]
    assert RowBatch(schema.table("doc"), rows_).sizes() == [row_bytes(r) for r in rows_]


def test_rows_with_a_timestamp_primary_key_are_put_and_deleted() -> None:
    """Regression: deleting by a timestamp key built an Arrow text column from datetimes."""
    from cache.budget import Budget
    from cache.local import LocalState
    from cache.store import LocalStore
    from queryplanner import bind, table
    from queryplanner.protocol import Poke

    schema = Schema.from_dict(
        {
            "version": 1,
            "tables": {
                "event": {
                    "columns": {"at": {"type": "timestamp", "nullable": False}, "name": "text"},
                    "primaryKey": ["at"],
                }
            },
        }
    )
    local = LocalState(schema, LocalStore(schema), Budget(10**6))
    q = bind(table("event").build(), schema)
    local.add_desired(q, q.id, pinned=True, ttl=None)
    put = [{"at": f"2026-01-01T00:00:0{i}", "name": f"e{i}", "_v": 1} for i in range(3)]
    local.apply_poke(Poke(1, {"event": put}, {}, {q.id: 1}), "1.1.t")
    assert local.store.count("event") == 3 and len(local.budget.members(q.id)) == 3
    local.apply_poke(Poke(2, {}, {"event": [["2026-01-01T00:00:01"]]}, {}), "2.1.t")
    assert [r["name"] for r in local.run(q)] == ["e0", "e2"]
    assert len(local.budget.members(q.id)) == 2 and local.budget.unreferenced() == []


ALL_TYPES = Schema.from_dict(
    {
        "version": 1,
        "tables": {
            "thing": {
                "columns": {
                    "id": {"type": "integer", "nullable": False},
                    "name": "text",
                    "score": "float",
                    "flag": "boolean",
                    "at": "timestamp",
                    "doc": "json",
                },
                "primaryKey": ["id"],
            }
        },
    }
)
MOMENTS = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1))


@settings(deadline=None, max_examples=60)
@given(
    names=st.lists(st.one_of(st.none(), TEXT), min_size=1, max_size=8),
    data=st.data(),
)
def test_server_arrow_blocks_equal_the_clients_batch_of_the_json_rows(
    names: list[str | None], data: st.DataObject
) -> None:
    """The server's Arrow (DuckDB through ``select_wire_columns``) is the client's batch of the
    same rows in JSON form: same values, same sizes, same wire rows back (DuckDB the oracle)."""
    import duckdb

    from queryplanner.sql import create_table_sql
    from queryplanner.wire_arrow import arrow_schema, from_ipc, select_wire_columns, to_ipc
    from server.columnar import wire_rows

    t = ALL_TYPES.table("thing")
    json_rows = []
    for i, name in enumerate(names):
        at = data.draw(st.one_of(st.none(), MOMENTS))
        json_rows.append({
            "id": i, "name": name,
            "score": data.draw(st.one_of(st.none(), st.floats(allow_nan=False,
                                                                allow_infinity=False))),
            "flag": data.draw(st.one_of(st.none(), st.booleans())),
            "at": None if at is None else at.isoformat(),
            "doc": data.draw(st.one_of(st.none(), TEXT, st.integers(-(2**53), 2**53),
                                       st.lists(st.integers(0, 9), max_size=3))),
            "_v": data.draw(st.integers(0, 10**9)),
        })
    client = RowBatch(t, json_rows)
    con = duckdb.connect()
    for sql in create_table_sql(ALL_TYPES, version_column="_v"):
        con.execute(sql)
    con.register("b", client.arrow)
    con.execute('INSERT INTO thing SELECT id, name, score, flag, CAST("at" AS TIMESTAMP), '
                'CAST(doc AS JSON), "_v" FROM b')
    served = con.sql(select_wire_columns(t, "SELECT * FROM thing")).to_arrow_table()
    block = from_ipc(t, to_ipc(t, served.cast(arrow_schema(t)).to_batches()))
    block = block.sort_by("id")
    assert wire_rows(t, block) == json_rows
    assert RowBatch.from_arrow(t, block).sizes() == client.sizes() == [
        row_bytes(r) for r in json_rows
    ]
