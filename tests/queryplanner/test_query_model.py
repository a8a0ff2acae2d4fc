"""The query model: stable ids, canonical JSON round trips, builder == JSON form."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from queryplanner import (
    And,
    Compare,
    InList,
    Or,
    Query,
    Schema,
    bind,
    col,
    exists,
    measure,
    not_exists,
    parse_query,
    table,
)
from tests.conftest import DEMO_SCHEMA_PATH

SCHEMA = Schema.load(DEMO_SCHEMA_PATH)

LEAVES = [
    {"column": "status", "op": "=", "value": "todo"},
    {"column": "priority", "op": ">", "value": 1},
    {"column": "estimate", "op": "is null"},
    {"column": "title", "op": "ilike", "value": "%bug%"},
    {"exists": "comments", "where": {"column": "body", "op": "like", "value": "a%"}},
    {"column": "assignee_id", "op": "not in", "value": [3, 1, 2]},
]


@st.composite
def conditions(draw: st.DrawFn, depth: int = 2) -> dict[str, Any]:
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(LEAVES))
    key = draw(st.sampled_from(["and", "or", "not"]))
    if key == "not":
        return {"not": draw(conditions(depth - 1))}
    return {key: draw(st.lists(conditions(depth - 1), min_size=2, max_size=3))}


def shuffled(doc: Any, rnd: Any) -> Any:
    """The same condition with AND/OR terms and IN values in another order."""
    if isinstance(doc, dict):
        out = {k: shuffled(v, rnd) for k, v in doc.items()}
        for key in ("and", "or"):
            if key in out:
                out[key] = rnd.sample(out[key], len(out[key]))
        if out.get("op") in ("in", "not in"):
            out["value"] = rnd.sample(out["value"], len(out["value"]))
        return out
    if isinstance(doc, list):
        return [shuffled(v, rnd) for v in doc]
    return doc


@settings(deadline=None, max_examples=150)
@given(conditions(), st.randoms(use_true_random=False))
def test_id_is_stable_under_term_and_value_order(where: dict[str, Any], rnd: Any) -> None:
    a = parse_query({"table": "issue", "where": where}, SCHEMA)
    b = parse_query({"table": "issue", "where": shuffled(where, rnd)}, SCHEMA)
    assert a.id == b.id
    assert a.to_json() == b.to_json()


@settings(deadline=None, max_examples=150)
@given(conditions(), st.none() | st.integers(0, 100))
def test_canonical_json_round_trips(where: dict[str, Any], limit: int | None) -> None:
    doc: dict[str, Any] = {
        "table": "issue",
        "where": where,
        "orderBy": [["modified", "desc"]],
        "related": {"comments": {"limit": 3}},
    }
    if limit is not None:
        doc["limit"] = limit
    q = parse_query(doc, SCHEMA)
    again = parse_query(q.to_json(), SCHEMA)
    # The AST keeps the order it was given; the canonical form and the id are what is stable.
    assert again.to_json() == q.to_json() and again.id == q.id
    assert parse_query(again.to_json(), SCHEMA).to_json() == q.to_json()


def test_and_or_flatten_and_deduplicate() -> None:
    a, b, c = (Compare("priority", "=", i) for i in (1, 2, 3))
    nested = Query("issue", And((a, And((b, c)), a)))
    flat = Query("issue", And((c, b, a)))
    assert bind(nested, SCHEMA).id == bind(flat, SCHEMA).id
    assert (
        bind(Query("issue", Or((a, b))), SCHEMA).id != bind(Query("issue", And((a, b))), SCHEMA).id
    )


def test_in_values_order_and_duplicates() -> None:
    ids = {
        bind(Query("issue", InList("priority", tuple(p))), SCHEMA).id
        for p in itertools.permutations([1, 2, 3])
    }
    ids.add(bind(Query("issue", InList("priority", (3, 3, 2, 1))), SCHEMA).id)
    assert len(ids) == 1
    assert bind(Query("issue", InList("priority", (1, 2), negated=True)), SCHEMA).id not in ids


def test_ids_differ_when_meaning_differs() -> None:
    base = {"table": "issue", "where": {"column": "priority", "op": ">", "value": 1}}
    variants = [
        base,
        {**base, "limit": 1},
        {**base, "orderBy": [["priority", "desc"]]},
        {"table": "issue", "where": {"column": "priority", "op": ">=", "value": 1}},
        {"table": "issue", "where": {"column": "priority", "op": ">", "value": 2}},
        {**base, "related": {"comments": {}}},
    ]
    assert len({parse_query(v, SCHEMA).id for v in variants}) == len(variants)


def test_timestamps_normalize_to_one_id() -> None:
    def q(v: str) -> str:
        return parse_query(
            {"table": "issue", "where": {"column": "created", "op": ">", "value": v}}, SCHEMA
        ).id

    assert q("2026-01-01T12:00:00") == q("2026-01-01T13:00:00+01:00")


def test_builder_equals_json_form() -> None:
    built = (
        table("issue")
        .where(col("status").in_(["todo", "in_progress"]), col("priority") >= 2)
        .where(col("estimate") == None, exists("labels", col("name") == "bug"))  # noqa: E711
        .where(not_exists("comments"), ~col("title").ilike("%wip%"))
        .where(col("created") > dt.datetime(2026, 1, 1))
        .order_by("modified", desc=True)
        .limit(50)
        .start({"modified": "2026-02-01T00:00:00", "id": 9})
        .related("comments", table("comment").order_by("created").limit(10))
        .build()
    )
    doc = {
        "table": "issue",
        "where": {
            "and": [
                {"column": "status", "op": "in", "value": ["in_progress", "todo"]},
                {"column": "priority", "op": ">=", "value": 2},
                {"column": "estimate", "op": "is null"},
                {"exists": "labels", "where": {"column": "name", "op": "=", "value": "bug"}},
                {"notExists": "comments"},
                {"not": {"column": "title", "op": "ilike", "value": "%wip%"}},
                {"column": "created", "op": ">", "value": "2026-01-01T00:00:00"},
            ]
        },
        "orderBy": [["modified", "desc"]],
        "limit": 50,
        "start": {"row": {"modified": "2026-02-01T00:00:00", "id": 9}},
        "related": {"comments": {"orderBy": [["created", "asc"]], "limit": 10}},
    }
    assert bind(built, SCHEMA).to_json() == parse_query(doc, SCHEMA).to_json()
    assert bind(built, SCHEMA).id == parse_query(doc, SCHEMA).id


def test_builder_aggregate_equals_json_form() -> None:
    built = (
        table("issue")
        .aggregate(["status"], n=measure("count"), est=measure("sum", "estimate"))
        .build()
    )
    doc = {
        "table": "issue",
        "aggregate": {
            "groupBy": ["status"],
            "measures": {"est": {"fn": "sum", "column": "estimate"}, "n": {"fn": "count"}},
        },
    }
    assert bind(built, SCHEMA) == parse_query(doc, SCHEMA)


def test_builder_operators_combine() -> None:
    c = (col("priority") > 1) & (col("status") != "done") | ~(col("assignee_id") != None)  # noqa: E711
    q = bind(table("issue").where(c).build(), SCHEMA)
    assert q.to_json()["where"] == {
        "or": [
            {
                "and": [
                    {"column": "priority", "op": ">", "value": 1},
                    {"column": "status", "op": "!=", "value": "done"},
                ]
            },
            {"not": {"column": "assignee_id", "op": "is not null"}},
        ]
    }


def test_walk_names_every_related_path() -> None:
    q = parse_query(
        {"table": "issue", "related": {"comments": {"related": {"creator": {}}}, "labels": {}}},
        SCHEMA,
    )
    assert [p for p, _ in q.walk()] == [
        "",
        "related.comments",
        "related.comments.related.creator",
        "related.labels",
    ]
