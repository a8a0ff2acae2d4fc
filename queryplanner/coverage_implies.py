"""Implication between normalized conditions: is every row of A also a row of B1 or B2 ...?

A cube is a box (one value set per column) plus opaque atoms, so "A implies the union of the
Bs" is box-in-union-of-boxes. ``cube_covered`` decides it by splitting: when no single B holds
A, cut A along one column of a B into the part inside that B and the rest, and decide each part.
That finds unions such as ``project = 1`` plus ``project = 2`` holding
``project IN (1, 2) AND status = 'todo'``, and ``x < 5`` plus ``x >= 5`` holding ``x > 0``.

Opaque atoms are never split: a B with an atom that A lacks is dropped, so the answer can only
err towards "not implied". Splitting is bounded by a budget of steps and of cube visits;
running out means "no".
"""

from __future__ import annotations

from collections.abc import Sequence

from . import intervals as iv
from .coverage_normal import ColumnKinds, ColumnSet, Cube, intersect_sets, subset_sets

SPLIT_BUDGET = 256
VISIT_BUDGET = 1024


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
        mine = a.get(name)
        if mine.null and cs.null and name not in kinds.nonnull:
            continue
        if not iv.meets(mine.values, cs.values):
            return False
    return True


class _Budget:
    """Steps (cuts) and cube visits left. Steps bound the depth of the search; visits bound
    its time, which grows with steps times live cubes (a union of hundreds of ranges that
    tile a column would otherwise take tens of milliseconds to prove or refute)."""

    __slots__ = ("left", "visits")

    def __init__(self, steps: int, visits: int) -> None:
        self.left = steps
        self.visits = visits


def cube_covered(
    a: Cube, bs: Sequence[Cube], kinds: ColumnKinds, budget: int = SPLIT_BUDGET
) -> frozenset[int] | None:
    """The indexes of the ``bs`` that together hold ``a``, or None when that is not shown."""
    for i, b in enumerate(bs):
        if cube_within(a, b, kinds):
            return frozenset((i,))
    live = [(i, b) for i, b in enumerate(bs) if b.atoms <= a.atoms and cubes_meet(a, b, kinds)]
    if not live or _escapes(a, [b for _, b in live], kinds):
        return None
    return _covered(a, live, kinds, _Budget(budget, VISIT_BUDGET))


_UNKNOWN = object()


def _beyond(values: list[object], up: bool) -> object:
    """A value of the same type as ``values`` above (or below) all of them, or _UNKNOWN."""
    if not values or any(type(v) is not type(values[0]) for v in values):
        return _UNKNOWN
    edge: object = max(values) if up else min(values)  # type: ignore[type-var]
    if isinstance(edge, str):
        return edge + "\0" if up else ("" if edge else _UNKNOWN)
    if isinstance(edge, int | float) and not isinstance(edge, bool):
        return edge + 1 if up else edge - 1
    return _UNKNOWN


def _witness_values(a: Cube, name: str, bs: Sequence[Cube], kinds: ColumnKinds) -> list[object]:
    """A few values (None for NULL) that a row of ``a`` can take in column ``name``."""
    mine = a.get(name)
    if any(atom.column == name for atom in a.atoms):
        return [_UNKNOWN]  # a LIKE atom restricts it in ways the value set does not show
    out: list[object] = []
    if mine.null and name not in kinds.nonnull:
        out.append(None)
    discrete = name in kinds.discrete
    for part in mine.values[:3]:
        if part.lo_closed:
            out.append(part.lo)
            if discrete and part.hi_closed and part.hi != part.lo:
                out.append(part.hi)  # a run of integers: its two ends are both candidates
        elif part.hi_closed:
            out.append(part.hi)
    if not out and mine.values == iv.ALL:
        # Any value of the column's type will do: one above, or below, every value the bs
        # mention as a bound.
        parts = [p for b in bs for p in b.get(name).values]
        for up, bounds in ((True, [p.hi for p in parts if p.hi_closed]),
                           (False, [p.lo for p in parts if p.lo_closed])):
            value = _beyond(bounds, up)
            if value is not _UNKNOWN:
                out.append(value)
    return out or [_UNKNOWN]


def _holds(cs: ColumnSet, value: object, name: str, kinds: ColumnKinds) -> bool:
    if value is None:
        return cs.null and name not in kinds.nonnull
    return iv.contains(cs.values, value)


def _escapes(a: Cube, bs: Sequence[Cube], kinds: ColumnKinds, tries: int = 4) -> bool:
    """Is there a row of ``a`` in none of the ``bs``? Checked on a few corner rows of ``a``;
    False means only "not found", so the full search still decides."""
    names = sorted({name for b in bs for name, _ in b.columns})
    options = {name: _witness_values(a, name, bs, kinds) for name in names}
    for k in range(tries):
        row = {name: vals[k % len(vals)] for name, vals in options.items()}
        if all(
            any(row[name] is not _UNKNOWN
                and not _holds(cs, row[name], name, kinds)
                for name, cs in b.columns)
            for b in bs
        ):
            return True
    return False


def _meets_on(mine: ColumnSet, b: Cube, name: str, kinds: ColumnKinds) -> bool:
    """``cubes_meet`` for one column (the others are known to meet)."""
    cs = b.get(name)
    if mine.null and cs.null and name not in kinds.nonnull:
        return True
    return iv.meets(mine.values, cs.values)


def _covered(
    a: Cube, bs: list[tuple[int, Cube]], kinds: ColumnKinds, budget: _Budget,
    changed: str | None = None,
) -> frozenset[int] | None:
    """``cube_covered``'s search. Every cube of ``bs`` meets the ``a`` this was called for,
    except perhaps in column ``changed``, the only one its caller cut (so only that column
    needs a second look: a long chain of cuts stays linear per step)."""
    budget.left -= 1
    budget.visits -= len(bs)
    if budget.left < 0 or budget.visits < 0:
        return None
    if changed is None:
        live = bs
    else:
        mine = a.get(changed)
        live = [(i, b) for i, b in bs if _meets_on(mine, b, changed, kinds)]
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
            part = a.with_column(name, inside)
            # b0 comes first among the live cubes, so when it holds the part, the search
            # would answer {i0}: skip the visit.
            if cube_within(part, b0, kinds):
                used_in = frozenset((i0,))
            else:
                used_in = _covered(part, live, kinds, budget, name)
        if used_in is None:
            return None
        if _none(outside, name, kinds):
            return used_in
        rest = [(i, b) for i, b in live if i != i0]
        used_out = _covered(a.with_column(name, outside), rest, kinds, budget, name)
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
