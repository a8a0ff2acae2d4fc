"""``IncrementalMaintainer``: the seam's implementation on ``queryplanner.ivm``.

Each subscription is maintained by an ``ivm.Engine`` over the step's DuckDB snapshot
(``ivm_store``): a committed batch reaches only the subscriptions it affects, and a changed
row costs a few dictionary operations instead of re-running the query. Engines are shared by
every subscription with the same junction-table read rules (usually one engine in all); the
other read rules are ANDed into each query's AST (``apply_read_rules``) before it is given to
the engine, so the engine maintains exactly what the user may read.

The engine reports *occurrences* (a row at a place in the nested result); a subscription's
result is rows per (table, key). ``_Book`` counts the occurrences of each row (a user who
created two issues occurs under both) and adds what hydration sends but the engine does not
hold: the junction rows linking a many-to-many child to its parent (looked up under the
junction's rule). A row enters the result with its first occurrence and leaves with its last.

Fallbacks re-hydrate a subscription from the snapshot: when the engine decides a batch costs
more than re-running (``ResultChange.reset``), after a bulk load of a table it reads (the load
records no row images), and when the change log no longer reaches back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import duckdb

from queryplanner import Schema
from queryplanner.errors import QueryError
from queryplanner.ivm import (
    DEFAULT_REHYDRATE_AFTER,
    Engine,
    ResultChange,
    ResultRow,
    RowChange,
    coalesce,
)
from queryplanner.predicate import row_key
from queryplanner.rules import apply_read_rules
from queryplanner.schema import Column, Relationship
from queryplanner.wire import ENCODED_TYPES, encode_value

from .changelog import ChangeBatch
from .ivm_store import DuckStore, ScopedStore, junction_tables
from .mutations import VERSION_COLUMN
from .subscriptions import (
    RerunMaintainer,
    RowKey,
    SubDelta,
    Subscription,
    WireRow,
    diff,
    has_exists,
    internal_schema,
    no_pause,
)

log = logging.getLogger("querysync.server")

OccKey = tuple[Any, str, tuple[Any, ...]]  # (path, table, key) of an occurrence


class _Book:
    """One subscription's occurrences, and the rows (with counts) they put in its result."""

    __slots__ = ("counts", "links", "occ")

    def __init__(self) -> None:
        self.occ: dict[OccKey, Any] = {}
        self.links: dict[OccKey, tuple[RowKey, ...]] = {}  # junction rows of an occurrence
        self.counts: dict[RowKey, int] = {}


class IncrementalMaintainer:
    def __init__(self, schema: Schema, *, rehydrate_after: int = DEFAULT_REHYDRATE_AFTER) -> None:
        self.rehydrate_after = rehydrate_after
        self._engines: dict[str, tuple[Engine, ScopedStore, set[str]]] = {}
        self._levels: dict[tuple[str, tuple[str, ...]], tuple[str, Relationship]] = {}
        self._wire: dict[tuple[str, tuple[Any, ...], Any], WireRow] = {}
        self._encoders: dict[str, tuple[tuple[str, ...], tuple[Column, ...]]] = {}
        # Set by the sync engine during a step: serves the streams opened meanwhile. Called
        # inside a hydration, so it must not add or remove subscriptions.
        self.pause: Callable[[], None] = no_pause
        self._subs: dict[str, Subscription] = {}
        self.schema = schema
        self.store = DuckStore(schema, internal_schema(schema))
        self.junctions = junction_tables(schema)
        self._rerun: dict[int, Subscription] = {}  # subscriptions the engine refused
        self._fallback = RerunMaintainer()
        self._next = 0
        self.resets = 0  # subscriptions re-hydrated by a fallback (for tests and benchmarks)

    # -- the Maintainer protocol -----------------------------------------------------------

    def begin(self, cur: duckdb.DuckDBPyConnection, version: int) -> None:
        self.store.use(cur, version)
        self._wire.clear()

    def set_schema(self, schema: Schema) -> None:
        old = self.store
        self.schema = schema
        self.store = DuckStore(schema, internal_schema(schema))
        if old.cur is not None:  # mid-step: keep reading the snapshot
            self.store.use(old.cur, old.version)
        self.junctions = junction_tables(schema)
        self._engines = {}
        self._levels = {}
        self._wire = {}
        self._encoders = {}

    def add(self, cur: duckdb.DuckDBPyConnection, sub: Subscription) -> None:
        rules = {t: c for t, c in sub.rules.items() if t in self.junctions}
        scope = repr(sorted(rules.items(), key=lambda kv: kv[0]))
        slot = self._engines.get(scope)
        if slot is None:
            scoped = ScopedStore(self.store, rules)
            engine = Engine(
                self.schema, scoped, rehydrate_after=self.rehydrate_after,
                pause=lambda: self.pause(),
            )
            slot = self._engines[scope] = (engine, scoped, set())
        sid = f"s{self._next}"
        self._next += 1
        bound = apply_read_rules(sub.query, self.schema, sub.rules)
        try:
            if any(has_exists(c) for t, c in rules.items() if t in sub.tables):
                # The engine finds a child through its junction row in the new state; a rule
                # with EXISTS can hide that row by a change elsewhere (the issue turns private)
                # and the child would stay. Such subscriptions are re-run instead.
                raise QueryError("rules", "A junction table's read rule uses exists.")
            initial = slot[0].subscribe(sid, bound)
        except QueryError as exc:
            # A shape the engine does not maintain: this subscription is re-run instead.
            log.info("query %s is re-run after each commit: %s", sub.key[0], exc.reason)
            if not slot[2]:
                del self._engines[scope]
            sub.result = sub.run(cur)
            self._rerun[id(sub)] = sub
            return
        sub.ivm = (sid, scope, bound, _Book())
        slot[2].add(sid)
        self._subs[sid] = sub
        sub.result = {}
        if any(r.at for r in initial.added):
            self._apply(sub, initial)
        else:
            self._load(sub, initial)

    def remove(self, sub: Subscription) -> None:
        self._rerun.pop(id(sub), None)
        if sub.ivm is None:
            return
        sid, scope = sub.ivm[0], sub.ivm[1]
        self._subs.pop(sid, None)
        slot = self._engines.get(scope)
        if slot is not None:
            slot[0].unsubscribe(sid)
            slot[2].discard(sid)
            if not slot[2]:
                del self._engines[scope]
        sub.ivm = None

    def changes(
        self,
        cur: duckdb.DuckDBPyConnection,
        batches: Sequence[ChangeBatch] | None,
        subscriptions: Iterable[Subscription],
    ) -> Iterator[tuple[Subscription, SubDelta]]:
        if batches is None:
            for sub in list(subscriptions):
                yield from self._rehydrate(sub)
            return
        loads = {c.table for b in batches for c in b.changes if c.key is None}
        stale = {id(s): s for s in subscriptions if s.tables & loads}
        rows = [
            RowChange(c.table, c.old, c.row)
            for b in batches
            for c in b.changes
            if c.key is not None
        ]
        if rows:
            for engine, _, _ in list(self._engines.values()):
                for sid, change in engine.apply(rows).items():
                    sub = self._subs[sid]
                    if id(sub) in stale:
                        continue
                    if change.reset:
                        self.resets += 1
                    delta = self._apply(sub, change)
                    if delta:
                        yield sub, delta
            yield from self._junction_edits(rows, stale)
        for sub in stale.values():
            yield from self._rehydrate(sub)
        if self._rerun:
            rest = [s for s in self._rerun.values() if id(s) not in stale]
            yield from self._fallback.changes(cur, batches, rest)

    # -- occurrences -> rows ---------------------------------------------------------------

    def _rehydrate(self, sub: Subscription) -> Iterator[tuple[Subscription, SubDelta]]:
        self.resets += 1
        old = sub.result
        self.remove(sub)
        self.add(self.store.cur, sub)  # type: ignore[arg-type]
        delta = diff(old, sub.result)
        if delta:
            yield sub, delta

    def _load(self, sub: Subscription, change: ResultChange) -> None:
        """A new subscription's rows, all at the root: ``_apply`` without its diff and
        junction bookkeeping (a 100k-row hydration spends its time here)."""
        assert sub.ivm is not None
        book: _Book = sub.ivm[3]
        occ, counts, result, wire_row = book.occ, book.counts, sub.result, self._wire_row
        for n, r in enumerate(change.added, 1):
            k = (r.table, r.key)
            occ[((), r.table, r.key)] = r.row
            counts[k] = 1
            result[k] = wire_row(r.table, r.key, r.row)
            if n % 5000 == 0:
                self.pause()

    def _apply(self, sub: Subscription, change: ResultChange) -> SubDelta:
        assert sub.ivm is not None
        book: _Book = sub.ivm[3]
        before: dict[RowKey, WireRow | None] = {}
        if change.reset:
            before = dict(sub.result)
            for k in list(sub.result):
                del sub.result[k]
            book.occ.clear()
            book.links.clear()
            book.counts.clear()
        root = sub.query.table
        for r in change.removed:
            okey = (r.at, r.table, r.key)
            book.occ.pop(okey, None)
            self._dec(sub, book, (r.table, r.key), before)
            for jk in book.links.pop(okey, ()):
                self._dec(sub, book, jk, before)
        for r in change.edited:
            okey = (r.at, r.table, r.key)
            if okey in book.occ:
                book.occ[okey] = r.row
                k = (r.table, r.key)
                if k not in before:
                    before[k] = sub.result.get(k)
                sub.result[k] = self._wire_row(r.table, r.key, r.row)
        for r in sorted(change.added, key=_depth):  # parents before their children
            okey = (r.at, r.table, r.key)
            if okey in book.occ:
                continue
            book.occ[okey] = r.row
            self._inc(sub, book, (r.table, r.key), r.row, before)
            if r.at:
                links = self._junction_rows(sub, book, root, r, before)
                if links:
                    book.links[okey] = links
        delta = SubDelta()
        for k, old in before.items():
            new = sub.result.get(k)
            if old is None and new is not None:
                delta.added[k] = new
            elif new is None and old is not None:
                delta.removed.add(k)
            elif old is not None and new is not None and old[VERSION_COLUMN] != new[VERSION_COLUMN]:
                delta.changed[k] = new
        return delta

    def _inc(self, sub: Subscription, book: _Book, k: RowKey, row: Any,
             before: dict[RowKey, WireRow | None]) -> None:
        n = book.counts.get(k, 0)
        book.counts[k] = n + 1
        if n == 0:
            if k not in before:
                before[k] = sub.result.get(k)
            sub.result[k] = self._wire_row(k[0], k[1], row)

    def _dec(self, sub: Subscription, book: _Book, k: RowKey,
             before: dict[RowKey, WireRow | None]) -> None:
        n = book.counts.get(k, 0)
        if n <= 1:
            book.counts.pop(k, None)
            if k not in before:
                before[k] = sub.result.get(k)
            sub.result.pop(k, None)
        else:
            book.counts[k] = n - 1

    def _junction_rows(self, sub: Subscription, book: _Book, root: str, r: ResultRow,
                       before: dict[RowKey, WireRow | None]) -> tuple[RowKey, ...]:
        source, rel = self._level(root, tuple(name for _, name in r.at))
        if rel.through is None:
            return ()
        parent = book.occ.get((r.at[:-1], source, r.at[-1][0]))
        if parent is None:
            return ()
        assert sub.ivm is not None
        scoped = self._engines[sub.ivm[1]][1]
        svals = tuple(parent[c] for c in rel.source_columns)
        tvals = tuple(r.row[c] for c in rel.target_columns)
        through = rel.through
        jtable = self.schema.table(through.table)
        if any(v is None for v in tvals):
            return ()  # SQL equality: NULL links to nothing
        out = []
        # By the source columns only, then filtered here: the hydration prefetched exactly
        # these lookups (one query for all), where a lookup on both is one query per row.
        for j in scoped.lookup(through.table, through.source_columns, svals):
            if tuple(j[c] for c in through.target_columns) != tvals:
                continue
            jk = (through.table, row_key(jtable.primary_key, j))
            self._inc(sub, book, jk, j, before)
            out.append(jk)
        return tuple(out)

    def _junction_edits(
        self, rows: list[RowChange], stale: dict[int, Subscription]
    ) -> Iterator[tuple[Subscription, SubDelta]]:
        """A junction row changed (or was deleted and inserted again): the engine does not hold
        it, its holders do."""
        net = coalesce(self.schema, (c for c in rows if c.table in self.junctions))
        for c in (c for changes in net.values() for c in changes):
            if c.old is None or c.new is None:
                continue
            key = row_key(self.schema.table(c.table).primary_key, c.new)
            k = (c.table, key)
            for sub in self._subs.values():
                held = sub.result.get(k)
                if id(sub) in stale or held is None:
                    continue
                if held[VERSION_COLUMN] == c.new[VERSION_COLUMN]:
                    continue
                sub.result[k] = self._wire_row(c.table, key, c.new)
                yield sub, SubDelta(changed={k: sub.result[k]})

    def _level(self, root: str, names: tuple[str, ...]) -> tuple[str, Relationship]:
        """The (source table, relationship) of the child level reached by ``names``."""
        hit = self._levels.get((root, names))
        if hit is None:
            table = root
            rel = None
            for name in names:
                rel = self.schema.table(table).relationship(name)
                source, table = table, rel.target
            assert rel is not None
            hit = self._levels[(root, names)] = (source, rel)
        return hit

    def _wire_row(self, table: str, key: tuple[Any, ...], row: Any) -> WireRow:
        """The wire form of a row image, encoded once per step however many hold it."""
        wk = (table, key, row[VERSION_COLUMN])
        wire = self._wire.get(wk)
        if wire is None:
            # encode_row's result, without its per-column call for the plain columns (most):
            # a hydration encodes every row of the query once.
            enc = self._encoders.get(table)
            if enc is None:
                cols = self.schema.table(table).columns
                enc = self._encoders[table] = (
                    tuple(c.name for c in cols),
                    tuple(c for c in cols if c.type in ENCODED_TYPES),
                )
            # The store's rows hold exactly the columns and _v: copy them whole (in C).
            if len(row) == len(enc[0]) + 1:
                wire = dict(row)
            else:
                wire = {name: row[name] for name in enc[0] if name in row}
            for col in enc[1]:
                value = wire.get(col.name)
                if value is None:
                    continue
                if isinstance(value, datetime):
                    wire[col.name] = value.isoformat()  # encode_value's, without the call
                else:
                    wire[col.name] = encode_value(col, value)
            wire[VERSION_COLUMN] = row[VERSION_COLUMN]
            self._wire[wk] = wire
        return wire




def _depth(r: ResultRow) -> int:
    return len(r.at)
