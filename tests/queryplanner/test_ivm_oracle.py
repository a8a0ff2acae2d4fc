"""The IVM engine against DuckDB: after every batch, each maintained result equals a re-run.

A Hypothesis state machine keeps one ``MemoryStore``, one DuckDB database with the same rows and
one ``Engine`` with random subscriptions of every supported shape (filters with NULLs, LIKE,
IN, NOT, EXISTS/NOT EXISTS; orders with ties and NULLs; limits; start cursors; related children
of all three kinds with per-parent limits; grouped aggregates). Each step commits a random batch
(inserts, updates that move rows across predicates and window bounds, deletes) to both, pushes
it through the engine and checks, for every subscription:

- ``engine.rows`` equals DuckDB's answer (``compile_select`` / ``compile_row_sets`` +
  ``nest_rows``), row for row and in order (aggregates with a float tolerance);
- the occurrences a consumer holds after applying every ``ResultChange`` so far equal the
  engine's own, so the change stream alone reproduces the result.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import duckdb
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from queryplanner import Query, Schema, parse_query
from queryplanner.ivm import Engine, MemoryStore, ResultChange, RowChange
from queryplanner.sql import (
    DUCKDB_SETUP,
    compile_row_sets,
    compile_select,
    create_table_sql,
    nest_rows,
)

SCHEMA = Schema.from_dict({"tables": {
    "item": {
        "columns": {"id": {"type": "integer", "nullable": False}, "grp": "integer",
                    "score": "float", "name": "text", "flag": "boolean", "ts": "timestamp",
                    "owner_id": "integer"},
        "primaryKey": ["id"],
        "relationships": {
            "notes": {"kind": "one_to_many", "target": "note", "sourceColumns": ["id"],
                      "targetColumns": ["item_id"]},
            "owner": {"kind": "many_to_one", "target": "person", "sourceColumns": ["owner_id"],
                      "targetColumns": ["id"]},
            "tags": {"kind": "many_to_many", "target": "tag", "sourceColumns": ["id"],
                     "targetColumns": ["id"],
                     "through": {"table": "item_tag", "sourceColumns": ["item_id"],
                                 "targetColumns": ["tag_id"]}},
        },
    },
    "note": {
        "columns": {"id": {"type": "integer", "nullable": False}, "item_id": "integer",
                    "score": "integer", "body": "text"},
        "primaryKey": ["id"],
        "relationships": {
            "item": {"kind": "many_to_one", "target": "item", "sourceColumns": ["item_id"],
                     "targetColumns": ["id"]},
        },
    },
    "person": {"columns": {"id": {"type": "integer", "nullable": False}, "name": "text"},
               "primaryKey": ["id"]},
    "tag": {"columns": {"id": {"type": "integer", "nullable": False}, "name": "text"},
            "primaryKey": ["id"]},
    "item_tag": {"columns": {"item_id": {"type": "integer", "nullable": False},
                             "tag_id": {"type": "integer", "nullable": False}},
                 "primaryKey": ["item_id", "tag_id"]},
}})

T0 = dt.datetime(2024, 5, 1, 12, 0)
TIMES = [T0, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(days=2, microseconds=5)]
NAMES = ["", "a", "B", "ab", "b%", "é"]
VALUES: dict[tuple[str, str], list[Any]] = {
    ("item", "grp"): [0, 1, 2],
    ("item", "score"): [-1.5, 0.0, 2.0, 3.25],
    ("item", "name"): NAMES,
    ("item", "flag"): [True, False],
    ("item", "ts"): TIMES,
    ("item", "owner_id"): [1, 2, 3],
    ("note", "item_id"): [1, 2, 3, 4, 5, 6],
    ("note", "score"): [-2, 0, 1, 7],
    ("note", "body"): NAMES,
    ("person", "name"): NAMES,
    ("tag", "name"): NAMES,
}
PK_RANGE = {"item": 6, "note": 8, "person": 3, "tag": 3}


def _wire(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.datetime) else v


# -- strategies ------------------------------------------------------------------------------

def _columns(table: str) -> list[str]:
    return [c for (t, c) in VALUES if t == table]


@st.composite
def leaf(draw: Any, table: str) -> dict[str, Any]:
    col = draw(st.sampled_from(_columns(table)))
    vals = VALUES[(table, col)]
    kind = draw(st.sampled_from(["cmp", "cmp", "in", "null", "like"]))
    if kind == "null":
        return {"column": col, "op": draw(st.sampled_from(["is null", "is not null"]))}
    if kind == "in":
        picked = draw(st.lists(st.sampled_from(vals), min_size=1, max_size=3))
        return {"column": col, "op": draw(st.sampled_from(["in", "not in"])),
                "value": [_wire(v) for v in picked]}
    if kind == "like" and isinstance(vals[0], str):
        return {"column": col, "op": draw(st.sampled_from(["like", "ilike", "not like"])),
                "value": draw(st.sampled_from(["a%", "%b%", "_", "%", "b\\%"]))}
    ops = ["=", "!=", "<", "<=", ">", ">="] if not isinstance(vals[0], bool) else ["=", "!="]
    return {"column": col, "op": draw(st.sampled_from(ops)),
            "value": _wire(draw(st.sampled_from(vals)))}


EXISTS = {"item": [("notes", "note"), ("tags", "tag"), ("owner", "person")],
          "note": [("item", "item")]}


@st.composite
def condition(draw: Any, table: str, depth: int = 0) -> dict[str, Any]:
    kinds = ["leaf", "leaf", "and", "or", "not"] if depth < 2 else ["leaf"]
    if table in EXISTS and depth < 2:
        kinds += ["exists", "exists"]
    kind = draw(st.sampled_from(kinds))
    if kind == "leaf":
        return draw(leaf(table))
    if kind == "not":
        return {"not": draw(condition(table, depth + 1))}
    if kind == "exists":
        rel, target = draw(st.sampled_from(EXISTS[table]))
        doc: dict[str, Any] = {draw(st.sampled_from(["exists", "notExists"])): rel}
        if draw(st.booleans()):
            doc["where"] = draw(condition(target, depth + 1))
        return doc
    terms = draw(st.lists(condition(table, depth + 1), min_size=2, max_size=3))
    return {kind: terms}


@st.composite
def order_and_window(draw: Any, table: str) -> dict[str, Any]:
    cols = draw(st.lists(st.sampled_from(_columns(table)), max_size=2, unique=True))
    doc: dict[str, Any] = {"orderBy": [[c, draw(st.sampled_from(["asc", "desc"]))] for c in cols]}
    if draw(st.booleans()):
        doc["limit"] = draw(st.integers(0, 4))
    if draw(st.integers(0, 4)) == 0:
        row: dict[str, Any] = {c: _wire(draw(st.sampled_from([None, *VALUES[(table, c)]])))
                               for c in cols}
        row["id"] = draw(st.integers(0, PK_RANGE[table] + 1))
        doc["start"] = {"row": row, "inclusive": draw(st.booleans())}
    return doc


@st.composite
def row_query(draw: Any) -> dict[str, Any]:
    table = draw(st.sampled_from(["item", "item", "note"]))
    doc: dict[str, Any] = {"table": table, **draw(order_and_window(table))}
    if draw(st.booleans()):
        doc["where"] = draw(condition(table))
    if table == "item":
        related: dict[str, Any] = {}
        for rel, target in EXISTS["item"]:
            if draw(st.booleans()):
                child: dict[str, Any] = draw(order_and_window(target)) if target != "person" else {}
                child.pop("start", None)
                if draw(st.booleans()):
                    child["where"] = draw(leaf(target))
                related[rel] = child
        if related:
            doc["related"] = related
    return doc


@st.composite
def aggregate_query(draw: Any) -> dict[str, Any]:
    table = draw(st.sampled_from(["item", "note"]))
    groups = draw(st.lists(st.sampled_from(["grp", "flag"] if table == "item" else ["item_id"]),
                           max_size=2, unique=True))
    num = "score"
    measures = {"n": {"fn": "count"}}
    for alias, fn, col in [("c", "count", num), ("s", "sum", num), ("a", "avg", num),
                           ("lo", "min", num), ("hi", "max", "ts" if table == "item" else "body")]:
        if draw(st.booleans()):
            measures[alias] = {"fn": fn, "column": col}
    doc: dict[str, Any] = {"table": table, "aggregate": {"groupBy": groups, "measures": measures}}
    if draw(st.booleans()):
        doc["where"] = draw(condition(table))
    return doc


QUERIES = st.one_of(row_query(), row_query(), aggregate_query())


@st.composite
def row_image(draw: Any, table: str, pk: Any) -> dict[str, Any]:
    if table == "item_tag":
        return {"item_id": pk[0], "tag_id": pk[1]}
    row = {"id": pk}
    for col in _columns(table):
        row[col] = draw(st.sampled_from([None, *VALUES[(table, col)]]))
    return row


@st.composite
def write(draw: Any) -> tuple[str, Any, dict[str, Any] | None, bool]:
    table = draw(st.sampled_from(["item", "item", "note", "note", "item_tag", "person", "tag"]))
    if table == "item_tag":
        pk: Any = (draw(st.integers(1, 6)), draw(st.integers(1, 3)))
    else:
        pk = draw(st.integers(1, PK_RANGE[table]))
    image = draw(row_image(table, pk))
    return table, pk, image, draw(st.integers(0, 3)) == 0


# -- the oracle ------------------------------------------------------------------------------

Con = duckdb.DuckDBPyConnection


def _fetch(con: Con, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def oracle(con: Con, query: Query) -> list[dict[str, Any]]:
    if query.aggregate is not None or not query.related:
        c = compile_select(query, SCHEMA)
        return _fetch(con, c.sql, c.params)
    sets = compile_row_sets(query, SCHEMA)
    rows_by_path = {rs.key: _fetch(con, rs.sql, rs.params) for rs in sets}
    return nest_rows(query, SCHEMA, rows_by_path)


def same(a: Any, b: Any) -> bool:
    numbers = (float, int)
    if isinstance(a, numbers) and isinstance(b, numbers) and float in (type(a), type(b)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return (type(a) is type(b) and a == b) or (isinstance(a, int) and isinstance(b, int) and a == b)


def apply_change(held: dict[Any, Any], change: ResultChange) -> None:
    if change.reset:
        held.clear()
    for r in change.removed:
        del held[(r.at, r.table, r.key)]
    for r in change.added:
        assert (r.at, r.table, r.key) not in held
        held[(r.at, r.table, r.key)] = r.row
    for r in change.edited:
        assert (r.at, r.table, r.key) in held
        held[(r.at, r.table, r.key)] = r.row


class IvmMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.con = duckdb.connect()
        for sql in [*DUCKDB_SETUP, *create_table_sql(SCHEMA)]:
            self.con.execute(sql)
        self.store = MemoryStore(SCHEMA)
        self.engine: Engine
        self.queries: dict[str, Query] = {}
        self.held: dict[str, dict[Any, Any]] = {}
        self.n = 0

    def teardown(self) -> None:
        self.con.close()

    @initialize(rows=st.lists(write(), min_size=8, max_size=30), queries=st.lists(QUERIES,
                min_size=3, max_size=6), rehydrate_after=st.sampled_from([4, 10_000]))
    def start(self, rows: list[Any], queries: list[dict[str, Any]], rehydrate_after: int) -> None:
        self._commit(rows)
        self.engine = Engine(SCHEMA, self.store, rehydrate_after=rehydrate_after)
        for doc in queries:
            self._subscribe(doc)

    def _subscribe(self, doc: dict[str, Any]) -> None:
        self.n += 1
        sub = f"s{self.n}"
        query = parse_query(doc, SCHEMA)
        self.queries[sub] = query
        self.held[sub] = {}
        apply_change(self.held[sub], self.engine.subscribe(sub, query))

    def _commit(self, writes: list[Any]) -> list[RowChange]:
        batch: list[RowChange] = []
        for table, pk, image, delete in writes:
            key = pk if isinstance(pk, tuple) else (pk,)
            old = self.store.get(table, key)
            new = None if delete else image
            if old is None and new is None:
                continue
            change = RowChange(table, old, new)
            self.store.apply([change])
            batch.append(change)
            cols = SCHEMA.table(table).primary_key
            where = " AND ".join(f'"{c}" = ?' for c in cols)
            self.con.execute(f'DELETE FROM "{table}" WHERE {where}', list(key))
            if new is not None:
                names = ", ".join(f'"{c}"' for c in new)
                marks = ", ".join("?" for _ in new)
                self.con.execute(f'INSERT INTO "{table}" ({names}) VALUES ({marks})',
                                 list(new.values()))
        return batch

    @rule(writes=st.lists(write(), min_size=1, max_size=6))
    def commit(self, writes: list[Any]) -> None:
        batch = self._commit(writes)
        changes = self.engine.apply(batch)
        for sub, change in changes.items():
            assert change, sub
            apply_change(self.held[sub], change)

    @rule(writes=st.lists(write(), min_size=1, max_size=2))
    def commit_small(self, writes: list[Any]) -> None:
        self.commit(writes)

    @rule(doc=QUERIES)
    def subscribe(self, doc: dict[str, Any]) -> None:
        self._subscribe(doc)

    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        if self.queries:
            sub = data.draw(st.sampled_from(sorted(self.queries)))
            self.engine.unsubscribe(sub)
            del self.queries[sub], self.held[sub]

    @invariant()
    def matches_duckdb(self) -> None:
        for sub, query in self.queries.items():
            want = oracle(self.con, query)
            got = self.engine.rows(sub)
            assert same(got, want), (query.to_json(), got, want)
            mine = {(o.at, o.table, o.key): o.row for o in self.engine.occurrences(sub)}
            assert mine.keys() == self.held[sub].keys(), query.to_json()
            assert all(same(dict(self.held[sub][k]), dict(v)) for k, v in mine.items())


IvmMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
TestIvmAgainstDuckDB = IvmMachine.TestCase
