"""Read rules: parsing, binding to an auth context (NULL folding) and rewriting queries."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import duckdb
import pytest

from queryplanner import Query, QueryError, Schema, SchemaError, evaluate, parse_query
from queryplanner.predicate import Row
from queryplanner.query import condition_to_json
from queryplanner.rules import apply_read_rules, parse_rules
from queryplanner.schema import Relationship
from queryplanner.sql import compile_select, create_table_sql

USERS = [(1, "ada", "a@x"), (2, "bob", None), (3, None, None)]
ME = {"column": "id", "op": "=", "value": {"auth": "user_id"}}


@pytest.fixture(scope="module")
def db(demo_schema: Schema) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    for ddl in create_table_sql(demo_schema):
        con.execute(ddl)
    con.executemany(
        'INSERT INTO "user" VALUES (?, ?, ?)',
        [(1, "ada", "a@x"), (2, "bob", None), (3, "cy", None)],
    )
    con.executemany('INSERT INTO "team" VALUES (?, ?, ?)', [(1, "A", "a"), (2, "B", "b")])
    con.executemany('INSERT INTO "project" VALUES (?, ?, ?)', [(1, 1, "p1"), (2, 2, "p2")])
    yield con
    con.close()


def user_ids(con: duckdb.DuckDBPyConnection, schema: Schema, rules: Any) -> list[int]:
    c = compile_select(parse_query({"table": "user"}, schema), schema, rules=rules)
    return [r[0] for r in con.execute(c.sql, list(c.params)).fetchall()]


@pytest.mark.parametrize(
    ("rule", "sql"),
    [
        (ME, '"id" = ?'),
        ({"not": ME}, 'NOT ("id" = ?)'),
        ({"or": [ME, {"column": "email", "op": "is null"}]}, '"id" = ? OR "email" IS NULL'),
        (
            {"not": {"and": [ME, {"column": "email", "op": "is null"}]}},
            'NOT ("id" = ? AND "email" IS NULL)',
        ),
        (
            {"not": {"or": [ME, {"column": "email", "op": "is null"}]}},
            'NOT ("id" = ? OR "email" IS NULL)',
        ),
        ({"column": "id", "op": "in", "value": [1, {"auth": "user_id"}]}, '"id" IN (1, ?)'),
        ({"column": "id", "op": "not in", "value": [1, {"auth": "user_id"}]}, '"id" NOT IN (1, ?)'),
        (
            {"not": {"column": "id", "op": "not in", "value": [1, {"auth": "user_id"}]}},
            'NOT ("id" NOT IN (1, ?))',
        ),
        (
            {
                "exists": "assigned",
                "where": {"column": "creator_id", "op": "=", "value": {"auth": "user_id"}},
            },
            "FALSE",
        ),
        (
            {
                "notExists": "assigned",
                "where": {"column": "creator_id", "op": "=", "value": {"auth": "user_id"}},
            },
            "TRUE",
        ),
    ],
)
@pytest.mark.parametrize("user", [1, 2, None])
def test_bound_rules_admit_what_sql_admits_with_that_parameter(
    db: duckdb.DuckDBPyConnection, demo_schema: Schema, rule: Any, sql: str, user: int | None
) -> None:
    """A NULL auth value folds to the rows SQL admits when the parameter is NULL."""
    bound = parse_rules({"user": rule}, demo_schema).bind({"user_id": user})
    params = [user] * sql.count("?")
    want = [
        r[0]
        for r in db.execute(f'SELECT "id" FROM "user" WHERE {sql} ORDER BY "id"', params).fetchall()
    ]
    assert user_ids(db, demo_schema, bound) == want


def test_missing_auth_key_is_null(demo_schema: Schema) -> None:
    rs = parse_rules({"user": ME, "team": True, "label": False}, demo_schema)
    bound = rs.bind({})
    assert condition_to_json(bound["user"]) == {"column": "id", "op": "is null"}
    assert condition_to_json(bound["label"]) == {"column": "id", "op": "is null"}
    assert "team" not in bound
    assert rs.tables == ("user", "team", "label")


def test_auth_lists_and_empty_lists(db: duckdb.DuckDBPyConnection, demo_schema: Schema) -> None:
    rule = {"project": {"column": "team_id", "op": "in", "value": {"auth": "teams"}}}
    rs = parse_rules(rule, demo_schema)

    def projects(auth: dict[str, Any]) -> list[int]:
        c = compile_select(
            parse_query({"table": "project"}, demo_schema), demo_schema, rules=rs.bind(auth)
        )
        return [r[0] for r in db.execute(c.sql, list(c.params)).fetchall()]

    assert projects({"teams": [2]}) == [2]
    assert projects({"teams": [1, 2]}) == [1, 2]
    assert projects({"teams": []}) == []
    assert projects({"teams": None}) == []
    negated = parse_rules(
        {"project": {"column": "team_id", "op": "not in", "value": {"auth": "teams"}}}, demo_schema
    )
    assert "project" not in negated.bind({"teams": []})  # NOT IN () admits every row


@pytest.mark.parametrize(
    ("doc", "error", "where", "match"),
    [
        ([], SchemaError, None, "object keyed by table"),
        ({"isue": True}, SchemaError, None, "Did you mean 'issue'"),
        (
            {"user": {"column": "nam", "op": "=", "value": "x"}},
            QueryError,
            "user.column",
            "Did you mean 'name'",
        ),
        (
            {"user": {"column": "id", "op": "=", "value": {"auth": 3}}},
            QueryError,
            "user.value",
            "auth placeholder",
        ),
        (
            {"user": {"column": "id", "op": "=", "value": {"auth": "u", "x": 1}}},
            QueryError,
            "user.value",
            "auth placeholder",
        ),
        (
            {"user": {"or": [ME, {"column": "id", "op": "~", "value": 1}]}},
            QueryError,
            "user.or[1].op",
            "Unknown operator",
        ),
        (
            {
                "user": {
                    "exists": "assigned",
                    "where": {"column": "titel", "op": "=", "value": {"auth": "x"}},
                }
            },
            QueryError,
            "user.where.column",
            "Did you mean 'title'",
        ),
    ],
)
def test_parse_rules_errors(
    demo_schema: Schema, doc: Any, error: type[Exception], where: str | None, match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        parse_rules(doc, demo_schema)
    if where is not None:
        assert isinstance(info.value, QueryError) and info.value.path == where


def test_auth_value_of_the_wrong_type_names_the_path(demo_schema: Schema) -> None:
    rs = parse_rules(
        {"user": {"or": [{"column": "name", "op": "=", "value": "x"}, ME]}}, demo_schema
    )
    with pytest.raises(QueryError, match="expected an integer") as info:
        rs.bind({"user_id": "me"})
    assert info.value.path == "user.or[1].value"


class Lookup:
    def __init__(self, db: dict[str, list[dict[str, Any]]]) -> None:
        self.db = db

    def related_rows(self, rel: Relationship, row: Row) -> Iterable[Row]:
        key = tuple(row[c] for c in rel.source_columns)
        return [r for r in self.db[rel.target] if tuple(r[c] for c in rel.target_columns) == key]


def test_apply_read_rules_matches_sql_rules(
    db: duckdb.DuckDBPyConnection, demo_schema: Schema
) -> None:
    """The AST rewrite (used by the incremental engine) filters like the SQL compiler."""
    rules = parse_rules(
        {
            "project": {"column": "team_id", "op": "=", "value": {"auth": "team"}},
            "team": {"column": "key", "op": "!=", "value": "B"},
        },
        demo_schema,
    ).bind({"team": 2})
    rows = {
        "team": [{"id": 1, "key": "A", "name": "a"}, {"id": 2, "key": "B", "name": "b"}],
        "project": [{"id": 1, "team_id": 1, "name": "p1"}, {"id": 2, "team_id": 2, "name": "p2"}],
    }
    for doc in [
        {"table": "project"},
        {"table": "team", "where": {"exists": "projects"}},
        {"table": "team", "where": {"notExists": "projects"}},
        {"table": "project", "where": {"exists": "team"}},
    ]:
        q = parse_query(doc, demo_schema)
        c = compile_select(q, demo_schema, rules=rules)
        want = [r[0] for r in db.execute(c.sql, list(c.params)).fetchall()]
        rewritten = apply_read_rules(q, demo_schema, rules)
        got = evaluate(rewritten, demo_schema, rows[q.table], Lookup(rows))
        assert [r["id"] for r in got] == want, doc


def test_apply_read_rules_reaches_related_children(demo_schema: Schema) -> None:
    rules = parse_rules(
        {"comment": {"column": "creator_id", "op": "=", "value": {"auth": "user_id"}}}, demo_schema
    ).bind({"user_id": 7})
    q = parse_query({"table": "issue", "related": {"comments": {"limit": 3}}}, demo_schema)
    out = apply_read_rules(q, demo_schema, rules)
    assert out.where is None
    child = out.related[0].query
    assert child.table == "comment" and child.limit == 3
    assert condition_to_json(child.where) == {"column": "creator_id", "op": "=", "value": 7}
    assert isinstance(out, Query)
