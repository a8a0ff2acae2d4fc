"""The byte budget: which rows the local store holds, who holds them, and what to evict.

Pure bookkeeping, no I/O: the client asks it for decisions and then does the deletes in DuckDB.

- Every row in the store is counted with ``queryplanner.wire.row_bytes`` (encoded value sizes
  plus a fixed per-row and per-value overhead, see docs/client.md). ``bytes_held`` is their sum.
- Rows are reference-counted by the queries whose (local) result contains them; a row no query
  holds is garbage and is returned by ``unreferenced()`` for deletion.
- Whole queries are the eviction unit. Active (subscribed) queries are *pinned*; inactive ones
  sit in a ``cachetools.LRUCache`` that only gives the least-recently-used order, plus an
  optional per-query deadline (TTL) on the injected clock.
- ``make_room(extra)`` evicts inactive queries, least recently used first, until ``extra`` more
  bytes fit. When even that is not enough, the pinned set itself is too big: ``demote(extra)``
  takes pinned queries out of the local store (newest first, so long-lived subscriptions stay
  local) and the client serves them from the server. A demoted query is never re-admitted while
  it stays subscribed, which is what keeps an oversized active set from thrashing.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache

RowId = tuple[str, tuple[Any, ...]]
"""A row's identity: (table, primary key tuple)."""


@dataclass(frozen=True)
class Usage:
    """A snapshot of the cache's use of its budget (the cache-usage observable emits these)."""

    bytes_held: int
    budget_bytes: int
    rows: int
    queries: int
    pinned: int
    demoted: tuple[str, ...] = ()
    warning: str | None = None
    pending_bytes: int = 0  # the optimistic layer's bytes on top of ``bytes_held``


@dataclass
class _Entry:
    members: set[RowId]
    pinned: bool
    ttl: float | None
    pinned_at: int  # activation sequence number: demotion takes the newest first


class Budget:
    def __init__(self, budget_bytes: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, not {budget_bytes}.")
        self.budget_bytes = budget_bytes
        self._clock = clock
        self._sizes: dict[RowId, int] = {}
        self._refs: dict[RowId, int] = {}
        self._orphans: set[RowId] = set()  # held rows no query holds: GC without a full scan
        self._queries: dict[str, _Entry] = {}
        self._lru: LRUCache[str, None] = LRUCache(maxsize=math.inf)
        self._deadlines: dict[str, float] = {}
        self._seq = 0
        self.bytes_held = 0
        # What the optimistic (pending) layer adds to the store beyond the server rows counted
        # in ``bytes_held`` (set by the local state after laying the layer): evictions make
        # room for it too, so the store as a whole stays within the budget.
        self.pending_bytes = 0

    # -- rows ----------------------------------------------------------------------------

    def put_rows(self, sizes: Mapping[RowId, int]) -> None:
        """Rows written to the store (insert or replace) with their byte estimates."""
        # Locals in the loop: a hydration puts 100k rows (set operations instead were slower).
        held, refs, orphan = self._sizes, self._refs, self._orphans.add
        grew = 0
        for rid, size in sizes.items():
            grew += size - held.get(rid, 0)
            held[rid] = size
            if rid not in refs:
                orphan(rid)
        self.bytes_held += grew

    def growth(self, sizes: Mapping[RowId, int]) -> int:
        """How many bytes writing rows of these sizes adds to ``bytes_held``."""
        return sum(sizes.values()) - sum(map(self._sizes.get, sizes, itertools.repeat(0)))

    def holds_any(self, ids: Iterable[RowId]) -> bool:
        return not self._sizes.keys().isdisjoint(ids)

    def drop_rows(self, ids: Iterable[RowId]) -> None:
        """Rows deleted from the store."""
        for rid in ids:
            size = self._sizes.pop(rid, None)
            self._orphans.discard(rid)
            if size is not None:
                self.bytes_held -= size

    def size_of(self, rid: RowId) -> int:
        return self._sizes.get(rid, 0)

    def holds(self, rid: RowId) -> bool:
        return rid in self._sizes

    def rows(self) -> Iterable[RowId]:
        return self._sizes.keys()

    def refcount(self, rid: RowId) -> int:
        return self._refs.get(rid, 0)

    def unreferenced(self, protect: Iterable[RowId] = ()) -> list[RowId]:
        """Rows held that no query holds (and not in ``protect``): garbage to delete."""
        keep = set(protect)
        return [rid for rid in self._orphans if rid not in keep]

    # -- queries -------------------------------------------------------------------------

    def __contains__(self, qid: object) -> bool:
        return qid in self._queries

    def queries(self) -> list[str]:
        return list(self._queries)

    def members(self, qid: str) -> frozenset[RowId]:
        return frozenset(self._queries[qid].members)

    def is_pinned(self, qid: str) -> bool:
        return self._queries[qid].pinned

    def pinned(self) -> list[str]:
        return [q for q, e in self._queries.items() if e.pinned]

    def lru_order(self) -> list[str]:
        """Inactive queries, least recently used first (the eviction order)."""
        return list(self._lru.keys())

    def add_query(self, qid: str, *, pinned: bool, ttl: float | None = None) -> None:
        if qid in self._queries:
            if pinned:
                self.pin(qid)
            return
        self._seq += 1
        self._queries[qid] = _Entry(set(), pinned, ttl, self._seq)
        if not pinned:
            self._make_inactive(qid, ttl)

    def pin(self, qid: str) -> None:
        entry = self._queries[qid]
        if not entry.pinned:
            self._seq += 1
            entry.pinned, entry.pinned_at = True, self._seq
            self._lru.pop(qid, None)
            self._deadlines.pop(qid, None)

    def unpin(self, qid: str, ttl: float | None = None) -> None:
        entry = self._queries[qid]
        entry.pinned = False
        entry.ttl = ttl if ttl is not None else entry.ttl
        self._make_inactive(qid, entry.ttl)

    def touch(self, qid: str) -> None:
        """Mark an inactive query as just used (it moves to the back of the eviction order)."""
        if qid in self._lru:
            # Re-insert rather than read: LRUCache iterates in insertion order, so this keeps
            # iteration order == recency order (make_room walks it).
            del self._lru[qid]
            self._lru[qid] = None
            entry = self._queries[qid]
            if entry.ttl is not None:
                self._deadlines[qid] = self._clock() + entry.ttl

    def _make_inactive(self, qid: str, ttl: float | None) -> None:
        self._lru.pop(qid, None)
        self._lru[qid] = None
        if ttl is not None:
            self._deadlines[qid] = self._clock() + ttl
        else:
            self._deadlines.pop(qid, None)

    def set_members(self, qid: str, ids: Iterable[RowId]) -> None:
        """The rows a query's local result holds now (the refcounts follow)."""
        entry = self._queries[qid]
        new = set(ids)
        for rid in entry.members - new:
            self._decref(rid)
        for rid in new - entry.members:
            self._refs[rid] = self._refs.get(rid, 0) + 1
            self._orphans.discard(rid)
        entry.members = new

    def update_members(
        self, qid: str, *, added: Iterable[RowId] = (), removed: Iterable[RowId] = ()
    ) -> None:
        """Change a query's member set by a delta (cheaper than ``set_members`` for a few rows
        of a large result)."""
        members = self._queries[qid].members
        for rid in removed:
            if rid in members:
                members.discard(rid)
                self._decref(rid)
        refs, add, adopt = self._refs, members.add, self._orphans.discard
        for rid in added:
            if rid not in members:
                add(rid)
                refs[rid] = refs.get(rid, 0) + 1
                adopt(rid)

    def holds_member(self, qid: str, rid: RowId) -> bool:
        return rid in self._queries[qid].members

    def _decref(self, rid: RowId) -> None:
        n = self._refs[rid] - 1
        if n:
            self._refs[rid] = n
        else:
            del self._refs[rid]
            if rid in self._sizes:
                self._orphans.add(rid)

    def remove_query(self, qid: str) -> list[RowId]:
        """Forget a query; returns the held rows no query holds any more (delete them)."""
        entry = self._queries.pop(qid)
        self._lru.pop(qid, None)
        self._deadlines.pop(qid, None)
        freed = []
        for rid in entry.members:
            self._decref(rid)
            if rid not in self._refs and rid in self._sizes:
                freed.append(rid)
        return freed

    # -- decisions -----------------------------------------------------------------------

    def exclusive_bytes(self, qid: str) -> int:
        """Bytes that evicting ``qid`` would free: its rows no other query holds."""
        return sum(
            self._sizes.get(rid, 0) for rid in self._queries[qid].members if self._refs[rid] == 1
        )

    def expired(self) -> list[str]:
        """Inactive queries whose TTL has run out on the injected clock."""
        now = self._clock()
        return [q for q, deadline in self._deadlines.items() if deadline <= now]

    def make_room(self, extra: int) -> list[str]:
        """Inactive queries to evict, LRU first, so that ``extra`` more bytes fit.

        Nothing is changed: the caller removes each with ``remove_query``. Returns every inactive
        query when even evicting all of them is not enough (then ``demote`` is next).
        """
        return self._release_until_fits(self._lru, extra)

    def demote(self, extra: int) -> list[str]:
        """Pinned queries to take out of the store, newest first, so ``extra`` more bytes fit."""
        pinned = sorted(self.pinned(), key=lambda q: self._queries[q].pinned_at, reverse=True)
        return self._release_until_fits(pinned, extra)

    def _release_until_fits(self, candidates: Iterable[str], extra: int) -> list[str]:
        """The shortest prefix of ``candidates`` whose release frees room for ``extra`` bytes
        (rows shared with queries that stay free nothing)."""
        need = self.bytes_held + self.pending_bytes + extra - self.budget_bytes
        chosen: list[str] = []
        if need <= 0:
            return chosen
        refs = dict(self._refs)
        for qid in candidates:
            chosen.append(qid)
            for rid in self._queries[qid].members:
                refs[rid] -= 1
                if refs[rid] == 0:
                    need -= self._sizes.get(rid, 0)
            if need <= 0:
                break
        return chosen

    def usage(self, demoted: Iterable[str] = (), warning: str | None = None) -> Usage:
        return Usage(
            self.bytes_held,
            self.budget_bytes,
            len(self._sizes),
            len(self._queries),
            sum(1 for e in self._queries.values() if e.pinned),
            tuple(demoted),
            warning,
            self.pending_bytes,
        )
