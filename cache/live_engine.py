"""Live local subscriptions maintained by the incremental engine (``queryplanner.ivm``).

A subscription answered from the local store (covered, or synced and complete) is *watched*:
``queryplanner.ivm.Engine`` holds its result, and every write to the store reaches it as row
changes (``cache.journal`` records them from the store's own statements). A write that touches
no watched subscription costs them nothing; one that does costs a window update (microseconds)
instead of re-running the query in DuckDB (milliseconds).

    live = LiveEngine(schema, store)
    live.watch(qid, bound_query)      # one scan: the engine hydrates it
    ... writes to the store ...
    live.flush()                      # push the recorded changes through (after each commit)
    live.take_changed()               # the watched queries whose result changed
    live.rows(qid)                    # the result in wire form, related children nested

Subscriptions that read a table marked *bulk* (too many changes to record, or a ``clear``) are
re-hydrated at the flush. Queries the engine cannot maintain stay on the re-run path
(``watch`` returns False), and so do results of more than ``max_rows`` occurrences: the engine
would hold them all as Python rows, and a snapshot re-encodes the whole result anyway, so for
a large result the DuckDB query is not the cost to avoid. Not thread-safe: the caller holds
``LocalState.lock``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from queryplanner import Query, QueryError, Schema
from queryplanner.ivm import DEFAULT_REHYDRATE_AFTER, Engine
from queryplanner.sql import compile_select
from queryplanner.wire import encode_row

from .ivm_store import LocalIvmStore
from .store import LocalStore
from .tables import query_tables

WireRows = tuple[dict[str, Any], ...]
MAX_ROWS = 10_000  # occurrences a watched result may have when it is first hydrated


class LiveEngine:
    def __init__(
        self,
        schema: Schema,
        store: LocalStore,
        *,
        rehydrate_after: int = DEFAULT_REHYDRATE_AFTER,
        max_rows: int = MAX_ROWS,
    ) -> None:
        self.schema = schema
        self.max_rows = max_rows
        self.store = store
        self.reader = LocalIvmStore(schema, store)
        self.engine = Engine(schema, self.reader, rehydrate_after=rehydrate_after)
        self._queries: dict[str, tuple[Query, frozenset[str]]] = {}
        self._changed: set[str] = set()
        self._wire: dict[str, WireRows] = {}
        self._refused: set[str] = set()  # not maintainable (shape or size): not asked again

    def __contains__(self, qid: object) -> bool:
        return qid in self._queries

    def __len__(self) -> int:
        return len(self._queries)

    def watch(self, qid: str, query: Query) -> bool:
        """Maintain ``query`` (bound) from now on; False when the engine cannot."""
        if qid in self._queries:
            return True
        if qid in self._refused:
            return False
        self.flush()  # recorded changes are already in the store this query is hydrated from
        if self._too_large(query):
            self._refused.add(qid)
            return False
        self.reader.begin()
        try:
            initial = self.engine.subscribe(qid, query)
        except QueryError:
            self._refused.add(qid)
            return False
        if len(initial.added) > self.max_rows:
            self.engine.unsubscribe(qid)
            self._refused.add(qid)
            return False
        self._queries[qid] = (query, query_tables(self.schema, query))
        self._watch_tables()
        return True

    def _too_large(self, query: Query) -> bool:
        """Counted in DuckDB first, so a large result is never read into Python for nothing."""
        limit = query.limit
        if query.aggregate is not None or (limit is not None and limit <= self.max_rows):
            return False
        c = compile_select(query, self.schema, columns=self.schema.table(query.table).primary_key)
        found = self.store.con.execute(f"SELECT count(*) FROM ({c.sql})", list(c.params)).fetchone()
        return found is not None and int(found[0]) > self.max_rows

    def unwatch(self, qid: str) -> None:
        self._refused.discard(qid)
        if self._queries.pop(qid, None) is None:
            return
        self.engine.unsubscribe(qid)
        self._wire.pop(qid, None)
        self._changed.discard(qid)
        self._watch_tables()

    def _watch_tables(self) -> None:
        self.store.journal.watched = frozenset().union(*(t for _, t in self._queries.values()))

    def flush(self) -> None:
        """Push the store's recorded changes through the engine (the store's state is final)."""
        changes, bulk = self.store.journal.take()
        if not changes and not bulk:
            return
        stale = [qid for qid, (_, tables) in self._queries.items() if tables & bulk] if bulk else []
        for qid in stale:
            self.engine.unsubscribe(qid)
        self.reader.begin()
        if changes:
            self._mark(self.engine.apply(changes))
        for qid in stale:
            self.engine.subscribe(qid, self._queries[qid][0])
        self._mark(stale)

    def _mark(self, qids: Mapping[str, Any] | Sequence[str]) -> None:
        for qid in qids:
            self._changed.add(qid)
            self._wire.pop(qid, None)

    def take_changed(self) -> set[str]:
        """The watched queries whose result changed since the last call."""
        self.flush()
        out, self._changed = self._changed, set()
        return out

    def rows(self, qid: str) -> WireRows:
        """The watched query's result in wire form (shared: do not mutate)."""
        self.flush()
        hit = self._wire.get(qid)
        if hit is None:
            query = self._queries[qid][0]
            rows = self.engine.rows(qid)
            if query.aggregate is None:
                hit = tuple(_wire(self.schema, query, r) for r in rows)
            else:
                hit = tuple(rows)
            self._wire[qid] = hit
        return hit


def _wire(schema: Schema, query: Query, row: Mapping[str, Any]) -> dict[str, Any]:
    """One nested engine row -> wire form (as ``LocalState.run`` gives it from DuckDB)."""
    t = schema.table(query.table)
    out = encode_row(t, row)
    for related in query.related:
        name = t.relationship(related.relationship).name
        child = row.get(name)
        if child is None:
            out[name] = None
        elif isinstance(child, list):
            out[name] = [_wire(schema, related.query, c) for c in child]
        else:
            out[name] = _wire(schema, related.query, child)
    return out
