"""Sets of non-NULL column values as unions of intervals, for coverage's implication checks.

A ``ValueSet`` is a sorted tuple of disjoint intervals over one column's totally ordered domain
(numbers, strings in code-point order, booleans, timestamps; the order ``predicate`` and DuckDB
use). Every comparison and IN list of a condition is one exactly, so implication between
conditions on a column becomes set inclusion. NULL is never in a ``ValueSet``: coverage keeps
"may be NULL" as a separate flag.

Discrete domains (integer and boolean columns) normalize open bounds to closed ones
(``x > 1`` is ``x >= 2``), so ``x > 1`` and ``x >= 2`` are recognised as the same set. Other
domains are treated as dense; that only ever makes a set look larger than it is, which keeps
every "A is inside B" answer sound.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple


@functools.total_ordering
class _Infinity:
    """Below (or above) every value of every domain."""

    __slots__ = ("sign",)

    def __init__(self, sign: int) -> None:
        self.sign = sign

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Infinity) and other.sign == self.sign

    def __lt__(self, other: object) -> bool:
        if isinstance(other, _Infinity):
            return self.sign < other.sign
        return self.sign < 0

    def __hash__(self) -> int:
        return self.sign

    def __repr__(self) -> str:
        return "-inf" if self.sign < 0 else "+inf"


NEG_INF: Any = _Infinity(-1)
POS_INF: Any = _Infinity(1)


class Interval(NamedTuple):
    lo: Any
    lo_closed: bool
    hi: Any
    hi_closed: bool

    @property
    def is_point(self) -> bool:
        return self.lo_closed and self.hi_closed and self.lo == self.hi


ValueSet = tuple[Interval, ...]

EMPTY: ValueSet = ()
ALL: ValueSet = (Interval(NEG_INF, False, POS_INF, False),)


def _empty(i: Interval) -> bool:
    return i.lo > i.hi or (i.lo == i.hi and not (i.lo_closed and i.hi_closed))


def _discrete(i: Interval) -> Interval:
    lo, lo_closed, hi, hi_closed = i
    if not lo_closed and not isinstance(lo, _Infinity):
        lo, lo_closed = lo + 1, True
    if not hi_closed and not isinstance(hi, _Infinity):
        hi, hi_closed = hi - 1, True
    return Interval(lo, lo_closed, hi, hi_closed)


def _clean(parts: list[Interval], discrete: bool) -> ValueSet:
    """Drop empty intervals, close discrete bounds, sort and merge overlapping/adjacent ones."""
    if discrete:
        parts = [_discrete(p) for p in parts]
    parts = [p for p in parts if not _empty(p)]
    if len(parts) <= 1:
        return tuple(parts)
    parts.sort(key=lambda p: (p.lo, not p.lo_closed))
    out = [parts[0]]
    for p in parts[1:]:
        last = out[-1]
        touches = p.lo < last.hi or (p.lo == last.hi and (p.lo_closed or last.hi_closed))
        if discrete and not touches and last.hi_closed and p.lo_closed:
            touches = not isinstance(last.hi, _Infinity) and last.hi + 1 == p.lo
        if touches:
            if (p.hi, p.hi_closed) > (last.hi, last.hi_closed):
                out[-1] = Interval(last.lo, last.lo_closed, p.hi, p.hi_closed)
        else:
            out.append(p)
    return tuple(out)


def compare_set(op: str, value: Any, discrete: bool) -> ValueSet:
    """The non-NULL values ``v`` for which ``v <op> value`` is true."""
    if op == "=":
        parts = [Interval(value, True, value, True)]
    elif op == "!=":
        parts = [Interval(NEG_INF, False, value, False), Interval(value, False, POS_INF, False)]
    elif op == "<":
        parts = [Interval(NEG_INF, False, value, False)]
    elif op == "<=":
        parts = [Interval(NEG_INF, False, value, True)]
    elif op == ">":
        parts = [Interval(value, False, POS_INF, False)]
    elif op == ">=":
        parts = [Interval(value, True, POS_INF, False)]
    else:
        raise ValueError(f"Unknown comparison operator {op!r}.")
    return _clean(parts, discrete)


def points(values: tuple[Any, ...], discrete: bool) -> ValueSet:
    return _clean([Interval(v, True, v, True) for v in set(values)], discrete)


def half_open(lo: Any, hi: Any) -> ValueSet:
    """``lo <= v < hi`` (``hi`` may be ``POS_INF``)."""
    return _clean([Interval(lo, True, hi, False)], False)


def complement(a: ValueSet, discrete: bool) -> ValueSet:
    out: list[Interval] = []
    lo, lo_closed = NEG_INF, False
    for p in a:
        out.append(Interval(lo, lo_closed, p.lo, not p.lo_closed))
        lo, lo_closed = p.hi, not p.hi_closed
    out.append(Interval(lo, lo_closed, POS_INF, False))
    return _clean(out, discrete)


def intersect(a: ValueSet, b: ValueSet, discrete: bool) -> ValueSet:
    if a is ALL or a == ALL:
        return b
    if b is ALL or b == ALL:
        return a
    out: list[Interval] = []
    for p in a:
        for r in b:
            lo = max((p.lo, not p.lo_closed), (r.lo, not r.lo_closed))
            hi = min((p.hi, p.hi_closed), (r.hi, r.hi_closed))
            out.append(Interval(lo[0], not lo[1], hi[0], hi[1]))
    return _clean(out, discrete)


def union(a: ValueSet, b: ValueSet, discrete: bool) -> ValueSet:
    return _clean([*a, *b], discrete)


def subset(a: ValueSet, b: ValueSet, discrete: bool) -> bool:
    """Is every value of ``a`` in ``b``?"""
    if not a or b == ALL:
        return True
    if a == b:
        return True
    # Each interval of a must sit inside one interval of b (b's parts are merged, so an
    # interval of a cannot straddle two of them without leaving a gap uncovered).
    for p in a:
        inside = False
        for r in b:
            lo_ok = (r.lo, not r.lo_closed) <= (p.lo, not p.lo_closed)
            hi_ok = (p.hi, p.hi_closed) <= (r.hi, r.hi_closed)
            if lo_ok and hi_ok:
                inside = True
                break
        if not inside:
            return False
    return True


def contains(a: ValueSet, value: Any) -> bool:
    """Is the (non-NULL) ``value`` in ``a``? Builds nothing: witness rows test many values."""
    for p in a:
        if p.lo is not NEG_INF and (value < p.lo or (value == p.lo and not p.lo_closed)):
            return False  # parts are sorted: every later one starts even higher
        if p.hi is POS_INF or value < p.hi or (value == p.hi and p.hi_closed):
            return True
    return False


def finite_points(a: ValueSet, discrete: bool, cap: int = 64) -> frozenset[Any] | None:
    """The values of ``a`` when it is a small finite set, else None."""
    out: set[Any] = set()
    for p in a:
        if p.is_point:
            out.add(p.lo)
        elif discrete and not isinstance(p.lo, _Infinity) and not isinstance(p.hi, _Infinity):
            if p.hi - p.lo >= cap:
                return None
            out.update(range(p.lo, p.hi + 1))
        else:
            return None
        if len(out) > cap:
            return None
    return frozenset(out)


def _later_lo(p: Interval, r: Interval) -> tuple[Any, bool]:
    if p.lo is NEG_INF:
        return r.lo, r.lo_closed
    if r.lo is NEG_INF or r.lo < p.lo:
        return p.lo, p.lo_closed
    if p.lo < r.lo:
        return r.lo, r.lo_closed
    return p.lo, p.lo_closed and r.lo_closed


def _earlier_hi(p: Interval, r: Interval) -> tuple[Any, bool]:
    if p.hi is POS_INF:
        return r.hi, r.hi_closed
    if r.hi is POS_INF or p.hi < r.hi:
        return p.hi, p.hi_closed
    if r.hi < p.hi:
        return r.hi, r.hi_closed
    return p.hi, p.hi_closed and r.hi_closed


def meets(a: ValueSet, b: ValueSet) -> bool:
    """Do two (cleaned) sets share a value? The hot test of coverage, so it builds nothing."""
    for p in a:
        for r in b:
            lo, lo_closed = _later_lo(p, r)
            hi, hi_closed = _earlier_hi(p, r)
            if lo is NEG_INF or hi is POS_INF:
                return True
            if lo < hi or (lo == hi and lo_closed and hi_closed):
                return True
    return False
