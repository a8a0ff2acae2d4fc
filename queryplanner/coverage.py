"""Coverage: can q's full result be computed from the rows of a set of complete queries?

    cov = covers(complete_queries, q, schema, rows)   # scans every complete query
    cov = CoverageIndex(schema).covers(q, rows)       # the same answer, from an index

The answer is *sound*: ``covered`` is True only when q over the union of the rows of the
complete queries (whatever else the local store holds besides) gives exactly q's result on the
server. The rules (here and in ``coverage_rules``):

- **supersets**: complete queries without limit or start hold every row of their condition, so
  q is covered when its condition implies the union of theirs (``coverage_implies``);
- **windows** ``(P, order O, start s, limit k)`` hold the first k rows of P after s. They cover
  ``(P', O, s', k')`` when P' implies P, s' is not before s, and either the window holds fewer
  than k rows (so it is all of P after s), or at least k' of its rows satisfy q (so q's first k'
  rows are all inside), or P' is equivalent to P with the same start and k' <= k (a prefix).
  "P' implies P and k' <= k" alone is NOT enough: ``age > 10 ORDER BY age LIMIT 20`` need not
  hold ``age > 20 ORDER BY age LIMIT 10`` (the 20 youngest may all be 11..20). Counting needs
  the cached rows, so callers pass a ``CachedRows``;
- **related children** are covered per parent by the same relationship's child query of every
  complete query used; **EXISTS** in q needs the related rows cached by every complete query
  used, and NOT EXISTS is never decided locally (a missing child row would make it look true);
- **aggregates** are covered when their row query (same condition, no limit) is.
"""

from __future__ import annotations

from collections.abc import Iterable, KeysView, Sequence

from .coverage_implies import cube_within, cubes_meet, implies
from .coverage_model import (
    CachedRows,
    CompleteQuery,
    Coverage,
    Normal,
    column_kinds,
    cubes_of,
    normal_of,
    pinned,
)
from .coverage_normal import ONLY_NULL, ColumnKinds, Cube
from .coverage_rules import (
    exists_atoms,
    has_exists,
    same_window_prefix,
    start_within,
    subtree_covered,
)
from .query import Exists, Query
from .schema import Schema

__all__ = ["CachedRows", "CompleteQuery", "Coverage", "Normal", "column_kinds", "covers",
           "cubes_of", "decide", "pinned"]


# -- the decision ---------------------------------------------------------------------------

# A candidate as the decision sees it: (its rank in the caller's order, the complete query,
# its cubes, the nullable columns it needs a value in).
_Cand = tuple[int, CompleteQuery, tuple[Cube, ...], frozenset[str]]


def _null_slices_held(
    q: Normal, pool: Sequence[_Cand], blocked: Sequence[tuple[int, CompleteQuery, Normal]],
    kinds: ColumnKinds,
) -> bool:
    """A necessary condition for a union with blocked members, cheap to test first: for each
    column that a blocked member needs a value in and q allows NULL in (in every branch:
    that is why the member is blocked), q's rows with NULL there must be held by the members
    that do not need it. ``blocked`` may hold more than the union would use: more members
    only make the test easier to pass, so a failure still rules the union out."""
    assert q.cubes is not None
    needed = {n.needs_value for _, _, n in blocked}
    for col in sorted(frozenset().union(*needed) - q.valued_somewhere):
        # Every cube of q allows NULL in col, so this is q AND col IS NULL.
        slice_ = tuple(a.with_column(col, ONLY_NULL) for a in q.cubes)
        held_by = [b for *_, cubes, _ in pool for b in cubes]
        if any(col not in needs for needs in needed):
            held_by += [b for _, _, n in blocked if n.cubes and col not in n.needs_value
                        for b in n.cubes]
        if implies(slice_, held_by, kinds) is None:
            return False
    return True


def _union(
    q_cubes: tuple[Cube, ...], pool: Sequence[_Cand], blocked: Sequence[_Cand],
    kinds: ColumnKinds,
) -> tuple[CompleteQuery, ...] | None:
    members = [*pool, *blocked]
    flat: list[Cube] = []
    owner: list[int] = []
    for i, (_, _, cubes, _) in enumerate(members):
        flat.extend(cubes)
        owner.extend([i] * len(cubes))
    used = implies(q_cubes, flat, kinds)
    if used is None:
        return None
    return tuple(c for _, c, _, _ in sorted(members[i] for i in {owner[j] for j in used}))


_UNION = "its condition implies the union of complete queries"


def decide(
    q: Query, candidates: Sequence[CompleteQuery], schema: Schema, rows: CachedRows | None = None
) -> Coverage:
    """The coverage of ``q`` (a bound query) by ``candidates``, in their order of preference.

    Candidates of other tables, aggregates and complete queries too complex to normalize are
    ignored, so any superset of the relevant complete queries gives the same answer.
    """
    if q.aggregate is not None:
        inner = decide(Query(q.table, q.where), candidates, schema, rows)
        state = "covered" if inner.covered else "not covered"
        return Coverage(inner.covered, inner.by, f"aggregate: its rows are {state} "
                                                 f"({inner.reason})")
    table = q.table
    d = column_kinds(schema, table)
    qn = normal_of(q.where, d)
    q_cubes = qn.cubes
    if q_cubes is None:
        return Coverage(False, (), "the condition is too complex to compare")
    if not q_cubes or q.limit == 0:
        return Coverage(True, (), "the result is empty whatever the data")
    exists = exists_atoms(q_cubes)
    if any(e.negated for e in exists):
        return Coverage(False, (), "NOT EXISTS is only answered by the server")
    subtree = bool(exists or q.related)
    q_pins = qn.pins.keys()
    valued = qn.valued_somewhere
    # With one cube, the first superset that holds it alone is the answer (the union search
    # would pick it too), so stop there instead of sorting out the rest.
    single = q_cubes[0] if len(q_cubes) == 1 else None
    pool: list[_Cand] = []
    windows: list[_Cand] = []
    # Complete queries that need a value where q may have NULL in every branch: they cannot
    # hold q alone, only complete a union, so the rest of their checks waits until one is tried.
    maybe_blocked: list[tuple[int, CompleteQuery, Normal]] = []
    key = schema.hash
    for rank, c in enumerate(candidates):
        cq = c.query
        if cq.table != table or cq.aggregate is not None:
            continue
        normal = c.cached_normal(key) or c.normal(schema)
        if not normal.needs_value <= valued:
            maybe_blocked.append((rank, c, normal))
            continue
        c_cubes = normal.cubes
        if not _admitted(c, normal, q_pins, q, exists, schema, subtree):
            continue
        assert c_cubes is not None  # _admitted refuses the too complex
        if not any(cubes_meet(a, b, d) for a in q_cubes for b in c_cubes):
            continue
        entry = (rank, c, c_cubes, normal.needs_value)
        if cq.limit is not None or cq.start is not None:
            windows.append(entry)
            continue
        if single is not None and any(cube_within(single, b, d) for b in c_cubes):
            return Coverage(True, (c,), _UNION)
        pool.append(entry)
    if not pool and not windows:
        # Either none overlaps q, or q's rows with NULL in the columns the overlapping ones
        # need a value in are in none of them. (One message: the index skips the former.)
        return Coverage(False, (), "no complete query can hold its rows")
    # A union of blocked complete queries alone misses q's NULL rows, so only try unions
    # with at least one unblocked member, and only when those rows can be held at all.
    union_ok = bool(pool) and _null_slices_held(qn, pool, maybe_blocked, d)
    blocked: list[_Cand] = [] if not union_ok and rows is None else [
        (rank, c, n.cubes, n.needs_value) for rank, c, n in maybe_blocked
        if n.cubes is not None and _admitted(c, n, q_pins, q, exists, schema, subtree)
    ]  # (only unions use them: with a superset of the pool, or with a window held whole)
    supersets = [e for e in blocked if e[1].query.limit is None and e[1].query.start is None]
    if union_ok:
        by = _union(q_cubes, pool, supersets, d)
        if by is not None:
            return Coverage(True, by, _UNION)
    for _, c, c_cubes, _ in windows:
        reason = _window_covers(c, c_cubes, q, q_cubes, schema, rows)
        if reason is not None:
            return Coverage(True, (c,), reason)
    if rows is not None:
        # Windows that hold fewer rows than their limit are all of their condition.
        joined = False
        for group, is_blocked in ((windows, False), (blocked, True)):
            for e in group:
                limit, size = e[1].query.limit, None
                if e[1].query.start is None and limit is not None:
                    size = _window_size(e[1], rows)
                if size is not None and limit is not None and size < limit:
                    (supersets if is_blocked else pool).append(e)
                    joined = True
        if pool and joined:
            by = _union(q_cubes, pool, supersets, d)
            if by is not None:
                return Coverage(True, by, _UNION + " (windows holding fewer rows than their "
                                                   "limit)")
    return Coverage(False, (), "the overlapping complete queries do not hold all of its rows")


def _admitted(
    c: CompleteQuery, normal: Normal, q_pins: KeysView[str], q: Query, exists: Sequence[Exists],
    schema: Schema, subtree: bool,
) -> bool:
    """Is ``c`` worth comparing with q at all?"""
    if normal.cubes is None or not normal.pins.keys() <= q_pins:
        # A complete query pinning a column to a few values can only hold q when q pins it
        # too (a union with other complete queries could, but that is not searched, which
        # keeps the index exact).
        return False
    return not subtree or subtree_covered(c.query, q, exists, schema, q.table)


def _window_size(c: CompleteQuery, rows: CachedRows | None) -> int | None:
    """How many rows the store holds for window ``c`` (None: it cannot tell)."""
    if rows is None or has_exists(c.query.where):
        # A store cannot pick out the rows of a window whose EXISTS it cannot evaluate.
        return None
    return rows.count_matching(c, Query(c.query.table))


def _window_covers(
    c: CompleteQuery, c_cubes: tuple[Cube, ...], q: Query, q_cubes: tuple[Cube, ...],
    schema: Schema, rows: CachedRows | None,
) -> str | None:
    cq = c.query
    if cq.order_by != q.order_by or not start_within(q.start, cq.start, cq.order_by):
        return None
    if implies(q_cubes, c_cubes, column_kinds(schema, q.table)) is None:
        return None
    if cq.limit is None:
        return "its rows all lie after the start of a complete query with that start"
    if same_window_prefix(cq, q, schema, q.table):
        return f"it is the first {q.limit} of the same {cq.limit} rows"
    size = _window_size(c, rows)
    if size is None:
        return None
    if size < cq.limit:
        return f"the window holds all {size} rows of its condition (limit {cq.limit})"
    if q.limit is not None and rows is not None and rows.count_matching(c, q) >= q.limit:
        return f"at least {q.limit} of the window's {size} rows match in the same order"
    return None


def covers(
    complete_queries: Iterable[CompleteQuery], q: Query, schema: Schema,
    rows: CachedRows | None = None,
) -> Coverage:
    """Decide coverage by scanning every complete query (the index's reference answer)."""
    return decide(q, [c for c in complete_queries if c.query.table == q.table], schema, rows)
