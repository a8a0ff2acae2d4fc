"""DuckDB as the oracle: Python predicates, orders, aggregates and nesting give its answers.

Hypothesis generates rows for a small schema (NULLs, ties, negative numbers, -0.0, empty and
non-ASCII strings, LIKE metacharacters) and random conditions, orders, limits and starts. For
each, ``queryplanner.predicate.evaluate`` must return the same rows in the same order as
``compile_select`` run by DuckDB; likewise ``aggregate_rows`` and ``nest_rows``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queryplanner import (
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
    evaluate,
)
from queryplanner.aggregate import aggregate_rows
from queryplanner.predicate import Row
from queryplanner.query import Aggregate
from queryplanner.schema import ColumnType, Relationship
from queryplanner.sql import (
    DUCKDB_SETUP,
    compile_row_sets,
    compile_select,
    create_table_sql,
    nest_rows,
)

SCHEMA = Schema.from_dict(
    {
        "tables": {
            "item": {
                "columns": {
                    "id": "integer",
                    "n": "integer",
                    "f": "float",
                    "s": "text",
                    "b": "boolean",
                    "t": "timestamp",
                    "g": "integer",
                },
                "relationships": {
                    "children": {
                        "kind": "one_to_many",
                        "target": "child",
                        "sourceColumns": "id",
                        "targetColumns": "parent_id",
                    },
                    "tags": {
                        "kind": "many_to_many",
                        "target": "tag",
                        "sourceColumns": "id",
                        "targetColumns": "id",
                        "through": {
                            "table": "item_tag",
                            "sourceColumns": "item_id",
                            "targetColumns": "tag_id",
                        },
                    },
                },
            },
            "child": {
                "columns": {"id": "integer", "parent_id": "integer", "v": "integer", "s": "text"},
                "relationships": {
                    "parent": {
                        "kind": "many_to_one",
                        "target": "item",
                        "sourceColumns": "parent_id",
                        "targetColumns": "id",
                    },
                },
            },
            "tag": {"columns": {"id": "integer", "name": "text"}},
            "item_tag": {
                "columns": {
                    "item_id": {"type": "integer", "nullable": False},
                    "tag_id": {"type": "integer", "nullable": False},
                },
                "primaryKey": ["item_id", "tag_id"],
            },
        }
    }
)

# Characters that exercise LIKE (% _ \), case folding beyond ASCII (dotted/dotless i, sharp s,
# sigma in its three forms, É, the Kelvin sign),
# combining marks, astral code points and code point order (Z < a < é < 😀).
ALPHABET = "aAbZz%_\\ éÉİ\u0131ßẞΣ\u03c3ςK\u0301😀\uffff"
T0 = dt.datetime(2026, 3, 1, 12, 0)

texts = st.text(alphabet=ALPHABET, max_size=4)
ints = st.integers(-3, 3) | st.sampled_from([-(2**63), 2**63 - 1, 10**12])
floats = st.sampled_from([-0.0, 0.0, 0.5, -1.5, 2.25, 1e-300, 1e6]) | st.floats(
    -1e6, 1e6, allow_nan=False
)
stamps = st.sampled_from(
    [T0, T0 + dt.timedelta(microseconds=1), T0 - dt.timedelta(days=400), dt.datetime(1970, 1, 1)]
)
VALUES: dict[ColumnType, st.SearchStrategy[Any]] = {
    ColumnType.INTEGER: ints,
    ColumnType.FLOAT: floats,
    ColumnType.TEXT: texts,
    ColumnType.BOOLEAN: st.booleans(),
    ColumnType.TIMESTAMP: stamps,
}


@functools.cache  # building strategies is costly; Hypothesis validates each once
def value_of(table: str, column: str) -> st.SearchStrategy[Any]:
    c = SCHEMA.table(table).column(column)
    strategy = VALUES[c.type]
    return st.none() | strategy if c.nullable else strategy


@functools.cache
def row_values(table: str) -> st.SearchStrategy[dict[str, Any]]:
    t = SCHEMA.table(table)
    return st.fixed_dictionaries(
        {c.name: value_of(table, c.name) for c in t.columns if c.name != "id"}
    )


def draw_rows(draw: st.DrawFn, table: str, ids: list[int]) -> list[dict[str, Any]]:
    return [{"id": i, **draw(row_values(table))} for i in ids]


@st.composite
def databases(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    ids = st.lists(st.integers(1, 12), unique=True, max_size=7)
    items = draw_rows(draw, "item", draw(ids))
    children = draw_rows(draw, "child", draw(ids))
    item_ids = [r["id"] for r in items] or [1]
    for c in children:  # mostly real parents, sometimes dangling or NULL
        c["parent_id"] = draw(st.none() | st.sampled_from(item_ids) | st.just(99))
    tags = draw_rows(draw, "tag", draw(st.lists(st.integers(1, 5), unique=True, max_size=4)))
    tag_ids = [r["id"] for r in tags] or [1]
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(item_ids), st.sampled_from(tag_ids)), unique=True, max_size=10
        )
    )
    links = [{"item_id": i, "tag_id": t} for i, t in pairs]
    return {"item": items, "child": children, "tag": tags, "item_tag": links}


@functools.cache  # building strategies is costly; Hypothesis validates each once
def leaf(table: str) -> st.SearchStrategy[Condition]:
    t = SCHEMA.table(table)
    options: list[st.SearchStrategy[Condition]] = []
    for c in t.columns:
        if c.type is ColumnType.JSON:
            continue
        values = VALUES[c.type]
        options.append(
            st.builds(
                Compare, st.just(c.name), st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), values
            )
        )
        options.append(
            st.builds(
                InList,
                st.just(c.name),
                st.lists(values, min_size=1, max_size=3).map(tuple),
                st.booleans(),
            )
        )
        options.append(st.builds(IsNull, st.just(c.name), st.booleans()))
        if c.type is ColumnType.TEXT:
            options.append(st.builds(Like, st.just(c.name), texts, st.booleans(), st.booleans()))
    return st.one_of(options)


@functools.cache  # building strategies is costly; Hypothesis validates each once
def conditions(table: str, depth: int = 2) -> st.SearchStrategy[Condition]:
    if depth == 0:
        return leaf(table)
    sub = conditions(table, depth - 1)
    terms = st.lists(sub, min_size=2, max_size=3).map(tuple)
    rels = SCHEMA.table(table).relationships
    exists = [
        st.builds(
            Exists, st.just(r.name), st.none() | conditions(r.target, depth - 1), st.booleans()
        )
        for r in rels
    ]
    return st.one_of(leaf(table), leaf(table), terms.map(And), terms.map(Or), sub.map(Not), *exists)


@st.composite
def row_queries(draw: st.DrawFn, table: str, rows: list[dict[str, Any]], depth: int = 2) -> Query:
    """A bound row query on ``table``; its start row is one of ``rows`` or made up."""
    t = SCHEMA.table(table)
    orderable = [c.name for c in t.columns if c.type is not ColumnType.JSON]
    cols = draw(st.lists(st.sampled_from(orderable), unique=True, max_size=3))
    order = tuple(OrderBy(c, draw(st.booleans())) for c in cols)
    where = draw(st.none() | conditions(table, depth))
    limit = draw(st.none() | st.integers(0, 5))
    q = bind(Query(table, where, order, limit), SCHEMA)
    if draw(st.booleans()):
        made_up = {o.column: draw(value_of(table, o.column)) for o in q.order_by}
        base = draw(st.sampled_from(rows)) if rows and draw(st.booleans()) else made_up
        start = Start(tuple((o.column, base[o.column]) for o in q.order_by), draw(st.booleans()))
        q = bind(dataclasses.replace(q, start=start), SCHEMA)
    return q


class Lookup:
    """Related rows over the generated tables, as the SQL joins find them (NULL links nothing)."""

    def __init__(self, db: Mapping[str, list[dict[str, Any]]]) -> None:
        self.db = db

    def related_rows(self, rel: Relationship, row: Row) -> Iterable[Row]:
        key = tuple(row[c] for c in rel.source_columns)
        if None in key:
            return []
        if rel.through is None:
            return [
                r for r in self.db[rel.target] if tuple(r[c] for c in rel.target_columns) == key
            ]
        th = rel.through
        wanted = {
            tuple(j[c] for c in th.target_columns)
            for j in self.db[th.table]
            if tuple(j[c] for c in th.source_columns) == key
        }
        return [r for r in self.db[rel.target] if tuple(r[c] for c in rel.target_columns) in wanted]


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    for ddl in [*DUCKDB_SETUP, *create_table_sql(SCHEMA)]:
        c.execute(ddl)
    yield c
    c.close()


def load(con: duckdb.DuckDBPyConnection, db: Mapping[str, list[dict[str, Any]]]) -> None:
    """Replace the tables' contents: one DELETE and one multi-row INSERT per table."""
    for t in SCHEMA.tables:
        con.execute(f'DELETE FROM "{t.name}"')
        rows = db[t.name]
        if rows:
            names = t.column_names
            one = "(" + ", ".join("?" * len(names)) + ")"
            params = [r[n] for r in rows for n in names]
            con.execute(f'INSERT INTO "{t.name}" VALUES {", ".join([one] * len(rows))}', params)


def run(con: duckdb.DuckDBPyConnection, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def keys(rows: Iterable[Row]) -> list[Any]:
    return [r["id"] for r in rows]


ORACLE = settings(
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@ORACLE
@given(st.data())
def test_rows_and_order_match_duckdb(con: duckdb.DuckDBPyConnection, data: st.DataObject) -> None:
    db = data.draw(databases())
    table = data.draw(st.sampled_from(["item", "child"]))
    q = data.draw(row_queries(table, db[table]))
    load(con, db)
    c = compile_select(q, SCHEMA)
    assert keys(evaluate(q, SCHEMA, db[table], Lookup(db))) == keys(run(con, c.sql, c.params))


@settings(deadline=None, max_examples=150)
@given(st.lists(texts, max_size=6, unique=True), texts, st.booleans(), st.booleans())
def test_like_and_ilike_match_duckdb(
    con: duckdb.DuckDBPyConnection, values: list[str], pattern: str, ci: bool, negated: bool
) -> None:
    db: dict[str, list[dict[str, Any]]] = {
        "item": [],
        "child": [],
        "item_tag": [],
        "tag": [{"id": i, "name": v} for i, v in enumerate(values)],
    }
    load(con, db)
    q = bind(Query("tag", Like("name", pattern, ci, negated)), SCHEMA)
    c = compile_select(q, SCHEMA)
    assert keys(evaluate(q, SCHEMA, db["tag"])) == keys(run(con, c.sql, c.params))


def close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return bool(a == b)


@st.composite
def aggregates(draw: st.DrawFn) -> Query:
    t = SCHEMA.table("item")
    group = draw(st.lists(st.sampled_from(["g", "b", "s", "t"]), unique=True, max_size=2))
    measures = [Measure("n", "count")]
    for i, (fn, column) in enumerate(
        draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["count", "sum", "min", "max", "avg"]),
                    st.sampled_from([c.name for c in t.columns if c.name != "g"]),
                ),
                max_size=4,
            )
        )
    ):
        if fn in ("sum", "avg") and t.column(column).type not in (
            ColumnType.INTEGER,
            ColumnType.FLOAT,
        ):
            continue
        measures.append(Measure(f"m{i}", fn, column))  # type: ignore[arg-type]
    where = draw(st.none() | conditions("item", 1))
    return bind(Query("item", where, aggregate=Aggregate(tuple(group), tuple(measures))), SCHEMA)


@ORACLE
@given(st.data())
def test_aggregates_match_duckdb(con: duckdb.DuckDBPyConnection, data: st.DataObject) -> None:
    db = data.draw(databases())
    q = data.draw(aggregates())
    load(con, db)
    c = compile_select(q, SCHEMA)
    want = run(con, c.sql, c.params)
    got = aggregate_rows(q, SCHEMA, db["item"], Lookup(db))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert list(g) == list(w)
        assert all(close(g[k], w[k]) for k in g), (g, w)


def nested_directly(q: Query, rows: list[Row], lookup: Lookup) -> list[dict[str, Any]]:
    """The reference nesting: for each row, evaluate each child query over its related rows."""
    table = SCHEMA.table(q.table)
    out = []
    for r in rows:
        d = dict(r)
        for rel_q in q.related:
            rel = table.relationship(rel_q.relationship)
            children = evaluate(rel_q.query, SCHEMA, lookup.related_rows(rel, r), lookup)
            built = nested_directly(rel_q.query, children, lookup)
            d[rel.name] = (built[0] if built else None) if rel.kind == "many_to_one" else built
        out.append(d)
    return out


@st.composite
def nested_queries(draw: st.DrawFn, db: dict[str, list[dict[str, Any]]]) -> Query:
    root = draw(row_queries("item", db["item"], depth=1))
    related = []
    if draw(st.booleans()):
        kids = draw(row_queries("child", db["child"], depth=1))
        if draw(st.booleans()):
            parent = draw(row_queries("item", db["item"], depth=0))
            kids = dataclasses.replace(kids, related=(Related("parent", parent),))
        related.append(Related("children", kids))
    if draw(st.booleans()):
        related.append(Related("tags", draw(row_queries("tag", db["tag"], depth=1))))
    return bind(dataclasses.replace(root, related=tuple(related)), SCHEMA)


@settings(
    deadline=None,
    max_examples=80,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_row_sets_and_nesting_match_direct_computation(
    con: duckdb.DuckDBPyConnection, data: st.DataObject
) -> None:
    db = data.draw(databases())
    q = data.draw(nested_queries(db))
    load(con, db)
    lookup = Lookup(db)
    by_key = {rs.key: run(con, rs.sql, rs.params) for rs in compile_row_sets(q, SCHEMA)}
    want = nested_directly(q, evaluate(q, SCHEMA, db["item"], lookup), lookup)
    assert nest_rows(q, SCHEMA, by_key) == want
    # A superset (whole tables) gives the same result when where and start are re-applied.
    whole = {
        "": db["item"],
        "related.children": db["child"],
        "related.children.related.parent": db["item"],
        "related.tags": db["tag"],
        "related.tags#through": db["item_tag"],
    }
    assert nest_rows(q, SCHEMA, whole, refilter=True, lookup=lookup) == want


# -- regressions found while aligning the Python side with DuckDB ---------------------------


@pytest.mark.parametrize(
    ("value", "pattern", "ci", "expected"),
    [
        ("İ", "i", True, True),  # str.lower gives 'i' + U+0307; DuckDB's simple mapping 'i'
        ("İx", "__", True, True),
        ("ΟΔΟΣ", "οδοσ", True, True),  # str.lower uses the final sigma 'ς' at a word's end
        ("οδος", "ΟΔΟΣ", True, False),  # ...while final and medial sigma stay different
        ("a\\", "a\\", False, True),  # a trailing backslash matches a backslash
        ("a%", "a\\%", False, True),
        ("ab", "a\\%", False, False),
        ("é", "_", False, True),  # '_' is one code point, not one byte
        ("e\u0301", "_", False, False),  # a combining mark is a code point of its own
    ],
)
def test_like_case_folding_is_per_code_point(
    con: duckdb.DuckDBPyConnection, value: str, pattern: str, ci: bool, expected: bool
) -> None:
    """ILIKE used str.lower(), which is context-sensitive and may change a string's length."""
    q = bind(Query("tag", Like("name", pattern, ci)), SCHEMA)
    load(con, {"item": [], "child": [], "item_tag": [], "tag": [{"id": 1, "name": value}]})
    c = compile_select(q, SCHEMA)
    assert (keys(run(con, c.sql, c.params)) == [1]) is expected
    assert (keys(evaluate(q, SCHEMA, [{"id": 1, "name": value}])) == [1]) is expected


def test_negative_zero_ties_with_zero(con: duckdb.DuckDBPyConnection) -> None:
    """-0.0 and 0.0 are equal in DuckDB's order too: the primary key breaks the tie."""
    rows = [
        {"id": i, "n": None, "f": f, "s": None, "b": None, "t": None, "g": None}
        for i, f in [(1, 0.0), (2, -0.0), (3, 0.0)]
    ]
    load(con, {"item": rows, "child": [], "item_tag": [], "tag": []})
    q = bind(Query("item", Compare("f", ">=", 0.0), (OrderBy("f", True),)), SCHEMA)
    c = compile_select(q, SCHEMA)
    assert keys(run(con, c.sql, c.params)) == keys(evaluate(q, SCHEMA, rows)) == [1, 2, 3]
