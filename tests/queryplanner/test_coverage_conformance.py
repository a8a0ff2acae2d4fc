"""Runs tests/conformance/coverage.json, the coverage cases the JavaScript client shares.

Each case is checked three ways: the full scan ``covers``, the ``CoverageIndex`` (which must
agree with it exactly, including which complete queries it relies on) and, where rows are
given, with a store that can count cached rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from queryplanner import Schema, parse_query
from queryplanner.coverage import CompleteQuery, covers
from queryplanner.coverage_index import CoverageIndex
from queryplanner.coverage_rows import RowsInMemory

ROOT = Path(__file__).resolve().parents[2]
DOC = json.loads((ROOT / "tests" / "conformance" / "coverage.json").read_text())
SCHEMA = Schema.load(ROOT / DOC["schema"])


def _store(case: dict[str, Any]) -> RowsInMemory | None:
    if "rows" not in case:
        return None
    filled = {
        name: [{c: r.get(c) for c in SCHEMA.table(name).column_names} for r in rows]
        for name, rows in case["rows"].items()
    }
    return RowsInMemory(SCHEMA, filled)


@pytest.mark.parametrize("case", DOC["cases"], ids=[c["name"] for c in DOC["cases"]])
def test_coverage_case(case: dict[str, Any]) -> None:
    complete = [
        CompleteQuery(parse_query(c["query"], SCHEMA), c["version"]) for c in case["complete"]
    ]
    q = parse_query(case["query"], SCHEMA)
    rows = _store(case)
    got = covers(complete, q, SCHEMA, rows)
    assert got.covered is case["covered"], got.reason
    assert [complete.index(c) for c in got.by] == case["by"], got.reason
    index = CoverageIndex(SCHEMA)
    for c in complete:
        index.add(c)
    assert index.covers(q, rows) == got


def test_case_names_are_unique() -> None:
    names = [c["name"] for c in DOC["cases"]]
    assert len(names) == len(set(names))
