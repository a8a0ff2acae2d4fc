"""Every error path of ``parse_query``: a QueryError with the right path and a helpful message."""

from __future__ import annotations

from typing import Any

import pytest

from queryplanner import Limits, Query, QueryError, Schema, bind, parse_query

C = {"column": "status", "op": "=", "value": "todo"}

# (name, document, expected path, a fragment of the message)
CASES: list[tuple[str, Any, str, str]] = [
    ("not an object", [], "", "Expected a query"),
    ("no table", {}, "table", "needs a table name"),
    ("table not a string", {"table": 3}, "table", "not the number 3"),
    ("unknown table", {"table": "isue"}, "table", "Did you mean 'issue'?"),
    ("unknown key", {"table": "issue", "limt": 3}, "limt", "Did you mean 'limit'?"),
    ("where not an object", {"table": "issue", "where": 1}, "where", "a condition"),
    (
        "unknown column",
        {"table": "issue", "where": {"column": "stauts", "op": "=", "value": "x"}},
        "where.column",
        "Did you mean 'status'?",
    ),
    (
        "column not a string",
        {"table": "issue", "where": {"column": 1, "op": "=", "value": 1}},
        "where.column",
        "must be a string",
    ),
    (
        "unknown operator",
        {"table": "issue", "where": {"column": "status", "op": "~", "value": 1}},
        "where.op",
        "Unknown operator '~'",
    ),
    (
        "wrong value type",
        {"table": "issue", "where": {"column": "priority", "op": "=", "value": "high"}},
        "where.value",
        "expected an integer, not the string 'high'",
    ),
    (
        "bool for integer",
        {"table": "issue", "where": {"column": "priority", "op": "=", "value": True}},
        "where.value",
        "not a boolean",
    ),
    (
        "integer out of range",
        {"table": "issue", "where": {"column": "priority", "op": "<", "value": 2**70}},
        "where.value",
        "64-bit",
    ),
    (
        "non-finite float",
        {"table": "issue", "where": {"column": "estimate", "op": "<", "value": float("inf")}},
        "where.value",
        "finite",
    ),
    (
        "bad timestamp",
        {"table": "issue", "where": {"column": "created", "op": ">", "value": "yesterday"}},
        "where.value",
        "ISO 8601",
    ),
    (
        "null value",
        {"table": "issue", "where": {"column": "status", "op": "=", "value": None}},
        "where.value",
        "use 'is null'",
    ),
    (
        "is null with value",
        {"table": "issue", "where": {"column": "status", "op": "is null", "value": 1}},
        "where.value",
        "takes no value",
    ),
    (
        "like on integer",
        {"table": "issue", "where": {"column": "priority", "op": "like", "value": "1%"}},
        "where.op",
        "needs a text column",
    ),
    (
        "in not a list",
        {"table": "issue", "where": {"column": "status", "op": "in", "value": "x"}},
        "where.value",
        "non-empty list",
    ),
    (
        "in empty",
        {"table": "issue", "where": {"column": "status", "op": "in", "value": []}},
        "where.value",
        "non-empty list",
    ),
    (
        "in bad element",
        {
            "table": "issue",
            "where": {"and": [C, {"column": "priority", "op": "in", "value": [1, "2"]}]},
        },
        "where.and[1].value[1]",
        "expected an integer",
    ),
    (
        "in null element",
        {"table": "issue", "where": {"column": "priority", "op": "in", "value": [1, None]}},
        "where.value[1]",
        "use 'is null'",
    ),
    (
        "json compared",
        {"table": "issue_label", "where": {"column": "issue_id", "op": "=", "value": "x"}},
        "where.value",
        "expected an integer",
    ),
    (
        "unknown comparison key",
        {"table": "issue", "where": {**C, "x": 1}},
        "where.x",
        "Unknown key 'x'",
    ),
    ("and not a list", {"table": "issue", "where": {"and": C}}, "where.and", "non-empty list"),
    ("and empty", {"table": "issue", "where": {"or": []}}, "where.or", "non-empty list"),
    (
        "and with extra key",
        {"table": "issue", "where": {"and": [C], "x": 1}},
        "where",
        "cannot also have keys ['x']",
    ),
    (
        "nested bad column",
        {
            "table": "issue",
            "where": {"or": [C, {"not": {"column": "titel", "op": "=", "value": "x"}}]},
        },
        "where.or[1].not.column",
        "Did you mean 'title'?",
    ),
    ("condition shape", {"table": "issue", "where": {"colum": "x"}}, "where", "A condition is"),
    (
        "unknown relationship",
        {"table": "issue", "where": {"exists": "coments"}},
        "where.exists",
        "Did you mean 'comments'?",
    ),
    (
        "exists unknown key",
        {"table": "issue", "where": {"exists": "comments", "x": 1}},
        "where.x",
        "Unknown key 'x'",
    ),
    (
        "exists bad child column",
        {
            "table": "issue",
            "where": {"notExists": "comments", "where": {"column": "bdy", "op": "=", "value": "x"}},
        },
        "where.where.column",
        "Unknown column 'bdy' in table 'comment'. Did you mean 'body'?",
    ),
    ("orderBy not a list", {"table": "issue", "orderBy": "id"}, "orderBy", "must be a list"),
    ("orderBy entry", {"table": "issue", "orderBy": [["id"]]}, "orderBy[0]", "[column,"),
    (
        "orderBy column",
        {"table": "issue", "orderBy": [["priorty", "asc"]]},
        "orderBy[0]",
        "Did you mean 'priority'?",
    ),
    (
        "orderBy direction",
        {"table": "issue", "orderBy": [["id", "up"]]},
        "orderBy[0]",
        "'asc' or 'desc'",
    ),
    (
        "orderBy twice",
        {"table": "issue", "orderBy": ["id", ["id", "desc"]]},
        "orderBy[1]",
        "appears twice",
    ),
    ("limit not int", {"table": "issue", "limit": 1.5}, "limit", "whole number"),
    ("limit bool", {"table": "issue", "limit": True}, "limit", "whole number"),
    ("limit negative", {"table": "issue", "limit": -1}, "limit", "must not be negative"),
    ("limit too big", {"table": "issue", "limit": 10**6}, "limit", "above the maximum"),
    ("start not object", {"table": "issue", "start": 3}, "start", "a start cursor"),
    (
        "start unknown key",
        {"table": "issue", "start": {"row": {"id": 1}, "after": True}},
        "start.after",
        "Unknown start key",
    ),
    (
        "start inclusive",
        {"table": "issue", "start": {"row": {"id": 1}, "inclusive": 1}},
        "start.inclusive",
        "true or false",
    ),
    (
        "start missing column",
        {"table": "issue", "orderBy": ["priority"], "start": {"row": {"id": 1}}},
        "start.row.priority",
        "needs a value for the order column 'priority'",
    ),
    (
        "start extra column",
        {"table": "issue", "start": {"row": {"id": 1, "title": "x"}}},
        "start.row.title",
        "not an order column",
    ),
    (
        "start null for non-null",
        {"table": "issue", "start": {"row": {"id": None}}},
        "start.row.id",
        "not nullable",
    ),
    (
        "start wrong type",
        {"table": "issue", "start": {"row": {"id": "1"}}},
        "start.row.id",
        "expected an integer",
    ),
    (
        "related unknown",
        {"table": "issue", "related": {"comment": {}}},
        "related.comment",
        "Did you mean 'comments'?",
    ),
    (
        "related not object",
        {"table": "issue", "related": ["comments"]},
        "related",
        "related queries keyed by relationship",
    ),
    (
        "related bad limit",
        {"table": "issue", "related": {"comments": {"limit": -2}}},
        "related.comments.limit",
        "must not be negative",
    ),
    (
        "related other table",
        {"table": "issue", "related": {"comments": {"table": "user"}}},
        "related.comments.table",
        "reads table 'comment'",
    ),
    (
        "related aggregate",
        {"table": "issue", "related": {"comments": {"aggregate": {}}}},
        "related.comments.aggregate",
        "top-level query only",
    ),
    (
        "aggregate with limit",
        {"table": "issue", "limit": 3, "aggregate": {"measures": {"n": {"fn": "count"}}}},
        "limit",
        "cannot have 'limit'",
    ),
    (
        "aggregate unknown key",
        {"table": "issue", "aggregate": {"group": []}},
        "aggregate.group",
        "Unknown aggregate key",
    ),
    (
        "groupBy not list",
        {"table": "issue", "aggregate": {"groupBy": "status"}},
        "aggregate.groupBy",
        "list of column names",
    ),
    (
        "groupBy column",
        {"table": "issue", "aggregate": {"groupBy": ["stat"], "measures": {}}},
        "aggregate.groupBy[0]",
        "Unknown column 'stat'",
    ),
    (
        "groupBy twice",
        {"table": "issue", "aggregate": {"groupBy": ["status", "status"]}},
        "aggregate.groupBy[1]",
        "appears twice",
    ),
    (
        "no measures",
        {"table": "issue", "aggregate": {"measures": {}}},
        "aggregate.measures",
        "at least one measure",
    ),
    (
        "measure alias",
        {"table": "issue", "aggregate": {"measures": {"N!": {"fn": "count"}}}},
        "aggregate.measures.N!",
        "Invalid measure alias",
    ),
    (
        "alias is a group column",
        {
            "table": "issue",
            "aggregate": {"groupBy": ["status"], "measures": {"status": {"fn": "count"}}},
        },
        "aggregate.measures.status",
        "not the name of a groupBy column",
    ),
    (
        "measure fn",
        {"table": "issue", "aggregate": {"measures": {"n": {"fn": "cnt"}}}},
        "aggregate.measures.n.fn",
        "Did you mean 'count'?",
    ),
    (
        "measure key",
        {"table": "issue", "aggregate": {"measures": {"n": {"fn": "count", "col": "id"}}}},
        "aggregate.measures.n.col",
        "Unknown measure key",
    ),
    (
        "sum needs column",
        {"table": "issue", "aggregate": {"measures": {"s": {"fn": "sum"}}}},
        "aggregate.measures.s.column",
        "sum needs a column",
    ),
    (
        "sum of text",
        {"table": "issue", "aggregate": {"measures": {"s": {"fn": "sum", "column": "title"}}}},
        "aggregate.measures.s.column",
        "needs an integer or float column",
    ),
]


@pytest.mark.parametrize(
    ("doc", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_error_path_and_message(demo_schema: Schema, doc: Any, path: str, message: str) -> None:
    with pytest.raises(QueryError) as info:
        parse_query(doc, demo_schema)
    assert info.value.path == path, str(info.value)
    assert message in info.value.reason, str(info.value)
    assert str(info.value).startswith(f"{path}: " if path else info.value.reason)


def test_limits_depth_in_list_and_size(demo_schema: Schema) -> None:
    tight = Limits(max_limit=5, max_depth=3, max_in_values=2, max_string_length=3)
    deep: dict[str, Any] = C
    for _ in range(5):
        deep = {"not": deep}
    cases = [
        ({"table": "issue", "limit": 6}, "limit", "above the maximum 5"),
        ({"table": "issue", "where": deep}, "where.not.not.not", "nested deeper than 3"),
        (
            {"table": "issue", "where": {"column": "priority", "op": "in", "value": [1, 2, 3]}},
            "where.value",
            "the maximum is 2",
        ),
        (
            {"table": "issue", "where": {"column": "status", "op": "=", "value": "long"}},
            "where.value",
            "longer than 3",
        ),
    ]
    for doc, path, message in cases:
        with pytest.raises(QueryError) as info:
            parse_query(doc, demo_schema, tight)
        assert (info.value.path, message in info.value.reason) == (path, True), str(info.value)
    few_nodes = Limits(max_nodes=4)
    with pytest.raises(QueryError, match="more than 4 parts") as info:
        parse_query({"table": "issue", "where": {"or": [C, C, C, C]}}, demo_schema, few_nodes)
    assert info.value.path == "where.or[2]"


def test_very_deep_nesting_is_a_query_error_not_recursion(demo_schema: Schema) -> None:
    deep: dict[str, Any] = C
    for _ in range(5000):
        deep = {"not": deep}
    with pytest.raises(QueryError, match="nested deeper"):
        parse_query({"table": "issue", "where": deep}, demo_schema)


def test_bind_checks_python_built_queries(demo_schema: Schema) -> None:
    from queryplanner import col, table

    with pytest.raises(QueryError) as info:
        bind(table("issue").where(col("prio") > 1).build(), demo_schema)
    assert info.value.path == "where.column" and "Did you mean 'priority'?" in info.value.reason
    with pytest.raises(QueryError, match="Expected a Query"):
        bind("issue", demo_schema)  # type: ignore[arg-type]
    assert bind(Query("issue"), demo_schema).order_by[-1].column == "id"
