"""Conditions in disjunctive normal form over per-column value sets, for coverage.

``normalize(cond, discrete)`` turns a bound condition into a tuple of ``Cube``s whose union is
exactly the set of rows for which the condition is TRUE. A cube constrains each column to a
``ColumnSet`` (may the value be NULL? which non-NULL values?) and carries the opaque atoms
(LIKE patterns that are not plain prefixes, EXISTS) that only identical atoms can imply.

NOT is pushed down with SQL's three-valued logic in mind: a row passes ``NOT c`` when ``c`` is
FALSE, not merely "not TRUE". For a comparison that is the complement among non-NULL values:
``NOT (a = 1)`` keeps exactly the rows of ``a != 1`` and never a row where ``a`` IS NULL.

The number of cubes is capped (``MAX_CUBES``): past it ``normalize`` returns None and coverage
answers "not covered", which is always safe.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import intervals as iv
from .query import And, Compare, Condition, Exists, InList, IsNull, Like, Not, Or, condition_id

MAX_CUBES = 64


@dataclass(frozen=True)
class ColumnKinds:
    """What normalization needs to know about a table's columns."""

    discrete: frozenset[str]  # integer and boolean columns: open bounds can be closed
    nonnull: frozenset[str]  # columns that are never NULL


@dataclass(frozen=True)
class ColumnSet:
    """The values a column may take: NULL when ``null``, and the non-NULL ``values``."""

    null: bool
    values: iv.ValueSet

    @property
    def empty(self) -> bool:
        return not self.null and not self.values


ANY = ColumnSet(True, iv.ALL)
NOT_NULL = ColumnSet(False, iv.ALL)
ONLY_NULL = ColumnSet(True, iv.EMPTY)


@dataclass(frozen=True)
class Atom:
    """An opaque condition (LIKE or EXISTS) known by a canonical key; implies its column is
    not NULL when ``column`` is set."""

    key: tuple[Any, ...]
    column: str | None
    exists: Exists | None = None


@dataclass(frozen=True)
class Cube:
    columns: tuple[tuple[str, ColumnSet], ...]  # sorted by column name
    atoms: frozenset[Atom]

    def get(self, column: str) -> ColumnSet:
        for name, cs in self.columns:
            if name == column:
                return cs
        return ANY

    def with_column(self, column: str, cs: ColumnSet) -> Cube:
        """This cube with ``column`` held to ``cs`` instead."""
        cols = dict(self.columns)
        cols[column] = cs
        return Cube(tuple(sorted(cols.items())), self.atoms)


TRUE_CUBE = Cube((), frozenset())


def intersect_sets(a: ColumnSet, b: ColumnSet, discrete: bool) -> ColumnSet:
    return ColumnSet(a.null and b.null, iv.intersect(a.values, b.values, discrete))


def subset_sets(a: ColumnSet, b: ColumnSet, discrete: bool) -> bool:
    return (b.null or not a.null) and iv.subset(a.values, b.values, discrete)


def meet(a: Cube, b: Cube, kinds: ColumnKinds) -> Cube | None:
    """The intersection of two cubes, or None when it is empty."""
    merged = dict(a.columns)
    for name, cs in b.columns:
        if name in merged:
            cs = intersect_sets(merged[name], cs, name in kinds.discrete)
            if not cs.values and (not cs.null or name in kinds.nonnull):
                return None
        merged[name] = cs
    return Cube(tuple(sorted(merged.items())), a.atoms | b.atoms)


def _single(column: str, cs: ColumnSet, nonnull: frozenset[str]) -> tuple[Cube, ...]:
    if column in nonnull:
        # The column is never NULL, so "may be NULL" costs nothing and lets a cube without
        # this column (ANY) sit inside one that only bounds its values.
        if not cs.values:
            return ()
        cs = ColumnSet(True, cs.values)
    return () if cs.empty else (Cube(((column, cs),), frozenset()),)


def _like_prefix(pattern: str) -> tuple[str, bool] | None:
    """(literal, exact) when ``pattern`` is a plain literal (exact) or ``literal%`` followed
    only by more ``%``; None for any other pattern."""
    chars: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            # predicate.like_regex: a backslash escapes the next character, a trailing one
            # is itself literal.
            chars.append(pattern[i + 1] if i + 1 < n else "\\")
            i += 2
            continue
        if ch == "_":
            return None
        if ch == "%":
            return ("".join(chars), False) if all(c == "%" for c in pattern[i:]) else None
        chars.append(ch)
        i += 1
    return ("".join(chars), True)


def _prefix_upper(prefix: str) -> Any:
    """The least string above every string starting with ``prefix`` (code-point order)."""
    stripped = prefix.rstrip(chr(0x10FFFF))
    if not stripped:
        return iv.POS_INF
    return stripped[:-1] + chr(ord(stripped[-1]) + 1)


def _like(cond: Like, positive: bool, nonnull: frozenset[str]) -> tuple[Cube, ...]:
    keep = positive != cond.negated  # does the row need the pattern to match?
    literal = None if cond.case_insensitive else _like_prefix(cond.pattern)
    if literal is not None:
        prefix, exact = literal
        # Strings are compared by code point here, in predicate and in DuckDB's default
        # binary collation, so "starts with p" is exactly p <= s < next(p).
        if exact:
            matched = iv.points((prefix,), False)
        else:
            matched = iv.half_open(prefix, _prefix_upper(prefix))
        values = matched if keep else iv.complement(matched, False)
        return _single(cond.column, ColumnSet(False, values), nonnull)
    key = ("like", cond.column, cond.pattern, cond.case_insensitive, not keep)
    atom = Atom(key, cond.column)
    cs = ANY if cond.column in nonnull else NOT_NULL
    return (Cube(((cond.column, cs),), frozenset((atom,))),)


def _exists(cond: Exists, positive: bool) -> tuple[Cube, ...]:
    negated = cond.negated == positive
    key = ("exists", cond.relationship, negated, condition_id(cond.where))
    atom = Atom(key, None, Exists(cond.relationship, cond.where, negated))
    return (Cube((), frozenset((atom,))),)


def _product(
    parts: Iterable[tuple[Cube, ...] | None], kinds: ColumnKinds
) -> tuple[Cube, ...] | None:
    acc: tuple[Cube, ...] | None = (TRUE_CUBE,)
    for part in parts:
        if part is None or acc is None:
            return None
        nxt = []
        for a in acc:
            for b in part:
                m = meet(a, b, kinds)
                if m is not None:
                    nxt.append(m)
        if len(nxt) > MAX_CUBES:
            return None
        acc = tuple(nxt)
        if not acc:
            return ()
    return acc


def _sum(parts: Iterable[tuple[Cube, ...] | None]) -> tuple[Cube, ...] | None:
    out: list[Cube] = []
    for part in parts:
        if part is None:
            return None
        out.extend(part)
        if len(out) > MAX_CUBES:
            return None
    return tuple(dict.fromkeys(out))


def _dnf(cond: Condition, positive: bool, kinds: ColumnKinds) -> tuple[Cube, ...] | None:
    discrete, nonnull = kinds.discrete, kinds.nonnull
    if isinstance(cond, Compare):
        vs = iv.compare_set(cond.op, cond.value, cond.column in discrete)
        if not positive:
            vs = iv.complement(vs, cond.column in discrete)
        return _single(cond.column, ColumnSet(False, vs), nonnull)
    if isinstance(cond, InList):
        vs = iv.points(cond.values, cond.column in discrete)
        if positive == cond.negated:
            vs = iv.complement(vs, cond.column in discrete)
        return _single(cond.column, ColumnSet(False, vs), nonnull)
    if isinstance(cond, IsNull):
        cs = ONLY_NULL if positive != cond.negated else NOT_NULL
        return _single(cond.column, cs, nonnull)
    if isinstance(cond, Like):
        return _like(cond, positive, nonnull)
    if isinstance(cond, Exists):
        return _exists(cond, positive)
    if isinstance(cond, Not):
        return _dnf(cond.term, not positive, kinds)
    if isinstance(cond, And | Or):
        parts = (_dnf(t, positive, kinds) for t in cond.terms)
        # NOT (a AND b) is FALSE-of-a OR FALSE-of-b, and dually: De Morgan holds in 3VL.
        if isinstance(cond, And) == positive:
            return _product(parts, kinds)
        return _sum(parts)
    raise TypeError(f"not a condition: {cond!r}")


@functools.lru_cache(maxsize=8192)
def normalize(cond: Condition | None, kinds: ColumnKinds) -> tuple[Cube, ...] | None:
    """The cubes whose union is the rows where ``cond`` is TRUE (None: too complex)."""
    if cond is None:
        return (TRUE_CUBE,)
    return _dnf(cond, True, kinds)
