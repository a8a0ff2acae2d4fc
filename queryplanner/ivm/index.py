"""The subscription index: which subscriptions a changed root-table row may affect.

Per table, a subscription is filed under the first of these that its where allows (looking at
the top-level AND terms only, which every matching row must satisfy):

1. its ``column = value`` and ``column IN (...)`` terms: a hash index keyed by the sorted tuple
   of those columns (the *signature*) and then by the tuple of values (an IN term files one key
   per value; the product is capped, dropping the widest IN terms beyond it). A row is looked up
   once per signature present on the table, so the cost grows with the number of query shapes,
   not with the number of subscriptions;
2. a range term (``<``, ``<=``, ``>``, ``>=``): a sorted list of lower (or upper) bounds per
   column; a row's candidates are the bisected prefix (or suffix);
3. otherwise a scan list, tested against every change of the table.

The index only narrows: every candidate still evaluates its full predicate. Callers route both
images of a change, so a row moving *out* of a subscription reaches it through its old image.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Hashable
from typing import Any

from ..query import And, Compare, Condition, InList
from .changes import Row

_MAX_KEYS = 256
_LOWER = {">", ">="}
_UPPER = {"<", "<="}


class SubscriptionIndex:
    def __init__(self) -> None:
        self._hash: dict[str, dict[tuple[str, ...], dict[tuple[Any, ...], set[Hashable]]]] = {}
        self._ranges: dict[tuple[str, str, bool], list[tuple[Any, int]]] = {}
        self._range_subs: dict[int, Hashable] = {}
        self._scan: dict[str, set[Hashable]] = {}
        self._where: dict[Hashable, tuple[str, Any]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._where)

    def add(self, sub: Hashable, table: str, where: Condition | None) -> None:
        terms = where.terms if isinstance(where, And) else (() if where is None else (where,))
        eq: dict[str, tuple[Any, ...]] = {}
        for t in terms:
            if isinstance(t, Compare) and t.op == "=" and t.column not in eq:
                eq[t.column] = (t.value,)
            elif isinstance(t, InList) and not t.negated and t.column not in eq:
                eq[t.column] = tuple(set(t.values))
        while eq and _product(eq) > _MAX_KEYS:
            del eq[max(eq, key=lambda c: len(eq[c]))]
        if eq:
            cols = tuple(sorted(eq))
            by_vals = self._hash.setdefault(table, {}).setdefault(cols, {})
            keys = list(itertools.product(*(eq[c] for c in cols)))
            for vals in keys:
                by_vals.setdefault(vals, set()).add(sub)
            self._where[sub] = (table, ("hash", cols, keys))
            return
        for t in terms:
            if isinstance(t, Compare) and t.op in _LOWER | _UPPER:
                lower = t.op in _LOWER
                seq = next(self._seq)
                entries = self._ranges.setdefault((table, t.column, lower), [])
                bisect.insort(entries, (t.value, seq))
                self._range_subs[seq] = sub
                self._where[sub] = (table, ("range", (t.column, lower), (t.value, seq)))
                return
        self._scan.setdefault(table, set()).add(sub)
        self._where[sub] = (table, ("scan", None, None))

    def remove(self, sub: Hashable) -> None:
        entry = self._where.pop(sub, None)
        if entry is None:
            return
        table, (kind, where, what) = entry
        if kind == "hash":
            by_vals = self._hash[table][where]
            for vals in what:
                bucket = by_vals[vals]
                bucket.discard(sub)
                if not bucket:
                    del by_vals[vals]
            if not by_vals:
                del self._hash[table][where]
        elif kind == "range":
            column, lower = where
            entries = self._ranges[(table, column, lower)]
            entries.pop(bisect.bisect_left(entries, what))
            del self._range_subs[what[1]]
        else:
            self._scan[table].discard(sub)

    def candidates(self, table: str, row: Row, into: set[Hashable]) -> None:
        """Add to ``into`` every subscription on ``table`` that ``row`` may match."""
        for cols, by_vals in self._hash.get(table, {}).items():
            found = by_vals.get(tuple(row[c] for c in cols))
            if found:
                into.update(found)
        for (t, column, lower), entries in self._ranges.items():
            v = row[column] if t == table else None
            if v is None or not entries:
                continue
            if lower:
                hits = entries[: bisect.bisect_right(entries, (v, float("inf")))]
            else:
                hits = entries[bisect.bisect_left(entries, (v, -1)):]
            into.update(self._range_subs[seq] for _, seq in hits)
        scan = self._scan.get(table)
        if scan:
            into.update(scan)


def _product(eq: dict[str, tuple[Any, ...]]) -> int:
    n = 1
    for values in eq.values():
        n *= len(values)
    return n
