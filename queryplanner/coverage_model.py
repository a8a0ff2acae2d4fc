"""The values coverage works with: complete queries, coverage answers, the store protocol,
and the normal forms of complete queries' conditions (computed once, decisions are hot)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Protocol

from . import intervals as iv
from .coverage_normal import ColumnKinds, Cube, normalize
from .query import Condition, Query
from .schema import ColumnType, Schema


@dataclass(frozen=True)
class Normal:
    """A condition's normal form and the columns it pins to a few values (see ``pinned``)."""

    cubes: tuple[Cube, ...] | None
    pins: dict[str, frozenset[object]]
    # Nullable columns that every cube requires to be NOT NULL: such a complete query holds
    # none of q's rows where that column is NULL (a cheap reason to say "not covered").
    needs_value: frozenset[str]
    # Columns that at least one cube requires to be NOT NULL. A column outside this set may be
    # NULL in every branch, so a complete query that ``needs_value`` in it misses those rows.
    valued_somewhere: frozenset[str]


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

    def cached_normal(self, schema_hash: str) -> Normal | None:
        """The normal form if ``normal`` has computed it for that schema (the hot loop of a
        decision passes the hash it already holds)."""
        return self._normal.get(schema_hash)

    def normal(self, schema: Schema) -> Normal:
        """The normal form of the condition (computed once per schema: decisions are hot)."""
        found = self._normal.get(schema.hash)
        if found is None:
            found = normal_of(self.query.where, column_kinds(schema, self.query.table))
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


@functools.lru_cache(maxsize=4096)
def normal_of(cond: Condition | None, kinds: ColumnKinds) -> Normal:
    """The normal form of a condition with what decisions look up in it, cached by the
    condition itself: a client asks about the same few queries again and again (hashing a
    condition costs far less than its query id)."""
    cubes = normalize(cond, kinds)
    valued = frozenset(n for c in cubes or () for n, cs in c.columns if not cs.null)
    return Normal(cubes, pinned(cubes, kinds), needs_value(cubes, kinds), valued)


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


def needs_value(cubes: tuple[Cube, ...] | None, kinds: ColumnKinds) -> frozenset[str]:
    if not cubes:
        return frozenset()
    sets = [{n for n, cs in c.columns if not cs.null and n not in kinds.nonnull} for c in cubes]
    return frozenset(set.intersection(*sets))
