"""Coverage: can q's full result be computed from the rows of a set of complete queries?

    cov = covers(complete_queries, q, schema, rows)   # scans every complete query
    cov = CoverageIndex(schema).covers(q, rows)       # the same answer, from an index

The answer is *sound*: ``covered`` is True only when q over the union of the rows of the
complete queries (whatever else the local store holds besides) gives exactly q's result on the
server. The rules, each one a function below:

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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import intervals as iv
from .coverage_implies import cubes_meet, implies
from .coverage_normal import ColumnKinds, Cube, normalize
from .predicate import compile_sort_key
from .query import Condition, Exists, OrderBy, Query, Start
from .schema import ColumnType, Schema


@dataclass(frozen=True)
class Normal:
    """A condition's normal form and the columns it pins to a few values (see ``pinned``)."""

    cubes: tuple[Cube, ...] | None
    pins: dict[str, frozenset[object]]
    # Nullable columns that every cube requires to be NOT NULL: such a complete query holds
    # none of q's rows where that column is NULL (a cheap reason to say "not covered").
    needs_value: frozenset[str]


@dataclass(frozen=True)
class CompleteQuery:
    """A query whose full result the local store holds, current as of ``version``."""

    query: Query
    version: int
    id: str = field(default="", compare=False)
    _normal: dict[str, Normal] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", self.query.id)

    def normal(self, schema: Schema) -> Normal:
        """The normal form of the condition (computed once per schema: decisions are hot)."""
        found = self._normal.get(schema.hash)
        if found is None:
            kinds = column_kinds(schema, self.query.table)
            cubes = normalize(self.query.where, kinds)
            found = Normal(cubes, pinned(cubes, kinds), _needs_value(cubes, kinds))
            self._normal[schema.hash] = found
        return found


@dataclass(frozen=True)
class Coverage:
    covered: bool
    by: tuple[CompleteQuery, ...]
    reason: str


class CachedRows(Protocol):
    """Counts over the rows the store holds for one complete query's result."""

    def count_matching(self, complete: CompleteQuery, query: Query) -> int:
        """How many of ``complete``'s result rows satisfy ``query``'s where and start (its
        order and limit are ignored). ``Query(table)`` therefore counts the whole result."""
        ...


_DISCRETE_TYPES = (ColumnType.INTEGER, ColumnType.BOOLEAN)
_KINDS: dict[tuple[str, str], ColumnKinds] = {}


def column_kinds(schema: Schema, table: str) -> ColumnKinds:
    """Which columns of ``table`` are discrete (integer, boolean) and which are never NULL."""
    key = (schema.hash, table)
    found = _KINDS.get(key)
    if found is None:
        cols = schema.table(table).columns
        found = ColumnKinds(
            frozenset(c.name for c in cols if c.type in _DISCRETE_TYPES),
            frozenset(c.name for c in cols if not c.nullable),
        )
        _KINDS[key] = found
    return found


def cubes_of(schema: Schema, table: str, cond: Condition | None) -> tuple[Cube, ...] | None:
    return normalize(cond, column_kinds(schema, table))


def pinned(cubes: tuple[Cube, ...] | None, kinds: ColumnKinds) -> dict[str, frozenset[object]]:
    """Columns held to a small finite set of non-NULL values in every cube, with the values."""
    if not cubes:
        return {}
    out: dict[str, frozenset[object]] | None = None
    for cube in cubes:
        here: dict[str, frozenset[object]] = {}
        for name, cs in cube.columns:
            if cs.null and name not in kinds.nonnull:
                continue
            pts = iv.finite_points(cs.values, name in kinds.discrete)
            if pts is not None:
                here[name] = pts
        out = here if out is None else {k: out[k] | here[k] for k in out.keys() & here.keys()}
        if not out:
            return {}
    return out or {}


def _needs_value(cubes: tuple[Cube, ...] | None, kinds: ColumnKinds) -> frozenset[str]:
    if not cubes:
        return frozenset()
    sets = [{n for n, cs in c.columns if not cs.null and n not in kinds.nonnull} for c in cubes]
    return frozenset(set.intersection(*sets))


def _null_ok(q_cubes: tuple[Cube, ...], column: str) -> bool:
    """May q's rows have NULL in ``column`` (in every branch of its condition)?"""
    return all(a.get(column).null for a in q_cubes)


def _exists_atoms(cubes: Iterable[Cube]) -> list[Exists]:
    return [a.exists for c in cubes for a in c.atoms if a.exists is not None]


def _has_exists(cond: Condition | None) -> bool:
    if cond is None:
        return False
    if isinstance(cond, Exists):
        return True
    terms = getattr(cond, "terms", None)
    if terms is not None:
        return any(_has_exists(t) for t in terms)
    inner = getattr(cond, "term", None)
    return inner is not None and _has_exists(inner)


# -- windows and starts -------------------------------------------------------------------


def start_within(q_start: Start | None, c_start: Start | None, order: tuple[OrderBy, ...]) -> bool:
    """Does every row at/after ``q_start`` lie at/after ``c_start`` in ``order``?"""
    if c_start is None:
        return True
    if q_start is None:
        return False
    key = compile_sort_key(order)
    kq, kc = key(q_start.as_dict()), key(c_start.as_dict())
    if kq != kc:
        return bool(kq > kc)
    return c_start.inclusive or not q_start.inclusive


def _same_window_prefix(c: Query, q: Query, schema: Schema, table: str) -> bool:
    """q is a prefix of the window c: same condition, order and start, and k' <= k."""
    if q.limit is None or c.limit is None or q.limit > c.limit or q.start != c.start:
        return False
    if q.order_by != c.order_by:
        return False
    qc, cc = cubes_of(schema, table, q.where), cubes_of(schema, table, c.where)
    if qc is None or cc is None:
        return False
    d = column_kinds(schema, table)
    return implies(qc, cc, d) is not None and implies(cc, qc, d) is not None


# -- related children and EXISTS ----------------------------------------------------------


def _child_covered(cached: Query, wanted: Query, schema: Schema, table: str) -> bool:
    """Does the cached child query hold, for every parent, the rows of the wanted one?"""
    wc = cubes_of(schema, table, wanted.where)
    cc = cubes_of(schema, table, cached.where)
    if wc is None or cc is None:
        return False
    exists = _exists_atoms(wc)
    if any(e.negated for e in exists):
        return False
    d = column_kinds(schema, table)
    if cached.limit is None:
        rows_ok = (
            (cached.start is None or cached.order_by == wanted.order_by)
            and start_within(wanted.start, cached.start, cached.order_by)
            and implies(wc, cc, d) is not None
        )
    else:
        # Per-parent windows cannot be counted cheaply, so only the prefix rule applies.
        rows_ok = _same_window_prefix(cached, wanted, schema, table)
    return rows_ok and subtree_covered(cached, wanted, exists, schema, table)


def subtree_covered(
    cached: Query, wanted: Query, exists: Sequence[Exists], schema: Schema, table: str
) -> bool:
    """Are the related rows that ``wanted`` needs (its ``related`` children and the children its
    EXISTS conditions look at) cached with every row of ``cached``?"""
    if not exists and not wanted.related:
        return True
    mine = {r.relationship: r.query for r in cached.related}
    t = schema.table(table)
    for e in exists:
        child = mine.get(e.relationship)
        if child is None or child.limit is not None or child.start is not None:
            return False
        if _has_exists(e.where):
            return False
        target = t.relationship(e.relationship).target
        ec, cc = cubes_of(schema, target, e.where), cubes_of(schema, target, child.where)
        if ec is None or cc is None or implies(ec, cc, column_kinds(schema, target)) is None:
            return False
    for rel in wanted.related:
        child = mine.get(rel.relationship)
        target = t.relationship(rel.relationship).target
        if child is None or not _child_covered(child, rel.query, schema, target):
            return False
    return True


# -- the decision ---------------------------------------------------------------------------


def _union(
    q_cubes: tuple[Cube, ...], pool: Sequence[tuple[CompleteQuery, tuple[Cube, ...]]],
    kinds: ColumnKinds, order: dict[str, int],
) -> tuple[CompleteQuery, ...] | None:
    flat: list[Cube] = []
    owner: list[int] = []
    for i, (_, cubes) in enumerate(pool):
        flat.extend(cubes)
        owner.extend([i] * len(cubes))
    used = implies(q_cubes, flat, kinds)
    if used is None:
        return None
    by = [pool[i][0] for i in {owner[j] for j in used}]
    return tuple(sorted(by, key=lambda c: order[c.id]))


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
    q_cubes = cubes_of(schema, table, q.where)
    if q_cubes is None:
        return Coverage(False, (), "the condition is too complex to compare")
    if not q_cubes or q.limit == 0:
        return Coverage(True, (), "the result is empty whatever the data")
    exists = _exists_atoms(q_cubes)
    if any(e.negated for e in exists):
        return Coverage(False, (), "NOT EXISTS is only answered by the server")
    pool: list[tuple[CompleteQuery, tuple[Cube, ...]]] = []
    blocked: list[tuple[CompleteQuery, tuple[Cube, ...]]] = []
    windows: list[tuple[CompleteQuery, tuple[Cube, ...]]] = []
    q_pins = pinned(q_cubes, d)
    null_ok: dict[str, bool] = {}
    for c in candidates:
        cq = c.query
        if cq.table != table or cq.aggregate is not None:
            continue
        normal = c.normal(schema)
        c_cubes = normal.cubes
        if c_cubes is None or not normal.pins.keys() <= q_pins.keys():
            # A complete query pinning a column to a few values can only hold q when q pins
            # it too (a union with other complete queries could, but that is not searched,
            # which keeps the index exact).
            continue
        if not subtree_covered(cq, q, exists, schema, table):
            continue
        is_blocked = False
        for col in normal.needs_value:
            if col not in null_ok:
                null_ok[col] = _null_ok(q_cubes, col)
            is_blocked = is_blocked or null_ok[col]
        if is_blocked:
            # It cannot hold q alone; it may still complete a union, so keep it for that.
            blocked.append((c, c_cubes))
            continue
        if not any(cubes_meet(a, b, d) for a in q_cubes for b in c_cubes):
            continue
        if cq.limit is None and cq.start is None:
            pool.append((c, c_cubes))
        else:
            windows.append((c, c_cubes))
    if not pool and not windows:
        # Either none overlaps q, or q's rows with NULL in the columns the overlapping ones
        # need a value in are in none of them. (One message: the index skips the former.)
        return Coverage(False, (), "no complete query can hold its rows")
    order = {c.id: i for i, c in enumerate(candidates)}
    for c, c_cubes in blocked:
        cq = c.query
        if cq.limit is None and cq.start is None:
            pool.append((c, c_cubes))
        else:
            windows.append((c, c_cubes))
    by = _union(q_cubes, pool, d, order)
    if by is not None:
        return Coverage(True, by, "its condition implies the union of complete queries")
    for c, c_cubes in windows:
        reason = _window_covers(c, c_cubes, q, q_cubes, schema, rows)
        if reason is not None:
            return Coverage(True, (c,), reason)
    if rows is not None:
        # Windows that hold fewer rows than their limit are all of their condition.
        for c, c_cubes in windows:
            size = _window_size(c, rows)
            if c.query.start is None and size is not None and size < (c.query.limit or 0):
                pool.append((c, c_cubes))
        by = _union(q_cubes, pool, d, order)
        if by is not None:
            return Coverage(True, by, "its condition implies the union of complete queries "
                                      "(windows holding fewer rows than their limit)")
    return Coverage(False, (), "the overlapping complete queries do not hold all of its rows")


def _window_size(c: CompleteQuery, rows: CachedRows | None) -> int | None:
    """How many rows the store holds for window ``c`` (None: it cannot tell)."""
    if rows is None or _has_exists(c.query.where):
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
    if _same_window_prefix(cq, q, schema, q.table):
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
