"""Regenerate tests/conformance/semantics.json: query semantics cases with DuckDB's answers.

    .venv/bin/python scripts/gen_conformance.py

The file holds a schema, the rows of each table (wire form) and cases {name, query, expected}:
``expected`` is what DuckDB returns for ``compile_select`` (row and aggregate queries) or the
nested result built from ``compile_row_sets`` (queries with ``related``), in wire form. Every
client (Python here, JavaScript in web-demo) must reproduce it with its own evaluator.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from queryplanner import Schema, parse_query  # noqa: E402
from queryplanner.sql import (  # noqa: E402
    compile_row_sets,
    compile_select,
    create_table_sql,
    nest_rows,
)
from queryplanner.wire import decode_row, encode_row  # noqa: E402

OUT = ROOT / "tests" / "conformance" / "semantics.json"
# Integers stay within +-(2**53 - 1) so that a JavaScript client reads them exactly.

SCHEMA_DOC: dict[str, Any] = {
    "version": 1,
    "tables": {
        "item": {
            "columns": {
                "id": "integer",
                "n": "integer",
                "f": "float",
                "s": "text",
                "b": "boolean",
                "t": "timestamp",
                "g": "text",
            },
            "relationships": {
                "children": {
                    "kind": "one_to_many",
                    "target": "child",
                    "sourceColumns": ["id"],
                    "targetColumns": ["parent_id"],
                },
                "tags": {
                    "kind": "many_to_many",
                    "target": "tag",
                    "sourceColumns": ["id"],
                    "targetColumns": ["id"],
                    "through": {
                        "table": "item_tag",
                        "sourceColumns": ["item_id"],
                        "targetColumns": ["tag_id"],
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
                    "sourceColumns": ["parent_id"],
                    "targetColumns": ["id"],
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
    },
}


def item(i: int, n: Any, f: Any, s: Any, b: Any, t: Any, g: Any) -> dict[str, Any]:
    return {"id": i, "n": n, "f": f, "s": s, "b": b, "t": t, "g": g}


ROWS: dict[str, list[dict[str, Any]]] = {
    "item": [
        item(1, 3, 1.5, "apple", True, "2026-01-01T00:00:00", "x"),
        item(2, None, -0.0, "Apple", False, "2026-01-01T00:00:00.000001", "x"),
        item(3, -2, 0.0, "", None, None, "y"),
        item(4, 3, None, "émile", True, "2025-12-31T23:59:59", None),
        item(5, 0, 2.25, None, False, "2026-06-01T12:00:00", "y"),
        item(6, -2, -1.5, "Zebra", None, "2026-01-01T00:00:00", "x"),
        item(7, 9007199254740991, 1e300, "a%b_c\\d", True, None, None),
        item(8, -9007199254740991, -1e-300, "İstanbul", False, "1970-01-01T00:00:00", "y"),
        item(9, 1, 0.5, "ΟΔΟΣ", True, "2026-01-01T00:00:00", "z"),
        item(10, 1, 0.5, "😀 smile", None, None, "z"),
        item(11, None, None, "a\nb", None, None, None),
        item(12, 5, 3.0, "ß", False, "2026-02-02T02:02:02", "x"),
    ],
    "child": [
        {"id": 1, "parent_id": 1, "v": 10, "s": "one"},
        {"id": 2, "parent_id": 1, "v": None, "s": "two"},
        {"id": 3, "parent_id": 1, "v": 5, "s": "three"},
        {"id": 4, "parent_id": 2, "v": 5, "s": None},
        {"id": 5, "parent_id": 3, "v": -1, "s": "five"},
        {"id": 6, "parent_id": None, "v": 7, "s": "orphan"},
        {"id": 7, "parent_id": 99, "v": 7, "s": "dangling"},
        {"id": 8, "parent_id": 4, "v": 10, "s": "eight"},
    ],
    "tag": [
        {"id": 1, "name": "red"},
        {"id": 2, "name": "Blue"},
        {"id": 3, "name": None},
        {"id": 4, "name": "green"},
    ],
    "item_tag": [
        {"item_id": i, "tag_id": t}
        for i, t in [(1, 1), (1, 2), (1, 3), (2, 2), (3, 4), (4, 1), (4, 4), (9, 2)]
    ],
}


def c(column: str, op: str, value: Any = None) -> dict[str, Any]:
    return {"column": column, "op": op} | ({} if value is None else {"value": value})


ITEM = "item"
CASES: list[tuple[str, dict[str, Any]]] = [
    ("all rows in primary key order", {"table": ITEM}),
    ("equality skips NULL", {"table": ITEM, "where": c("n", "=", 3)}),
    ("inequality skips NULL", {"table": ITEM, "where": c("n", "!=", 3)}),
    ("NOT of equality skips NULL", {"table": ITEM, "where": {"not": c("n", "=", 3)}}),
    ("less than with negatives", {"table": ITEM, "where": c("n", "<", 0)}),
    (
        "largest integer exact in JavaScript",
        {"table": ITEM, "where": c("n", ">=", 9007199254740991)},
    ),
    ("float -0.0 equals 0.0", {"table": ITEM, "where": c("f", "=", 0)}),
    ("float range", {"table": ITEM, "where": {"and": [c("f", ">", -1), c("f", "<=", 1.5)]}}),
    ("IN list", {"table": ITEM, "where": c("n", "in", [3, -2, 42])}),
    ("NOT IN skips NULL", {"table": ITEM, "where": c("n", "not in", [3, -2])}),
    ("NOT over NOT IN", {"table": ITEM, "where": {"not": c("n", "not in", [3])}}),
    ("IS NULL", {"table": ITEM, "where": c("n", "is null")}),
    ("IS NOT NULL", {"table": ITEM, "where": c("s", "is not null")}),
    ("OR with unknown", {"table": ITEM, "where": {"or": [c("n", "=", 3), c("b", "=", True)]}}),
    (
        "NOT over AND with unknown",
        {"table": ITEM, "where": {"not": {"and": [c("n", ">", 0), c("b", "=", True)]}}},
    ),
    (
        "NOT over OR with unknown",
        {"table": ITEM, "where": {"not": {"or": [c("n", ">", 0), c("b", "=", True)]}}},
    ),
    ("boolean false", {"table": ITEM, "where": c("b", "=", False)}),
    ("boolean ordering", {"table": ITEM, "where": c("b", ">", False)}),
    (
        "timestamp comparison with microseconds",
        {"table": ITEM, "where": c("t", ">", "2026-01-01T00:00:00")},
    ),
    (
        "timestamp with offset is converted to UTC",
        {"table": ITEM, "where": c("t", "=", "2026-01-01T01:00:00+01:00")},
    ),
    ("text comparison by code point", {"table": ITEM, "where": c("s", ">", "Zebra")}),
    ("empty string is not NULL", {"table": ITEM, "where": c("s", "=", "")}),
    ("LIKE prefix is case-sensitive", {"table": ITEM, "where": c("s", "like", "a%")}),
    ("ILIKE prefix", {"table": ITEM, "where": c("s", "ilike", "a%")}),
    ("LIKE underscore is one code point", {"table": ITEM, "where": c("s", "like", "_mile")}),
    ("LIKE escaped percent and underscore", {"table": ITEM, "where": c("s", "like", "a\\%b\\_c%")}),
    ("LIKE escaped backslash", {"table": ITEM, "where": c("s", "like", "%\\\\d")}),
    ("LIKE percent spans newlines", {"table": ITEM, "where": c("s", "like", "a%b")}),
    ("NOT LIKE skips NULL", {"table": ITEM, "where": c("s", "not like", "%a%")}),
    ("ILIKE dotted capital I folds to i", {"table": ITEM, "where": c("s", "ilike", "istanbul")}),
    ("ILIKE sigma folds per code point", {"table": ITEM, "where": c("s", "ilike", "οδοσ")}),
    ("ILIKE sharp s does not match SS", {"table": ITEM, "where": c("s", "ilike", "SS")}),
    ("NOT ILIKE", {"table": ITEM, "where": c("s", "not ilike", "%E%")}),
    ("order asc NULLS LAST", {"table": ITEM, "orderBy": [["n", "asc"]]}),
    ("order desc NULLS LAST", {"table": ITEM, "orderBy": [["n", "desc"]]}),
    ("order by text code points", {"table": ITEM, "orderBy": [["s", "asc"]]}),
    ("order by float with -0.0 tie", {"table": ITEM, "orderBy": [["f", "desc"]]}),
    ("order by boolean then timestamp", {"table": ITEM, "orderBy": [["b", "desc"], ["t", "asc"]]}),
    ("limit", {"table": ITEM, "orderBy": [["n", "desc"]], "limit": 3}),
    ("limit zero", {"table": ITEM, "limit": 0}),
    (
        "start after a row",
        {"table": ITEM, "orderBy": [["n", "asc"]], "start": {"row": {"n": 1, "id": 9}}},
    ),
    (
        "start inclusive",
        {
            "table": ITEM,
            "orderBy": [["n", "asc"]],
            "start": {"row": {"n": 1, "id": 9}, "inclusive": True},
        },
    ),
    (
        "start in the NULLs",
        {"table": ITEM, "orderBy": [["n", "asc"]], "start": {"row": {"n": None, "id": 2}}},
    ),
    (
        "start desc with limit",
        {
            "table": ITEM,
            "orderBy": [["f", "desc"]],
            "limit": 3,
            "start": {"row": {"f": 1.5, "id": 1}},
        },
    ),
    (
        "start row that does not exist",
        {"table": ITEM, "orderBy": [["s", "desc"]], "start": {"row": {"s": "b", "id": 0}}},
    ),
    ("EXISTS one-to-many", {"table": ITEM, "where": {"exists": "children"}}),
    (
        "EXISTS with a condition",
        {"table": ITEM, "where": {"exists": "children", "where": c("v", ">=", 10)}},
    ),
    ("NOT EXISTS", {"table": ITEM, "where": {"notExists": "children"}}),
    (
        "EXISTS many-to-many",
        {"table": ITEM, "where": {"exists": "tags", "where": c("name", "ilike", "b%")}},
    ),
    (
        "NOT EXISTS many-to-many with NULL names",
        {"table": ITEM, "where": {"notExists": "tags", "where": c("name", "!=", "red")}},
    ),
    (
        "EXISTS many-to-one",
        {"table": "child", "where": {"exists": "parent", "where": c("g", "=", "x")}},
    ),
    ("NOT over EXISTS", {"table": "child", "where": {"not": {"exists": "parent"}}}),
    (
        "aggregate count without groups",
        {
            "table": ITEM,
            "aggregate": {"measures": {"n": {"fn": "count"}, "nn": {"fn": "count", "column": "n"}}},
        },
    ),
    (
        "aggregate over no rows",
        {
            "table": ITEM,
            "where": c("n", "=", 12345),
            "aggregate": {
                "measures": {
                    "c": {"fn": "count"},
                    "s": {"fn": "sum", "column": "n"},
                    "m": {"fn": "min", "column": "s"},
                }
            },
        },
    ),
    (
        "aggregate grouped with a NULL group",
        {
            "table": ITEM,
            "where": c("n", "<", 100),
            "aggregate": {
                "groupBy": ["g"],
                "measures": {
                    "c": {"fn": "count"},
                    "s": {"fn": "sum", "column": "n"},
                    "lo": {"fn": "min", "column": "s"},
                    "hi": {"fn": "max", "column": "t"},
                    "avg": {"fn": "avg", "column": "f"},
                },
            },
        },
    ),
    (
        "aggregate by two columns",
        {"table": ITEM, "aggregate": {"groupBy": ["g", "b"], "measures": {"c": {"fn": "count"}}}},
    ),
    (
        "related one-to-many per parent",
        {
            "table": ITEM,
            "where": c("id", "<=", 4),
            "related": {"children": {"orderBy": [["v", "desc"]], "limit": 2}},
        },
    ),
    (
        "related with a where and start",
        {
            "table": ITEM,
            "where": c("id", "<=", 3),
            "related": {
                "children": {
                    "where": c("v", "is not null"),
                    "orderBy": [["v", "asc"]],
                    "start": {"row": {"v": 5, "id": 3}, "inclusive": True},
                }
            },
        },
    ),
    (
        "related many-to-many",
        {
            "table": ITEM,
            "where": c("id", "in", [1, 2, 3, 5, 9]),
            "related": {"tags": {"orderBy": [["name", "asc"]], "limit": 2}},
        },
    ),
    (
        "related many-to-one and nested",
        {
            "table": "child",
            "orderBy": [["id", "desc"]],
            "related": {"parent": {"where": c("g", "!=", "y"), "related": {"tags": {}}}},
        },
    ),
]


def fetch(
    con: duckdb.DuckDBPyConnection, sql: str, params: tuple[Any, ...]
) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def encode_nested(schema: Schema, table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    t = schema.table(table)
    out = []
    for r in rows:
        doc = encode_row(t, r)
        for rel in t.relationships:
            if rel.name in r:
                v = r[rel.name]
                if isinstance(v, list):
                    doc[rel.name] = encode_nested(schema, rel.target, v)
                else:
                    doc[rel.name] = None if v is None else encode_nested(schema, rel.target, [v])[0]
        out.append(doc)
    return out


def main() -> None:
    schema = Schema.from_dict(SCHEMA_DOC)
    con = duckdb.connect()
    for ddl in create_table_sql(schema):
        con.execute(ddl)
    for t in schema.tables:
        for doc in ROWS[t.name]:
            row = decode_row(t, doc)
            names = list(row)
            con.execute(
                f'INSERT INTO "{t.name}" ({", ".join(names)}) VALUES '
                f"({', '.join('?' * len(names))})",
                [row[n] for n in names],
            )
    cases = []
    for name, doc in CASES:
        q = parse_query(doc, schema)
        if q.related:
            by_key = {rs.key: fetch(con, rs.sql, rs.params) for rs in compile_row_sets(q, schema)}
            expected = encode_nested(schema, q.table, nest_rows(q, schema, by_key))
        else:
            c_ = compile_select(q, schema)
            rows = fetch(con, c_.sql, c_.params)
            expected = rows if q.aggregate else [encode_row(schema.table(q.table), r) for r in rows]
            if q.aggregate:
                expected = [
                    {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
                    for r in rows
                ]
        cases.append({"name": name, "query": doc, "expected": expected})
    out = {
        "description": "Query semantics conformance cases (see docs/queries.md). `expected` is "
        "DuckDB's answer in wire form, generated by scripts/gen_conformance.py: row queries "
        "give rows in order, aggregate queries their groups, queries with `related` nested "
        "results. Float aggregates may differ in the last bits.",
        "schema": SCHEMA_DOC,
        "rows": ROWS,
        "cases": cases,
    }
    OUT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
