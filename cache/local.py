"""The local side of sync: server pokes, the optimistic pending layer and the budget, on one store.

``LocalState`` owns the ``LocalStore`` and the ``Budget`` and keeps them in step:

- ``apply_poke`` applies one server version atomically (one DuckDB transaction): the pending
  layer is lifted off, the poke's deletes and puts are written as Arrow batches, the rows each
  desired query holds follow the changed keys (``cache.membership``) so the refcounts follow,
  rows no query holds are deleted, the budget is enforced, and the remaining pending mutations are
  laid back on top (a rebase, as Replicache does).
- The budget is enforced before the write (inactive queries are evicted, LRU first, to make room
  for the poke's new bytes) and after it (if the pinned set alone is over the budget, the newest
  pinned queries are *demoted*: their rows leave the store and the client serves them from the
  server). So ``bytes_held <= budget_bytes`` holds at every commit.
- The optimistic pending layer is ``cache.pending.PendingLayer``.
- Live subscriptions answered locally are maintained by the incremental engine
  (``cache.live_engine``): every ``transaction()`` pushes the store's recorded row changes
  through it after the commit. ``run`` answers a watched query from the engine and keeps other
  hot answers in memory while the tables they read are unchanged.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
from cachetools import LRUCache

from queryplanner import ColumnType, Query, Schema, Table, parse_query
from queryplanner.coverage import CompleteQuery
from queryplanner.coverage_index import CoverageIndex
from queryplanner.protocol import Poke
from queryplanner.query import to_json
from queryplanner.sql import compile_row_sets, compile_select, nest_rows
from queryplanner.wire import decode_key, tuple_encoder
from queryplanner.wire_arrow import from_ipc

from .batch import RowBatch
from .budget import Budget, RowId
from .live_engine import LiveEngine
from .membership import Changed, Membership
from .pending import Pending, PendingLayer, wire_with_version
from .routing import StoreRows
from .store import LocalStore
from .tables import query_tables

ANSWER_CACHE_ROWS = 50_000
ISO_IN_SQL_FROM_ROWS = 500  # a query that may return more rows has DuckDB format timestamps


@dataclass
class Desired:
    """A query in the server's desired set (so its rows are synced into the store)."""

    query: Query
    qid: str
    ttl: float | None = None
    complete_at: int | None = None
    tables: frozenset[str] = frozenset()

    @property
    def json(self) -> dict[str, Any]:
        return to_json(self.query)


@dataclass
class PokeOutcome:
    evicted: list[str] = field(default_factory=list)
    demoted: list[str] = field(default_factory=list)
    tables: set[str] = field(default_factory=set)


class LocalState(PendingLayer):
    def __init__(self, schema: Schema, store: LocalStore, budget: Budget) -> None:
        self.schema = schema
        self.store = store
        self.budget = budget
        self.desired: dict[str, Desired] = {}
        self.pending: list[Pending] = []
        self.shadow: dict[RowId, dict[str, Any] | None] = {}
        self.overlay: dict[RowId, int] = {}  # bytes of each row a pending write laid (0: deleted)
        self.index = CoverageIndex(schema)
        self.membership = Membership(schema, store, budget)
        self.live = LiveEngine(schema, store)
        # Held by whoever uses the store and the budget (the client's worker thread while it
        # applies a version, the event loop otherwise).
        self.lock = threading.RLock()
        # query id -> (generation of each table read, rows); sized in rows, not answers.
        self.answers: LRUCache[str, tuple[tuple[tuple[str, int], ...], tuple[Any, ...]]] = LRUCache(
            maxsize=ANSWER_CACHE_ROWS, getsizeof=lambda v: 1 + len(v[1])
        )
        self.rows = StoreRows(schema, store, self.index)
        v = store.get_meta("version")
        self.version = int(v) if v else 0
        self._timestamp_pk = {
            t.name: any(t.column(k).type is ColumnType.TIMESTAMP for k in t.primary_key)
            for t in schema.tables
        }

    # -- reading -------------------------------------------------------------------------

    def run(self, query: Query) -> list[dict[str, Any]]:
        """The query's answer from the store, in wire form (nested ``related`` children).

        Hot answers are kept in memory (``answers``) and reused while none of the tables the
        query reads has been written since; callers must not mutate the rows they get.
        """
        qid = query.id
        if qid in self.live:
            return list(self.live.rows(qid))
        gens = self.store.generation
        hit = self.answers.get(qid)
        if hit is not None and all(gens[t] == g for t, g in hit[0]):
            return list(hit[1])
        stamp = tuple((t, gens[t]) for t in query_tables(self.schema, query))
        rows = self._run(query)
        if len(rows) < ANSWER_CACHE_ROWS:
            self.answers[qid] = (stamp, tuple(rows))
        return rows

    def _select_wire(
        self, table: str, sql: str, params: Sequence[Any], *, iso_timestamps: bool = False
    ) -> list[dict[str, Any]]:
        names, tuples = self.store.select_tuples(sql, params)
        encode = tuple_encoder(self.schema.table(table), names, iso_timestamps=iso_timestamps)
        return [encode(values) for values in tuples]

    def _run(self, query: Query) -> list[dict[str, Any]]:
        if not query.related:
            if query.aggregate is not None:
                c = compile_select(query, self.schema)
                return self.store.select(c.sql, c.params)
            # DuckDB formats a large result's timestamps faster than Python; for a small
            # window the formatting expressions cost more (~0.5 ms) than they save.
            iso = query.limit is None or query.limit > ISO_IN_SQL_FROM_ROWS
            c = compile_select(query, self.schema, iso_timestamps=iso)
            return self._select_wire(query.table, c.sql, c.params, iso_timestamps=iso)
        by_path: dict[str, list[dict[str, Any]]] = {}
        for rs in compile_row_sets(query, self.schema):
            by_path[rs.key] = self._select_wire(rs.table, rs.sql, rs.params)
        nested = nest_rows(query, self.schema, by_path)
        return [dict(r) for r in nested]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One store transaction; after its commit the watched subscriptions follow it."""
        try:
            with self.store.transaction():
                yield
        except BaseException:
            self.store.journal.invalidate()  # what it recorded was rolled back
            raise
        self.live.flush()

    def members(self, query: Query) -> set[RowId]:
        """The identities of every row the query's local result holds (children included)."""
        return self.membership.members(query)

    def row_id(self, table: Table, wire_key: Sequence[Any]) -> RowId:
        if self._timestamp_pk[table.name]:
            return (table.name, decode_key(table, list(wire_key)))
        return (table.name, tuple(wire_key))

    # -- desired queries -----------------------------------------------------------------

    def add_desired(self, query: Query, qid: str, *, pinned: bool, ttl: float | None) -> Desired:
        d = self.desired.get(qid)
        if d is None:
            d = Desired(query, qid, ttl, None, query_tables(self.schema, query))
            self.desired[qid] = d
            self.budget.add_query(qid, pinned=pinned, ttl=ttl)
            # Rows already in the store (from other queries) count for this one at once.
            self.budget.set_members(qid, self.members(query))
            self.save_desired()
        elif pinned:
            self.budget.pin(qid)
        return d

    def drop_desired(self, qids: Iterable[str]) -> None:
        """Forget queries (evicted, expired, demoted) and delete the rows only they held."""
        qids = list(qids)
        if not qids:
            return
        freed: list[RowId] = []
        for qid in qids:
            self.membership.forget(qid)
            self.desired.pop(qid, None)
            self.index.remove(qid)
            if qid in self.budget:
                freed.extend(self.budget.remove_query(qid))
        self._delete_rows([r for r in freed if r not in self.shadow])
        self.save_desired()

    def _delete_rows(self, ids: Sequence[RowId]) -> None:
        by_table: dict[str, list[tuple[Any, ...]]] = {}
        for table, key in ids:
            by_table.setdefault(table, []).append(key)
        for table, keys in by_table.items():
            self.store.delete_keys(table, keys)
        self.budget.drop_rows(ids)

    def collect_garbage(self) -> None:
        self._delete_rows(self.budget.unreferenced(protect=self.shadow))

    # -- pokes ---------------------------------------------------------------------------

    def apply_poke(self, poke: Poke, cursor: str | None) -> PokeOutcome:
        out = PokeOutcome()
        puts: list[tuple[RowBatch, list[RowId]]] = []
        sizes: dict[RowId, int] = {}
        dels: dict[str, list[RowId]] = {}
        changed: dict[str, set[tuple[Any, ...]]] = {}
        stored: dict[str, list[tuple[tuple[Any, ...], Mapping[str, Any]]]] = {}
        for name, wire_keys in poke.delete.items():
            t = self.schema.table(name)
            dels[name] = [self.row_id(t, k) for k in wire_keys]
            changed.setdefault(name, set()).update(k for _, k in dels[name])
            stored.setdefault(name, [])
        batches: list[tuple[RowBatch, list[Any] | None]] = [
            (RowBatch(self.schema.table(name), rows), rows)
            for name, rows in poke.put.items()
            if rows
        ]
        for name, blocks in poke.arrow.items():
            t = self.schema.table(name)
            arrow = pa.concat_tables([from_ipc(t, data) for data in blocks])
            batches.append((RowBatch.from_arrow(t, arrow), None))
        for batch, rows in batches:
            t = batch.table
            name = t.name
            keys = batch.keys()
            if self._timestamp_pk[name]:
                keys = [self.row_id(t, k)[1] for k in keys]
            ids = list(zip(itertools.repeat(name), keys))
            puts.append((batch, ids))
            sizes.update(zip(ids, batch.sizes(), strict=True))
            changed.setdefault(name, set()).update(keys)
            if rows is not None:
                # Wire rows: membership decodes only the timestamps a query's predicate reads.
                stored.setdefault(name, []).extend(zip(keys, rows, strict=True))
        for name in poke.arrow:
            stored.pop(name, None)  # no wire rows for Arrow blocks: DuckDB decides membership
        out.tables = {b.table.name for b, _ in puts} | set(dels)
        extra = self.budget.growth(sizes) - sum(
            self.budget.size_of(rid) for ids in dels.values() for rid in ids
        )
        with self.transaction():
            self._lift_pending()
            self.collect_garbage()
            out.evicted = self.budget.make_room(extra)
            self.drop_desired(out.evicted)
            for name, ids in dels.items():
                self.store.delete_keys(name, [k for _, k in ids])
                self.budget.drop_rows(ids)
            written: set[RowId] = set()
            for batch, ids in puts:
                # After the lift the store holds exactly the budget's rows: a batch of keys
                # none of which is held (a hydration's) needs no delete first.
                replace = self.budget.holds_any(ids) or not written.isdisjoint(ids)
                self.store.put_batch(batch, replace=replace)
                written.update(ids)
            for qid, v in poke.complete.items():
                d = self.desired.get(qid)
                if d is not None:
                    d.complete_at = v
                    self.index.remove(qid)
                    self.index.add(CompleteQuery(d.query, v, qid))
            self._refresh_members(changed, stored, sizes)
            self.version = max(self.version, poke.version)
            self._settle_pending(poke)
            self._lay_pending()
            # After the layer is back on top: its bytes count against the budget too.
            evicted, out.demoted = self._enforce_budget()
            out.evicted += evicted
            meta = {"shadow": self._shadow_doc(), "version": str(self.version), "cursor": cursor}
            if poke.complete or out.evicted or out.demoted:
                meta["desired"] = self._desired_doc()
            self.store.set_metas(meta)
        return out

    def _refresh_members(
        self,
        changed: Changed,
        stored: Mapping[str, Sequence[tuple[tuple[Any, ...], Mapping[str, Any]]]] | None = None,
        sizes: Mapping[RowId, int] | None = None,
    ) -> None:
        """The members after a write, then the rows no query holds deleted. ``sizes``: the
        written rows' sizes, counted after the members, so a row some query holds never passes
        through the orphans (a hydration's rows all would)."""
        self.membership.refresh(
            ((d.qid, d.query, d.tables) for d in self.desired.values()), changed, stored
        )
        if sizes:
            self.budget.put_rows(sizes)
        self.collect_garbage()

    def _enforce_budget(self) -> tuple[list[str], list[str]]:
        """After a write: evict, then demote, until the store (the server's rows and the
        pending layer) is within its budget again. Returns (evicted, demoted)."""
        evict = self.budget.make_room(0)
        self.drop_desired(evict)
        demoted = self.budget.demote(0)
        self.drop_desired(demoted)
        if self.budget.bytes_held > self.budget.budget_bytes:
            # Only rows no desired query holds can remain (pending writes): nothing else to drop.
            self.collect_garbage()
        return evict, demoted

    def apply_reset(self) -> None:
        """Protocol ``reset``: every server-derived row goes; pending writes stay on top."""
        with self.transaction():
            self._lift_pending()
            self.store.clear()
            self.budget.drop_rows(list(self.budget.rows()))
            for d in self.desired.values():
                d.complete_at = None
                self.index.remove(d.qid)
                self.budget.set_members(d.qid, ())
            self.store.set_meta("cursor", None)
            self.save_desired()
            self._lay_pending()

    # -- restart -------------------------------------------------------------------------

    def restore(self, outbox: Sequence[dict[str, Any]]) -> None:
        """After a restart: the server rows under the persisted shadow, the budget's record of
        every stored row, the desired queries, then the outbox laid back on top."""
        raw = self.store.get_meta("shadow")
        with self.transaction():
            if raw:
                for table, key, row in orjson.loads(raw):
                    self.shadow[self.row_id(self.schema.table(table), key)] = row
                self._lift_pending()
            for t in self.schema.tables:
                pk = t.primary_key
                stored = self.store.select(f'SELECT * FROM "{t.name}"')
                if not stored:
                    continue
                ids = [(t.name, tuple(r[k] for k in pk)) for r in stored]
                wire = [wire_with_version(t, r) for r in stored]
                self.budget.put_rows(dict(zip(ids, RowBatch(t, wire).sizes(), strict=True)))
            for doc in orjson.loads(self.store.get_meta("desired") or "[]"):
                query = parse_query(doc["query"], self.schema)
                d = self.add_desired(query, doc["id"], pinned=False, ttl=doc.get("ttl"))
                if doc.get("complete") is not None:
                    d.complete_at = int(doc["complete"])
                    self.index.add(CompleteQuery(query, d.complete_at, d.qid))
            self.collect_garbage()
            self.pending = [Pending(dict(b)) for b in outbox]
            self._lay_pending()

    def save_desired(self) -> None:
        self.store.set_meta("desired", self._desired_doc())

    def _desired_doc(self) -> str:
        doc = [
            {"id": d.qid, "query": d.json, "ttl": d.ttl, "complete": d.complete_at}
            for d in self.desired.values()
        ]
        return orjson.dumps(doc, default=str).decode()
