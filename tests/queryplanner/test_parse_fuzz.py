"""Fuzzing the parsers: no input makes them raise anything but their own error.

``parse_query`` may raise only ``QueryError``, ``Schema.from_dict`` only ``SchemaError``,
``wire.decode_row`` only ``WireError`` — never KeyError, TypeError, RecursionError, ValueError.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queryplanner import QueryError, Schema, SchemaError, parse_query
from queryplanner.wire import WireError, decode_key, decode_row
from tests.conftest import DEMO_SCHEMA_PATH

SCHEMA = Schema.load(DEMO_SCHEMA_PATH)
FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=list(HealthCheck))

WORDS = [
    "table",
    "where",
    "orderBy",
    "limit",
    "start",
    "related",
    "aggregate",
    "and",
    "or",
    "not",
    "exists",
    "notExists",
    "column",
    "op",
    "value",
    "row",
    "inclusive",
    "groupBy",
    "measures",
    "fn",
    "issue",
    "comment",
    "label",
    "status",
    "priority",
    "id",
    "created",
    "estimate",
    "comments",
    "labels",
    "=",
    "in",
    "not in",
    "like",
    "is null",
    "count",
    "sum",
    "asc",
    "desc",
    "tables",
    "columns",
    "primaryKey",
    "relationships",
    "kind",
    "target",
    "sourceColumns",
    "targetColumns",
    "through",
    "type",
    "nullable",
    "since",
    "integer",
    "text",
    "many_to_many",
    "version",
    "minClientVersion",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.sampled_from(WORDS)
    | st.text(max_size=5)
)
keys = st.sampled_from(WORDS) | st.text(max_size=4)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=30,
)

VALID = [
    {
        "table": "issue",
        "where": {
            "and": [
                {"column": "status", "op": "in", "value": ["todo"]},
                {"exists": "labels", "where": {"column": "name", "op": "like", "value": "b%"}},
            ]
        },
        "orderBy": [["priority", "desc"]],
        "limit": 10,
        "start": {"row": {"priority": 2, "id": 5}, "inclusive": True},
        "related": {"comments": {"limit": 2}, "assignee": {}},
    },
    {
        "table": "issue",
        "where": {"not": {"column": "estimate", "op": "is null"}},
        "aggregate": {
            "groupBy": ["status"],
            "measures": {"n": {"fn": "count"}, "s": {"fn": "sum", "column": "estimate"}},
        },
    },
]


@st.composite
def mutated(draw: st.DrawFn, doc: Any) -> Any:
    """A valid document with one part replaced, removed or duplicated somewhere inside."""
    if isinstance(doc, dict) and doc and draw(st.integers(0, 3)):
        key = draw(st.sampled_from(sorted(doc)))
        out = dict(doc)
        action = draw(st.integers(0, 3))
        if action == 0:
            del out[key]
        elif action == 1:
            out[key] = draw(json_values)
        else:
            out[key] = draw(mutated(doc[key]))
        return out
    if isinstance(doc, list) and doc and draw(st.integers(0, 3)):
        i = draw(st.integers(0, len(doc) - 1))
        out_list = list(doc)
        out_list[i] = draw(mutated(doc[i]))
        if draw(st.booleans()):
            out_list.append(out_list[i])
        return out_list
    return draw(json_values)


@FUZZ
@given(json_values)
def test_parse_query_arbitrary_json(doc: Any) -> None:
    with contextlib.suppress(QueryError):
        parse_query(doc, SCHEMA)


@FUZZ
@given(st.sampled_from(VALID).flatmap(mutated))
def test_parse_query_near_valid(doc: Any) -> None:
    try:
        q = parse_query(doc, SCHEMA)
    except QueryError:
        return
    # Whatever parses round-trips through the canonical form (which sorts and deduplicates
    # AND/OR terms, so the ASTs may differ while the canonical JSON and the id do not).
    again = parse_query(q.to_json(), SCHEMA)
    assert again.to_json() == q.to_json()
    assert again.id == q.id


@settings(deadline=None, max_examples=20)
@given(st.integers(50, 3000), st.sampled_from(["not", "and", "or", "exists"]))
def test_parse_query_deep_nesting(depth: int, key: str) -> None:
    cond: Any = {"column": "status", "op": "=", "value": "x"}
    for _ in range(depth):
        cond = (
            {"exists": "comments", "where": cond}
            if key == "exists"
            else ({key: cond} if key == "not" else {key: [cond]})
        )
    with contextlib.suppress(QueryError):
        parse_query({"table": "issue", "where": cond}, SCHEMA)


SCHEMA_DOC = SCHEMA.to_dict()


@FUZZ
@given(json_values | st.just(SCHEMA_DOC).flatmap(mutated))
def test_schema_from_dict_raises_only_schema_error(doc: Any) -> None:
    with contextlib.suppress(SchemaError):
        Schema.from_dict(doc)


@FUZZ
@given(st.sampled_from(SCHEMA.tables), json_values, st.booleans())
def test_decode_row_raises_only_wire_error(table: Any, doc: Any, partial: bool) -> None:
    with contextlib.suppress(WireError):
        decode_row(table, doc, partial=partial)
    with contextlib.suppress(WireError):
        decode_key(table, doc)


@FUZZ
@given(
    st.sampled_from(SCHEMA.tables).flatmap(
        lambda t: st.tuples(st.just(t), st.dictionaries(st.sampled_from(t.column_names), scalars))
    )
)
def test_decode_row_near_valid(pair: Any) -> None:
    table, doc = pair
    with contextlib.suppress(WireError):
        decode_row(table, doc)
