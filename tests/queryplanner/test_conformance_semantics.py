"""The shared semantics cases (tests/conformance/semantics.json) through Python and through SQL.

The expected answers were generated from DuckDB by scripts/gen_conformance.py; the Python
evaluator must reproduce every one, and so must the SQL path (which proves the file current).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from queryplanner import Schema, evaluate, parse_query
from queryplanner.aggregate import aggregate_rows
from queryplanner.predicate import Row
from queryplanner.schema import Relationship
from queryplanner.sql import compile_row_sets, compile_select, create_table_sql, nest_rows
from queryplanner.wire import decode_row, encode_row

DOC = json.loads(
    (Path(__file__).resolve().parents[1] / "conformance" / "semantics.json").read_text("utf-8")
)
SCHEMA = Schema.from_dict(DOC["schema"])
TABLES = {t.name: [decode_row(t, r) for r in DOC["rows"][t.name]] for t in SCHEMA.tables}
CASES = DOC["cases"]


class Lookup:
    def related_rows(self, rel: Relationship, row: Row) -> Iterable[Row]:
        key = tuple(row[c] for c in rel.source_columns)
        if None in key:
            return []
        if rel.through is None:
            return [r for r in TABLES[rel.target] if tuple(r[c] for c in rel.target_columns) == key]
        th = rel.through
        linked = {
            tuple(j[c] for c in th.target_columns)
            for j in TABLES[th.table]
            if tuple(j[c] for c in th.source_columns) == key
        }
        return [r for r in TABLES[rel.target] if tuple(r[c] for c in rel.target_columns) in linked]


def wire(table: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    t = SCHEMA.table(table)
    out = []
    for r in rows:
        doc = encode_row(t, r)
        for rel in t.relationships:
            if rel.name in r:
                v = r[rel.name]
                if isinstance(v, list):
                    doc[rel.name] = wire(rel.target, v)
                else:
                    doc[rel.name] = None if v is None else wire(rel.target, [v])[0]
        out.append(doc)
    return out


def plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows
    ]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def python_answer(case: dict[str, Any]) -> list[dict[str, Any]]:
    q = parse_query(case["query"], SCHEMA)
    if q.aggregate is not None:
        return plain(aggregate_rows(q, SCHEMA, TABLES[q.table], Lookup()))
    if q.related:
        whole: dict[str, list[Row]] = {}
        for path, sub in q.walk():
            whole[path] = TABLES[sub.table]
            for rel_q in sub.related:
                rel = SCHEMA.table(sub.table).relationship(rel_q.relationship)
                if rel.through is not None:
                    child = f"{path}.related.{rel.name}" if path else f"related.{rel.name}"
                    whole[f"{child}#through"] = TABLES[rel.through.table]
        return wire(q.table, nest_rows(q, SCHEMA, whole, refilter=True, lookup=Lookup()))
    return wire(q.table, [dict(r) for r in evaluate(q, SCHEMA, TABLES[q.table], Lookup())])


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    for ddl in create_table_sql(SCHEMA):
        c.execute(ddl)
    for t in SCHEMA.tables:
        for r in TABLES[t.name]:
            c.execute(
                f'INSERT INTO "{t.name}" VALUES ({", ".join("?" * len(r))})',
                [r[n] for n in t.column_names],
            )
    yield c
    c.close()


def fetch(
    con: duckdb.DuckDBPyConnection, sql: str, params: tuple[Any, ...]
) -> list[dict[str, Any]]:
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def sql_answer(con: duckdb.DuckDBPyConnection, case: dict[str, Any]) -> list[dict[str, Any]]:
    q = parse_query(case["query"], SCHEMA)
    if q.related:
        by_key = {rs.key: fetch(con, rs.sql, rs.params) for rs in compile_row_sets(q, SCHEMA)}
        return wire(q.table, nest_rows(q, SCHEMA, by_key))
    c = compile_select(q, SCHEMA)
    rows = fetch(con, c.sql, c.params)
    return plain(rows) if q.aggregate is not None else wire(q.table, rows)


def test_the_file_covers_every_kind_of_case() -> None:
    kinds = {("aggregate" in c["query"], "related" in c["query"]) for c in CASES}
    assert kinds == {(False, False), (True, False), (False, True)}
    assert len({c["name"] for c in CASES}) == len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_python_reproduces_duckdb(case: dict[str, Any]) -> None:
    got = python_answer(case)
    assert same(got, case["expected"]), (got, case["expected"])


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_sql_reproduces_the_file(con: duckdb.DuckDBPyConnection, case: dict[str, Any]) -> None:
    got = sql_answer(con, case)
    assert same(got, case["expected"]), (got, case["expected"])
