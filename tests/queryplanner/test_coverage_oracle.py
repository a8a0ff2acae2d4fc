"""Coverage is sound, with DuckDB as the oracle.

Hypothesis draws a small table (NULLs, ties), complete queries and a query q, many of them
derived from one another so that coverage is often true. Every complete query's whole result
(root rows and related children, as hydration sends them) is loaded into a second DuckDB
database. Whenever ``covers`` says yes, q run there must give exactly q's result on the full
database: the same root rows in the same order, the same children, the same aggregates.
The ``CoverageIndex`` must give the same answer as the full scan every time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from queryplanner import (
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
    Schema,
    Start,
    bind,
)
from queryplanner.coverage import CompleteQuery, covers
from queryplanner.coverage_index import CoverageIndex
from queryplanner.coverage_rows import RowsInMemory
from queryplanner.predicate import Row
from queryplanner.schema import Relationship
from queryplanner.sql import compile_row_sets, compile_select, create_table_sql

SCHEMA = Schema.from_dict({"tables": {
    "item": {
        "columns": {"id": {"type": "integer", "nullable": False}, "a": "integer",
                    "b": {"type": "integer", "nullable": False}, "s": "text", "f": "float"},
        "relationships": {"kids": {"kind": "one_to_many", "target": "kid",
                                   "sourceColumns": "id", "targetColumns": "item_id"}},
    },
    "kid": {"columns": {"id": {"type": "integer", "nullable": False},
                        "item_id": {"type": "integer", "nullable": False}, "v": "integer"}},
}})

A_VALUES = st.integers(-1, 3)
S_VALUES = st.sampled_from(["", "a", "ab", "abc", "b", "ba", "B", "é"])
F_VALUES = st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.5])


ITEM = st.fixed_dictionaries({"a": st.none() | A_VALUES, "b": st.integers(0, 3),
                              "s": st.none() | S_VALUES, "f": st.none() | F_VALUES})


@st.composite
def databases(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    items = [{"id": i, **r} for i, r in enumerate(draw(st.lists(ITEM, max_size=14)), 1)]
    kid = st.tuples(st.integers(1, max(len(items), 1)), st.none() | A_VALUES)
    kids = [{"id": k, "item_id": i, "v": v}
            for k, (i, v) in enumerate(draw(st.lists(kid, max_size=12)), 1)]
    return {"item": items, "kid": kids}


def leaf() -> st.SearchStrategy[Condition]:
    ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
    return st.one_of(
        st.builds(Compare, st.just("a"), ops, A_VALUES),
        st.builds(Compare, st.just("b"), ops, st.integers(0, 3)),
        st.builds(Compare, st.just("s"), ops, S_VALUES),
        st.builds(Compare, st.just("f"), ops, F_VALUES),
        st.builds(InList, st.just("a"), st.lists(A_VALUES, min_size=1, max_size=3).map(tuple),
                  st.booleans()),
        st.builds(InList, st.just("b"), st.lists(st.integers(0, 3), min_size=1,
                                                 max_size=3).map(tuple), st.booleans()),
        st.builds(IsNull, st.sampled_from(["a", "s", "f"]), st.booleans()),
        st.builds(Like, st.just("s"), st.sampled_from(["a%", "ab%", "%b", "a", "_b", "%"]),
                  st.booleans(), st.booleans()),
    )


def conditions(depth: int = 2) -> st.SearchStrategy[Condition]:
    if depth == 0:
        return LEAF
    sub = conditions(depth - 1)
    terms = st.lists(sub, min_size=2, max_size=3).map(tuple)
    kid_where = st.none() | st.builds(Compare, st.just("v"), st.sampled_from(["=", ">"]),
                                      A_VALUES)
    exists = st.builds(Exists, st.just("kids"), kid_where, st.booleans())
    return st.one_of(LEAF, LEAF, terms.map(And), terms.map(Or), sub.map(Not), exists)


LEAF = leaf()
CONDITIONS = conditions()


ORDERS = [(), (OrderBy("a"),), (OrderBy("b", True),), (OrderBy("s"), OrderBy("a", True))]


@st.composite
def kid_queries(draw: st.DrawFn) -> Query:
    where = draw(st.none() | st.builds(Compare, st.just("v"), st.sampled_from(["<", ">="]),
                                       A_VALUES))
    order = draw(st.sampled_from([(), (OrderBy("v"),)]))
    return Query("kid", where, order, draw(st.none() | st.integers(1, 3)))


@st.composite
def row_queries(draw: st.DrawFn, base: Query | None = None) -> Query:
    """A bound item query; derived from ``base`` (narrower, same order) when given."""
    if base is not None and draw(st.booleans()):
        where = base.where
        if draw(st.booleans()):
            extra = draw(LEAF)
            where = extra if where is None else And((where, extra))
        order, limit = base.order_by, base.limit
        if limit is not None:
            limit = draw(st.integers(0, limit + 1))
    else:
        where = draw(st.none() | CONDITIONS)
        order = draw(st.sampled_from(ORDERS))
        limit = draw(st.none() | st.none() | st.integers(1, 6))
    related = ()
    if draw(st.integers(0, 3)) == 0:
        related = (Related("kids", draw(kid_queries())),)
    q = bind(Query("item", where, order, limit, None, related), SCHEMA)
    if draw(st.integers(0, 4)) == 0:
        row = {o.column: draw(_value(o.column)) for o in q.order_by}
        start = Start(tuple((o.column, row[o.column]) for o in q.order_by), draw(st.booleans()))
        q = bind(dataclasses.replace(q, start=start), SCHEMA)
    return q


def _value(column: str) -> st.SearchStrategy[Any]:
    strategies = {"id": st.integers(0, 15), "a": st.none() | A_VALUES, "b": st.integers(0, 3),
                  "s": st.none() | S_VALUES, "f": st.none() | F_VALUES}
    return strategies[column]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[CompleteQuery], Query]:
    drawn = [CompleteQuery(draw(row_queries()), v) for v in range(draw(st.integers(0, 4)))]
    # A cache holds one entry per query id (a newer version replaces the older).
    complete = list({c.id: c for c in drawn}.values())
    if complete and draw(st.booleans()):
        q = draw(row_queries(draw(st.sampled_from(complete)).query))
    else:
        q = draw(row_queries())
    if draw(st.integers(0, 5)) == 0:
        measures = (Measure("n", "count"), Measure("total", "sum", "b"))
        group = draw(st.sampled_from([(), ("a",), ("s",)]))
        q = bind(Query("item", q.where, aggregate=Aggregate(group, measures)), SCHEMA)
    return complete, q


# -- running queries on the full and the partial database ---------------------------------


def load(con: duckdb.DuckDBPyConnection, db: Mapping[str, list[dict[str, Any]]]) -> None:
    for t in SCHEMA.tables:
        con.execute(f'DELETE FROM "{t.name}"')
        names = t.column_names
        if db[t.name]:
            con.executemany(f'INSERT INTO "{t.name}" VALUES ({", ".join("?" * len(names))})',
                            [[r[n] for n in names] for r in db[t.name]])


def run(con: duckdb.DuckDBPyConnection, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def result(con: duckdb.DuckDBPyConnection, q: Query) -> dict[str, list[Any]]:
    """Root rows in order; every other row set sorted (nesting follows from the rows)."""
    if q.aggregate is not None:
        c = compile_select(q, SCHEMA)
        return {"": run(con, c.sql, c.params)}
    out: dict[str, list[Any]] = {}
    for rs in compile_row_sets(q, SCHEMA):
        rows = run(con, rs.sql, rs.params)
        out[rs.key] = rows if rs.path == "" else sorted(rows, key=lambda r: r["id"])
    return out


def cached_rows(con: duckdb.DuckDBPyConnection,
                complete: list[CompleteQuery]) -> dict[str, list[dict[str, Any]]]:
    union: dict[str, dict[Any, dict[str, Any]]] = {t.name: {} for t in SCHEMA.tables}
    for c in complete:
        for rs in compile_row_sets(c.query, SCHEMA):
            for r in run(con, rs.sql, rs.params):
                union[rs.table][r["id"]] = r
    return {name: list(rows.values()) for name, rows in union.items()}


class Kids:
    """Related rows for EXISTS when the store counts a window's rows."""

    def __init__(self, db: Mapping[str, list[dict[str, Any]]]) -> None:
        self.db = db

    def related_rows(self, rel: Relationship, row: Row) -> list[Row]:
        return [k for k in self.db["kid"] if k["item_id"] == row["id"]]


@pytest.fixture(scope="module")
def cons() -> Iterator[tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection]]:
    full, part = duckdb.connect(), duckdb.connect()
    for c in (full, part):
        for ddl in create_table_sql(SCHEMA):
            c.execute(ddl)
    yield full, part
    full.close()
    part.close()


@settings(deadline=None, max_examples=250,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(st.data())
def test_covered_means_same_answer(
    cons: tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection], data: st.DataObject
) -> None:
    full, part = cons
    db = data.draw(databases())
    complete, q = data.draw(scenarios())
    load(full, db)
    cached = cached_rows(full, complete)
    load(part, cached)
    store = RowsInMemory(SCHEMA, cached, Kids(cached))
    got = covers(complete, q, SCHEMA, store)
    index = CoverageIndex(SCHEMA)
    for c in complete:
        index.add(c)
    assert index.covers(q, store) == got
    event("covered" if got.covered else "not covered")
    if got.covered:
        event(f"covered: {got.reason.split('(')[0].strip()}")
        assert result(part, q) == result(full, q), got.reason
        assert set(got.by) <= set(complete)
