"""Coverage rules for starts, same-window prefixes, related children and EXISTS.

A related child query is covered per parent: every complete query relied on must carry the same
relationship with a child query that holds, for each parent, the rows the wanted child query
needs. EXISTS in q is evaluated locally over cached child rows, so every complete query relied
on must cache the children it looks at; NOT EXISTS is never decided locally (a child row that
is missing from the store would make it look true).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .coverage_implies import implies
from .coverage_model import column_kinds, cubes_of
from .coverage_normal import Cube
from .predicate import compile_sort_key
from .query import Condition, Exists, OrderBy, Query, Start
from .schema import Schema


def exists_atoms(cubes: Iterable[Cube]) -> list[Exists]:
    return [a.exists for c in cubes for a in c.atoms if a.exists is not None]


def has_exists(cond: Condition | None) -> bool:
    if cond is None:
        return False
    if isinstance(cond, Exists):
        return True
    terms = getattr(cond, "terms", None)
    if terms is not None:
        return any(has_exists(t) for t in terms)
    inner = getattr(cond, "term", None)
    return inner is not None and has_exists(inner)


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


def same_window_prefix(c: Query, q: Query, schema: Schema, table: str) -> bool:
    """q is a prefix of the window c: same condition, order and start, and k' <= k."""
    if q.limit is None or c.limit is None or q.limit > c.limit or q.start != c.start:
        return False
    if q.order_by != c.order_by:
        return False
    qc, cc = cubes_of(schema, table, q.where), cubes_of(schema, table, c.where)
    if qc is None or cc is None:
        return False
    if frozenset(qc) == frozenset(cc):
        return True  # the same normal form: no need to search both ways
    d = column_kinds(schema, table)
    return implies(qc, cc, d) is not None and implies(cc, qc, d) is not None


# -- related children and EXISTS ----------------------------------------------------------


def _child_covered(cached: Query, wanted: Query, schema: Schema, table: str) -> bool:
    """Does the cached child query hold, for every parent, the rows of the wanted one?"""
    wc = cubes_of(schema, table, wanted.where)
    cc = cubes_of(schema, table, cached.where)
    if wc is None or cc is None:
        return False
    exists = exists_atoms(wc)
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
        rows_ok = same_window_prefix(cached, wanted, schema, table)
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
        if has_exists(e.where):
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
