"""The engine: subscriptions in, batches of row changes in, result changes out.

    engine = Engine(schema, store)
    initial = engine.subscribe("s1", bound_query)      # ResultChange(reset=True, added=...)
    store.apply(batch)                                 # commit first: the engine reads the
    changes = engine.apply(batch)                      #   store's state *after* the batch
    engine.rows("s1")                                  # the nested result, as nest_rows gives
    engine.unsubscribe("s1")

Queries must be bound (``validate.bind``/``parse_query``) and already carry the caller's read
rules (``rules.apply_read_rules``): the engine maintains exactly the query it is given.

``apply`` works in three passes. Route: every net change of the batch is turned into work items
per subscription (root rows through the subscription index, both images; child rows through the
link index; EXISTS re-checks by walking chains back). Decide: a subscription with more than
``rehydrate_after`` work items is re-hydrated instead (one ``scan`` beats thousands of window
updates: a bulk update of half a table). Run: the work items, then each touched subscription's
``finish`` (one refill per short window) gives its netted ``ResultChange``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import QueryError
from ..predicate import row_key
from ..query import Query
from ..schema import Schema
from .aggregate import AggregateView
from .changes import Key, ResultChange, ResultRow, Row, RowChange, coalesce
from .exists import Chain, chain_tables, exists_chains, walk_back
from .index import SubscriptionIndex
from .store import Store, values_of
from .tree import Context, Level, Node, RelKey
from .view import RowView

View = RowView | AggregateView
Work = Callable[[], None]
DEFAULT_REHYDRATE_AFTER = 2_000


class Engine:
    def __init__(self, schema: Schema, store: Store, *,
                 rehydrate_after: int = DEFAULT_REHYDRATE_AFTER,
                 pause: Callable[[], None] | None = None) -> None:
        """``pause``: called now and then during a long hydration (see ``Context.pause``)."""
        self.schema = schema
        self.ctx = Context(schema, store, pause)
        self.rehydrate_after = rehydrate_after
        self._views: dict[str, View] = {}
        self._index = SubscriptionIndex()
        self._exists: dict[str, list[tuple[View, Level | None, Chain]]] = {}

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(self, sub_id: str, query: Query) -> ResultChange:
        """Start maintaining ``query``; returns its whole current result (``reset=True``)."""
        if sub_id in self._views:
            self.unsubscribe(sub_id)
        view: View
        if query.aggregate is not None:
            view = AggregateView(self.ctx, sub_id, query)
            levels: Iterable[tuple[Level | None, Query]] = [(None, query)]
        else:
            if any(q.aggregate is not None for _, q in query.walk()):
                raise QueryError("aggregate", "Aggregates are allowed on the top-level query only.")
            view = RowView(self.ctx, sub_id, query)
            levels = [(lv if lv is not view.root_level else None, lv.query) for lv in view.levels()]
        initial = view.hydrate()
        self._views[sub_id] = view
        self._index.add(sub_id, query.table, query.where)
        for level, q in levels:
            for chain in exists_chains(q.where, self.schema, q.table):
                for table in chain_tables(chain):
                    self._exists.setdefault(table, []).append((view, level, chain))
        return initial

    def unsubscribe(self, sub_id: str) -> None:
        view = self._views.pop(sub_id, None)
        if view is None:
            return
        self._index.remove(sub_id)
        for table, deps in list(self._exists.items()):
            kept = [d for d in deps if d[0] is not view]
            if kept:
                self._exists[table] = kept
            else:
                del self._exists[table]
        view.close()

    def __contains__(self, sub_id: str) -> bool:
        return sub_id in self._views

    def __len__(self) -> int:
        return len(self._views)

    def rows(self, sub_id: str) -> list[dict[str, Any]]:
        """The current result: rows in order with related children nested (or the groups)."""
        return self._views[sub_id].rows()

    def occurrences(self, sub_id: str) -> tuple[ResultRow, ...]:
        """The current result as occurrences (what a consumer of the changes holds)."""
        return self._views[sub_id].occurrences()

    # -- batches -------------------------------------------------------------------------

    def apply(self, batch: Iterable[RowChange]) -> dict[str, ResultChange]:
        """Push one committed transaction through; the changed subscriptions' result changes."""
        work: dict[str, list[Work]] = {}
        for table, changes in coalesce(self.schema, batch).items():
            pk = self.schema.table(table).primary_key
            for change in changes:
                self._route(table, pk, change, work)
        out: dict[str, ResultChange] = {}
        for sub_id, items in work.items():
            view = self._views[sub_id]
            if len(items) > self.rehydrate_after:
                out[sub_id] = view.reset()
                continue
            for item in items:
                item()
            result = view.finish()
            if result:
                out[sub_id] = result
        return out

    def _route(self, table: str, pk: tuple[str, ...], change: RowChange,
               work: dict[str, list[Work]]) -> None:
        old, new = change.old, change.new
        images = [r for r in (old, new) if r is not None]
        key = row_key(pk, images[0])
        subs: set[Any] = set()
        for img in images:
            self._index.candidates(table, img, subs)
        for sub_id in subs:
            view = self._views[sub_id]
            work.setdefault(sub_id, []).append(_call(view.change, key, old, new))
        for rk in self.ctx.links.by_table.get(table, ()):
            self._route_children(rk, table, key, images, new, work)
        for view, level, chain in self._exists.get(table, ()):
            for rkey, row in walk_back(self.ctx.store, self.schema, chain, table, images).items():
                if level is None:
                    work.setdefault(view.sub_id, []).append(_call(view.change, rkey, row, row))
                else:
                    for node in self._nodes_for(level, row):
                        work.setdefault(view.sub_id, []).append(_call(node.change, rkey, row))

    def _route_children(self, rk: RelKey, table: str, key: Key, images: list[Row],
                        new: Row | None, work: dict[str, list[Work]]) -> None:
        links = self.ctx.links
        rel = links.rels[rk]
        if rel.through is not None and table == rel.through.table:
            for img in images:
                for node in links.get(rk, values_of(img, rel.through.source_columns)):
                    work.setdefault(_sub(node), []).append(node.mark_stale)
        if table != rel.target:
            return
        nodes: set[Node] = set()
        for img in images:
            nodes.update(self._linked_nodes(rk, img))
        for node in nodes:
            work.setdefault(_sub(node), []).append(_call(node.change, key, new))

    def _linked_nodes(self, rk: RelKey, row: Row) -> set[Node]:
        """The child nodes of relationship ``rk`` whose parent may link to ``row``."""
        links, store = self.ctx.links, self.ctx.store
        rel = links.rels[rk]
        tvals = values_of(row, rel.target_columns)
        if rel.through is None or tvals is None:
            return set(links.get(rk, tvals))
        found: set[Node] = set()
        for j in store.lookup(rel.through.table, rel.through.target_columns, tvals):
            found.update(links.get(rk, values_of(j, rel.through.source_columns)))
        return found

    def _nodes_for(self, level: Level, row: Row) -> list[Node]:
        assert level.source is not None and level.rel is not None
        rk = (level.source, level.rel.name)
        if rk not in self.ctx.links.rels:
            return []
        return [n for n in self._linked_nodes(rk, row) if n.level is level]


def _sub(node: Node) -> str:
    owner = node.owner
    assert isinstance(owner, RowView)
    return owner.sub_id


def _call(fn: Callable[..., None], *args: Any) -> Work:
    return lambda: fn(*args)
