"""Implication between normalized conditions: is every row of A also a row of B1 or B2 ...?

A cube is a box (one value set per column) plus opaque atoms, so "A implies the union of the
Bs" is box-in-union-of-boxes. ``cube_covered`` decides it by splitting: when no single B holds
A, cut A along one column of a B into the part inside that B and the rest, and decide each part.
That finds unions such as ``project = 1`` plus ``project = 2`` holding
``project IN (1, 2) AND status = 'todo'``, and ``x < 5`` plus ``x >= 5`` holding ``x > 0``.

Opaque atoms are never split: a B with an atom that A lacks is dropped, so the answer can only
err towards "not implied". Splitting is bounded by a step budget; running out means "no".
"""

from __future__ import annotations

from collections.abc import Sequence

from . import intervals as iv
from .coverage_normal import ColumnKinds, ColumnSet, Cube, intersect_sets, subset_sets

SPLIT_BUDGET = 256


def _none(cs: ColumnSet, name: str, kinds: ColumnKinds) -> bool:
    """Does no row have a value in ``cs``? (NULL does not count for a NOT NULL column.)"""
    return not cs.values and (not cs.null or name in kinds.nonnull)


def cube_within(a: Cube, b: Cube, kinds: ColumnKinds) -> bool:
    """Is every row of cube ``a`` in cube ``b``?"""
    if not b.atoms <= a.atoms:
        return False
    d = kinds.discrete
    return all(subset_sets(a.get(name), cs, name in d) for name, cs in b.columns)


def cubes_meet(a: Cube, b: Cube, kinds: ColumnKinds) -> bool:
    """Could a row be in both cubes? (False only when provably not.)"""
    for name, cs in b.columns:
        if _none(intersect_sets(a.get(name), cs, name in kinds.discrete), name, kinds):
            return False
    return True


def _replace(a: Cube, name: str, cs: ColumnSet) -> Cube:
    cols = dict(a.columns)
    cols[name] = cs
    return Cube(tuple(sorted(cols.items())), a.atoms)


class _Budget:
    __slots__ = ("left",)

    def __init__(self, steps: int) -> None:
        self.left = steps


def cube_covered(
    a: Cube, bs: Sequence[Cube], kinds: ColumnKinds, budget: int = SPLIT_BUDGET
) -> frozenset[int] | None:
    """The indexes of the ``bs`` that together hold ``a``, or None when that is not shown."""
    return _covered(a, list(enumerate(bs)), kinds, _Budget(budget))


def _covered(
    a: Cube, bs: list[tuple[int, Cube]], kinds: ColumnKinds, budget: _Budget
) -> frozenset[int] | None:
    budget.left -= 1
    if budget.left < 0:
        return None
    live = [(i, b) for i, b in bs if b.atoms <= a.atoms and cubes_meet(a, b, kinds)]
    for i, b in live:
        if cube_within(a, b, kinds):
            return frozenset((i,))
    if not live:
        return None
    # Cut a along the first column where the first live b does not hold it.
    i0, b0 = live[0]
    for name, cs in b0.columns:
        mine = a.get(name)
        disc = name in kinds.discrete
        if subset_sets(mine, cs, disc):
            continue
        inside = intersect_sets(mine, cs, disc)
        outside = ColumnSet(mine.null and not cs.null,
                            iv.intersect(mine.values, iv.complement(cs.values, disc), disc))
        used_in: frozenset[int] | None = frozenset()
        if not _none(inside, name, kinds):
            used_in = _covered(_replace(a, name, inside), live, kinds, budget)
        if used_in is None:
            return None
        if _none(outside, name, kinds):
            return used_in
        rest = [(i, b) for i, b in live if i != i0]
        used_out = _covered(_replace(a, name, outside), rest, kinds, budget)
        return None if used_out is None else used_in | used_out
    return None  # unreachable in practice: b0 meets a on every column yet does not hold it


def implies(
    premise: Sequence[Cube], conclusion: Sequence[Cube], kinds: ColumnKinds
) -> frozenset[int] | None:
    """The indexes of the ``conclusion`` cubes needed to hold every ``premise`` cube, or None
    when the premise is not shown to imply the conclusion."""
    used: frozenset[int] = frozenset()
    for a in premise:
        got = cube_covered(a, conclusion, kinds)
        if got is None:
            return None
        used |= got
    return used
