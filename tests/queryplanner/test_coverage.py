"""Coverage's building blocks: value sets, the 3VL normal form, the limit trap, the index.

The table-driven cases live in tests/conformance/coverage.json (test_coverage_conformance.py);
the end-to-end soundness check against DuckDB is test_coverage_oracle.py.
"""

from __future__ import annotations

from typing import Any

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from queryplanner import (
    And,
    Compare,
    Condition,
    InList,
    IsNull,
    Like,
    Not,
    Or,
    Schema,
    bind,
    col,
    evaluate,
    table,
)
from queryplanner import intervals as iv
from queryplanner.coverage import CompleteQuery, column_kinds, covers, cubes_of
from queryplanner.coverage_index import CoverageIndex
from queryplanner.coverage_normal import Cube
from queryplanner.coverage_rows import RowsInMemory
from queryplanner.predicate import compile_condition, like_regex
from queryplanner.sql import compile_select, create_table_sql

SCHEMA = Schema.from_dict({"tables": {"t": {"columns": {
    "id": {"type": "integer", "nullable": False}, "a": "integer", "s": "text", "f": "float"}}}})
KINDS = column_kinds(SCHEMA, "t")
A = st.none() | st.integers(-2, 2)
S = st.none() | st.sampled_from(["", "a", "ab", "b", "a%", "A"])
F = st.none() | st.sampled_from([-1.0, 0.0, 0.5, 1.0])
ROWS = st.fixed_dictionaries({"id": st.just(1), "a": A, "s": S, "f": F})
OPS = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
LEAF: st.SearchStrategy[Condition] = st.one_of(
    st.builds(Compare, st.just("a"), OPS, st.integers(-2, 2)),
    st.builds(Compare, st.just("f"), OPS, st.sampled_from([-1.0, 0.0, 0.5])),
    st.builds(Compare, st.just("s"), OPS, st.sampled_from(["", "a", "b"])),
    st.builds(InList, st.just("a"), st.lists(st.integers(-2, 2), min_size=1).map(tuple),
              st.booleans()),
    st.builds(IsNull, st.sampled_from(["a", "s", "f"]), st.booleans()),
    st.builds(Like, st.just("s"), st.sampled_from(["a%", "a", "%b", "_", "a\\%%", "%"]),
              st.booleans(), st.booleans()),
)
CONDITIONS = st.recursive(
    LEAF,
    lambda sub: st.one_of(st.lists(sub, min_size=2, max_size=3).map(lambda t: And(tuple(t))),
                          st.lists(sub, min_size=2, max_size=3).map(lambda t: Or(tuple(t))),
                          sub.map(Not)),
    max_leaves=6,
)


def _in_cube(cube: Cube, row: dict[str, Any]) -> bool:
    for name, cs in cube.columns:
        v = row[name]
        if v is None:
            if not cs.null:
                return False
        elif not iv.subset(iv.points((v,), name in KINDS.discrete), cs.values, False):
            return False
    for atom in cube.atoms:
        _, column, pattern, ci, negated = atom.key
        v = row[column]
        text, pat = (v.lower(), pattern.lower()) if ci else (v, pattern)
        if (like_regex(pat, False).fullmatch(text) is not None) == negated:
            return False
    return True


@settings(deadline=None, max_examples=400)
@given(CONDITIONS, ROWS)
def test_normal_form_keeps_exactly_the_true_rows(cond: Condition, row: dict[str, Any]) -> None:
    """A row is in some cube iff the condition is TRUE for it (not FALSE, not unknown)."""
    cubes = cubes_of(SCHEMA, "t", cond)
    if cubes is None:  # over the size cap: coverage says "not covered", nothing to check
        return
    truth = compile_condition(cond, SCHEMA, "t")(row) is True
    assert any(_in_cube(c, row) for c in cubes) is truth


def test_not_equal_is_not_equal_or_null() -> None:
    """NOT (a = 1) keeps no row where a IS NULL, so it does not cover a IS NULL."""
    not_eq = CompleteQuery(bind(table("t").where(~(col("a") == 1)).build(), SCHEMA), 1)
    is_null = bind(table("t").where(col("a").is_null()).build(), SCHEMA)
    assert not covers([not_eq], is_null, SCHEMA).covered
    ne_or_null = CompleteQuery(
        bind(table("t").where((col("a") != 1) | col("a").is_null()).build(), SCHEMA), 1)
    assert covers([ne_or_null], is_null, SCHEMA).covered


SETS = st.lists(st.tuples(st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
                          st.integers(-3, 3)), min_size=1, max_size=3)


def _set(parts: list[tuple[str, int]], discrete: bool) -> iv.ValueSet:
    out = iv.EMPTY
    for op, v in parts:
        out = iv.union(out, iv.compare_set(op, v, discrete), discrete)
    return out


@settings(deadline=None, max_examples=300)
@given(SETS, SETS, st.booleans())
def test_value_set_operations_agree_with_membership(
    a: list[tuple[str, int]], b: list[tuple[str, int]], discrete: bool
) -> None:
    sa, sb = _set(a, discrete), _set(b, discrete)
    # Probe integers and, for dense sets, the halves between them.
    probes = [x / 2 for x in range(-10, 11)] if not discrete else list(range(-5, 6))

    def has(s: iv.ValueSet, x: float) -> bool:
        return iv.subset(iv.points((x,), discrete), s, discrete)

    inter = iv.intersect(sa, sb, discrete)
    comp = iv.complement(sa, discrete)
    for x in probes:
        assert has(inter, x) == (has(sa, x) and has(sb, x))
        assert has(comp, x) == (not has(sa, x))
    if iv.subset(sa, sb, discrete):
        assert all(has(sb, x) for x in probes if has(sa, x))
    assert iv.meets(sa, sb) == bool(inter)


def test_the_unsound_limit_rule() -> None:
    """"P' implies P and k' <= k" would say yes here, and the answer from the window is wrong.

    Cached: a > 0 ORDER BY a LIMIT 3 holds the three rows with a = 1. Asked: a > 1 ORDER BY a
    LIMIT 2. Its rows (a = 2) are not in the window, so the local answer would be empty.
    """
    rows = [{"id": i, "a": a, "s": None, "f": None} for i, a in enumerate([1, 1, 1, 2, 2], 1)]
    window = bind(table("t").where(col("a") > 0).order_by("a").limit(3).build(), SCHEMA)
    q = bind(table("t").where(col("a") > 1).order_by("a").limit(2).build(), SCHEMA)
    con = duckdb.connect()
    try:
        for ddl in create_table_sql(SCHEMA):
            con.execute(ddl)
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)",
                        [[r["id"], r["a"], r["s"], r["f"]] for r in rows])
        c = compile_select(q, SCHEMA)
        truth = [r[0] for r in con.execute(c.sql, list(c.params)).fetchall()]
    finally:
        con.close()
    cached = evaluate(window, SCHEMA, rows)
    from_window = [r["id"] for r in evaluate(q, SCHEMA, cached)]
    assert truth == [4, 5] and from_window == []  # the tempting rule would be wrong
    complete = CompleteQuery(window, 1)
    store = RowsInMemory(SCHEMA, {"t": cached})
    assert not covers([complete], q, SCHEMA, store).covered
    assert not covers([complete], q, SCHEMA).covered


def test_index_add_replace_remove() -> None:
    index = CoverageIndex(SCHEMA)
    q1 = bind(table("t").where(col("a") == 1).build(), SCHEMA)
    index.add(CompleteQuery(q1, 5))
    index.add(CompleteQuery(q1, 9))  # a newer version replaces the entry
    assert len(index) == 1 and index.get(q1.id) == CompleteQuery(q1, 9)
    q = bind(table("t").where(col("a") == 1, col("s") == "x").build(), SCHEMA)
    assert [c.version for c in index.covers(q).by] == [9]
    other = bind(table("t").where(col("a") == 2).build(), SCHEMA)
    assert index.candidates(other) == []
    assert index.remove(q1.id) and not index.remove(q1.id)
    assert not index.covers(q).covered and list(index) == []


@settings(deadline=None, max_examples=200)
@given(st.lists(CONDITIONS, min_size=1, max_size=6), CONDITIONS)
def test_index_agrees_with_the_full_scan(wheres: list[Condition], where: Condition) -> None:
    complete = [CompleteQuery(bind(table("t").where(w).build(), SCHEMA), v)
                for v, w in enumerate(wheres)]
    complete = list({c.id: c for c in complete}.values())
    index = CoverageIndex(SCHEMA)
    for c in complete:
        index.add(c)
    q = bind(table("t").where(where).build(), SCHEMA)
    assert index.covers(q) == covers(complete, q, SCHEMA)


def _where(*conds: Any) -> CompleteQuery:
    return CompleteQuery(bind(table("t").where(*conds).build(), SCHEMA), 1)


def test_rows_with_null_need_a_member_that_holds_them() -> None:
    """Complete queries on ``f >= 0`` and ``f < 0`` hold every row with a value in f, so only
    a member holding rows with f NULL lets a union cover q (the NULL-slice pre-check must not
    refuse the union once ``f IS NULL`` is cached)."""
    complete = [_where(col("a") == 1), _where(col("f") >= 0.0), _where(col("f") < 0.0)]
    q = bind(table("t").where(col("a").in_([1, 2])).build(), SCHEMA)
    assert not covers(complete, q, SCHEMA).covered
    complete.append(_where(col("f").is_null()))
    got = covers(complete, q, SCHEMA)
    assert got.covered and complete[0] in got.by and complete[3] in got.by
    index = CoverageIndex(SCHEMA)
    for c in complete:
        index.add(c)
    assert index.covers(q) == got


def test_a_union_of_adjacent_ranges_covers_their_span() -> None:
    """Twenty complete queries tiling a..: the split search proves the union within its budget
    and refutes a span that reaches past the last tile."""
    complete = [_where(col("a") >= i, col("a") < i + 1) for i in range(20)]
    inside = bind(table("t").where(col("a") >= 0, col("a") < 20).build(), SCHEMA)
    got = covers(complete, inside, SCHEMA)
    assert got.covered and len(got.by) == 20
    past = bind(table("t").where(col("a") >= 0, col("a") <= 20).build(), SCHEMA)
    assert not covers(complete, past, SCHEMA).covered


def test_null_slice_only_for_columns_q_leaves_nullable() -> None:
    """Regression: the NULL-slice pre-check once also sliced q at a column q requires a
    value in (``a`` here, needed by the blocked ``a = 0 AND f = -1``), found no member
    holding rows q does not even have, and refused the union. It did so only when that
    blocked query was a candidate, so the index (which skips it) and the scan disagreed."""
    complete = [_where(col("a") == 0, col("f") == -1.0),
                _where((col("a") == 0) | (col("a") != 0))]
    q = bind(table("t").where(col("a") != 1).build(), SCHEMA)
    got = covers(complete, q, SCHEMA)
    assert got.covered and got.by == (complete[1],)
    index = CoverageIndex(SCHEMA)
    for c in complete:
        index.add(c)
    assert index.covers(q) == got
