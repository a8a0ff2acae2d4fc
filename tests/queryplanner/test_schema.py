"""Schemas: loading, the stable hash, versions, and refusals that name the table and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from queryplanner import Schema, SchemaError
from queryplanner.schema import Column, ColumnType, Table


def base() -> dict[str, Any]:
    return {
        "version": 3,
        "minClientVersion": 2,
        "tables": {
            "user": {
                "columns": {
                    "id": "integer",
                    "name": {"type": "text", "nullable": False},
                    "nick": {"type": "text", "since": 3},
                }
            },
            "post": {
                "columns": {"id": "integer", "author_id": "integer", "body": "json"},
                "relationships": {
                    "author": {
                        "kind": "many_to_one",
                        "target": "user",
                        "sourceColumns": "author_id",
                        "targetColumns": "id",
                    }
                },
            },
            "tag": {"columns": {"id": "integer"}, "since": 3},
            "post_tag": {
                "columns": {"post_id": "integer", "tag_id": "integer"},
                "primaryKey": ["post_id", "tag_id"],
            },
        },
    }


def test_load_json_and_toml_give_the_same_schema(tmp_path: Path) -> None:
    doc = {"tables": {"t": {"columns": {"id": "integer", "x": "float"}}}}
    (tmp_path / "s.json").write_text(json.dumps(doc))
    (tmp_path / "s.toml").write_text('[tables.t.columns]\nid = "integer"\nx = "float"\n')
    a, b = Schema.load(tmp_path / "s.json"), Schema.load(tmp_path / "s.toml")
    assert a == b and a.hash == b.hash
    assert not a.table("t").column("id").nullable and a.table("t").column("x").nullable


def test_hash_is_stable_and_sensitive() -> None:
    one, two = Schema.from_dict(base()), Schema.from_dict(base())
    assert one.hash == two.hash and len(one.hash) == 16
    changed = base()
    changed["tables"]["user"]["columns"]["nick"] = {"type": "text", "since": 2}
    assert Schema.from_dict(changed).hash != one.hash
    assert Schema.from_dict(one.to_dict()).hash == one.hash  # to_dict round-trips


def test_python_definition_equals_document() -> None:
    py = Schema((Table("t", (Column("id", ColumnType.INTEGER, nullable=False),), ("id",)),))
    doc = Schema.from_dict({"tables": {"t": {"columns": {"id": "integer"}}}})
    assert py.hash == doc.hash


def test_versions_and_as_of() -> None:
    s = Schema.from_dict(base())
    assert s.supports_client(2) and s.supports_client(3)
    assert not s.supports_client(1) and not s.supports_client(4)
    old = s.as_of(2)
    assert old.table_names == ("user", "post", "post_tag")
    assert old.table("user").column_names == ("id", "name")
    assert s.as_of(3) is s


def test_compound_keys_and_relationships() -> None:
    s = Schema.from_dict(base())
    assert s.table("post_tag").primary_key == ("post_id", "tag_id")
    assert s.table("post").relationship("author").target == "user"


def edit(path: list[str], value: Any) -> dict[str, Any]:
    doc = base()
    node = doc
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


REFUSALS: list[tuple[str, Any, str]] = [
    ("not an object", [], "must be an object"),
    ("no tables", {"tables": {}}, "non-empty 'tables'"),
    ("unknown top key", {**base(), "versoin": 1}, "Did you mean 'version'?"),
    ("bad version", {**base(), "version": 0}, "positive integer"),
    ("min client above version", {**base(), "minClientVersion": 4}, "minClientVersion 4"),
    (
        "bad table name",
        edit(["tables", "User"], {"columns": {"id": "integer"}}),
        "Invalid table name 'User'",
    ),
    (
        "unknown type",
        edit(["tables", "user", "columns", "name"], "string"),
        "Column 'name' in table 'user' has unknown type 'string'",
    ),
    (
        "column key",
        edit(["tables", "user", "columns", "name"], {"type": "text", "null": True}),
        "column user.name",
    ),
    (
        "bad column name",
        edit(["tables", "user", "columns", "Name"], "text"),
        "Invalid column in table 'user' name 'Name'",
    ),
    (
        "primary key not a column",
        edit(["tables", "user", "primaryKey"], ["uid"]),
        "Primary key column 'uid' of table 'user'",
    ),
    (
        "nullable primary key",
        edit(["tables", "user", "columns", "id"], {"type": "integer", "nullable": True}),
        "user.id cannot be nullable",
    ),
    (
        "float primary key",
        edit(["tables", "user", "columns", "id"], {"type": "float", "nullable": False}),
        "user.id has type float",
    ),
    (
        "column since after version",
        edit(["tables", "user", "columns", "nick"], {"type": "text", "since": 9}),
        "user.nick has since=9",
    ),
    (
        "relationship target",
        edit(["tables", "post", "relationships", "author", "target"], "usr"),
        "targets unknown table 'usr'. Did you mean 'user'?",
    ),
    (
        "relationship column",
        edit(["tables", "post", "relationships", "author", "sourceColumns"], ["author"]),
        "relationship post.author names unknown column 'author' of table 'post'",
    ),
    (
        "relationship kind",
        edit(["tables", "post", "relationships", "author", "kind"], "one"),
        "has kind 'one'",
    ),
    (
        "many-to-many without through",
        edit(["tables", "post", "relationships", "author", "kind"], "many_to_many"),
        "'through' is required",
    ),
    (
        "relationship named like a column",
        edit(
            ["tables", "post", "relationships", "body"],
            {
                "kind": "many_to_one",
                "target": "user",
                "sourceColumns": "author_id",
                "targetColumns": "id",
            },
        ),
        "has the name of a column",
    ),
    (
        "arity",
        edit(["tables", "post", "relationships", "author", "targetColumns"], ["id", "name"]),
        "pairs 1 columns with 2",
    ),
]


@pytest.mark.parametrize(
    ("doc", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_invalid_schemas_are_refused_by_name(doc: Any, message: str) -> None:
    with pytest.raises(SchemaError) as info:
        Schema.from_dict(doc)
    assert message in str(info.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="Cannot read schema file"):
        Schema.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(SchemaError, match="is not valid"):
        Schema.load(bad)


def test_lookups_suggest_names(demo_schema: Schema) -> None:
    with pytest.raises(SchemaError, match="Did you mean 'issue'"):
        demo_schema.table("issues")
    with pytest.raises(SchemaError, match="Did you mean 'status'"):
        demo_schema.table("issue").column("stauts")
    with pytest.raises(SchemaError, match="Did you mean 'labels'"):
        demo_schema.table("issue").relationship("label")
