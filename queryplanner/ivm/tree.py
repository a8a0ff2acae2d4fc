"""The levels of a row query and the nodes that hold its nested result.

A ``Level`` is one (sub)query of a subscription: the root or a ``related`` child, with its
compiled predicate, start filter and order. A ``Node`` is one window of a level: the root's
single window over the whole table, or a child window per parent row occurrence ("the first
10 comments of issue 5"). A node's ``emit`` both records the transition in the subscription's
``Delta`` and keeps the children in step: a row entering opens its child nodes (hydrated from
the store), a row leaving closes them, a row whose link columns change rebuilds them.

Child nodes are registered in the engine's ``LinkIndex`` under their relationship and their
parent's link values, so a changed child row finds exactly the windows it may belong to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..predicate import SortKey, compile_predicate, compile_sort_key, compile_start_filter, row_key
from ..query import Query, Start
from ..schema import Relationship, Schema
from .changes import Delta, Key, Path, Row
from .store import Store, StoreRelated, is_linked, prefetch_related, related_rows, values_of
from .window import Window

ROOT_SPARE = 64  # at most this many spare rows past a root window's limit

RelKey = tuple[str, str]  # (source table, relationship name)


class LinkIndex:
    """Child nodes by (relationship, parent link values): the routing of child-table changes."""

    def __init__(self) -> None:
        self.nodes: dict[RelKey, dict[tuple[Any, ...], set[Node]]] = {}
        self.rels: dict[RelKey, Relationship] = {}
        self.by_table: dict[str, set[RelKey]] = {}

    def add(self, source: str, rel: Relationship, vals: tuple[Any, ...], node: Node) -> None:
        rk = (source, rel.name)
        if rk not in self.nodes:
            self.nodes[rk] = {}
            self.rels[rk] = rel
            for table in (rel.target, rel.through.table if rel.through else None):
                if table is not None:
                    self.by_table.setdefault(table, set()).add(rk)
        self.nodes[rk].setdefault(vals, set()).add(node)

    def discard(self, source: str, rel: Relationship, vals: tuple[Any, ...], node: Node) -> None:
        bucket = self.nodes[(source, rel.name)].get(vals)
        if bucket is not None:
            bucket.discard(node)
            if not bucket:
                del self.nodes[(source, rel.name)][vals]

    def get(self, rk: RelKey, vals: tuple[Any, ...] | None) -> set[Node]:
        if vals is None:
            return set()
        return self.nodes.get(rk, {}).get(vals, set())


class Context:
    """What every node of every subscription shares: the schema, store and link index."""

    def __init__(
        self, schema: Schema, store: Store, pause: Callable[[], None] | None = None
    ) -> None:
        self.schema = schema
        self.store = store
        self.related = StoreRelated(store)
        self.links = LinkIndex()
        # Called every few hundred rows of a long hydration: the owner may serve other work
        # there (the server answers new streams), as long as it does not touch this engine.
        self.pause: Callable[[], None] = pause or _no_pause


class Level:
    def __init__(self, ctx: Context, query: Query, source: str | None,
                 rel: Relationship | None) -> None:
        table = ctx.schema.table(query.table)
        self.query = query
        self.table = table.name
        self.pk = table.primary_key
        self.source = source
        self.rel = rel
        self.keep = compile_predicate(query.where, ctx.schema, table.name, ctx.related)
        self.after = compile_start_filter(query)
        self.sort_key: Callable[[Row], SortKey] = compile_sort_key(query.order_by)
        self.children = tuple(
            Level(ctx, r.query, table.name, table.relationship(r.relationship))
            for r in query.related
        )

    def matches(self, row: Row) -> bool:
        return self.keep(row) and self.after(row)

    def select(self, rows: list[Row]) -> list[Row]:
        """where, start, order and limit over candidate rows (a child window's hydration)."""
        seen: dict[Key, Row] = {}
        for r in rows:
            if self.matches(r):
                seen.setdefault(row_key(self.pk, r), r)
        chosen = sorted(seen.values(), key=self.sort_key)
        return chosen if self.query.limit is None else chosen[: self.query.limit]


class Owner(Protocol):
    """The subscription a node reports to."""

    delta: Delta
    dirty: set[Node]


class Node:
    def __init__(self, ctx: Context, owner: Owner, level: Level, parent: Row | None,
                 at: Path) -> None:
        self.ctx = ctx
        self.owner = owner
        self.level = level
        self.parent = parent
        self.at = at
        limit = level.query.limit
        # A root window keeps spare rows past its limit: a row leaving lets the next one in
        # without a store read (a refill is a query; a child window is rebuilt instead).
        spare = 0 if parent is not None or not limit else min(max(limit, 16), ROOT_SPARE)
        self.window = Window(level.sort_key, level.pk, limit, spare)
        self.children: dict[Key, list[Node]] = {}
        self.closed = False
        self.stale = False
        self.link: tuple[Any, ...] | None = None
        if parent is not None and level.rel is not None and level.source is not None:
            self.link = values_of(parent, level.rel.source_columns)
            if self.link is not None:
                ctx.links.add(level.source, level.rel, self.link, self)

    # -- filling -----------------------------------------------------------------------

    def fetch_children(self) -> list[Row]:
        assert self.parent is not None and self.level.rel is not None
        return self.level.select(related_rows(self.ctx.store, self.level.rel, self.parent))

    def hydrate(self, rows: list[Row] | None = None, *, record: bool = True) -> None:
        """Fill the window; ``record=False`` (a subscription's first hydration, whose delta
        is dropped) skips the per-row delta when no child level needs the emitted rows."""
        if rows is None:
            rows = self.fetch_children() if self.parent is not None else []
        for level in self.level.children:
            if level.rel is not None:
                # One batched read per child table instead of one lookup per row.
                prefetch_related(self.ctx.store, level.rel, rows)
        emit = None if not record and not self.level.children else self.emit
        self.window.load(rows, emit, self.ctx.pause if self.parent is None else None)

    def rebuild(self) -> None:
        """Recompute a child window from the store and emit only the difference."""
        fresh = self.fetch_children() if self.link is not None else []
        old = self.window
        self.window = Window(self.level.sort_key, self.level.pk, self.level.query.limit)
        self.window.load(fresh, _silent)
        for key in old.ordered_keys():
            if key not in self.window:
                self.emit(key, old.get(key), None)
        for row in fresh:
            key = row_key(self.level.pk, row)
            before = old.get(key)
            if before is None or before != row:
                self.emit(key, before, row)

    # -- changes -----------------------------------------------------------------------

    def change(self, key: Key, row: Row | None) -> None:
        """Row ``key`` of this level's table now has image ``row`` (None: deleted)."""
        if self.closed:
            return
        new = row if row is not None and self._admits(row) else None
        if new is None and not self.window.has(key):
            return
        self.window.change(key, new, self.emit)
        if self.window.needs_refill:
            self.owner.dirty.add(self)

    def _admits(self, row: Row) -> bool:
        if not self.level.matches(row):
            return False
        if self.parent is None:
            return True
        assert self.level.rel is not None
        return is_linked(self.ctx.store, self.level.rel, self.parent, row)

    def mark_stale(self) -> None:
        """Rebuild this child window at the end of the batch (its junction rows changed)."""
        if not self.closed:
            self.stale = True
            self.owner.dirty.add(self)

    def refill(self) -> None:
        if self.closed:
            return
        if self.parent is not None:
            if self.stale or self.window.needs_refill:
                self.stale = False
                self.rebuild()
            return
        if not self.window.needs_refill:
            return
        q = self.level.query
        last = self.window.last()
        start = q.start if last is None else _start_after(q, last)
        asked = self.window.wanted()
        rows = list(self.ctx.store.scan(Query(q.table, q.where, q.order_by, asked, start)))
        self.window.refill(rows, asked, self.emit)

    def emit(self, key: Key, before: Row | None, after: Row | None) -> None:
        self.owner.delta.record(self.at, self.level.table, key, before, after)
        if not self.level.children:
            return
        if after is None:
            for child in self.children.pop(key, ()):
                child.close()
        elif before is None:
            self.children[key] = [self._open(key, after, lv) for lv in self.level.children]
        else:
            for child in self.children.get(key, ()):
                child.reparent(after)

    def _open(self, key: Key, row: Row, level: Level) -> Node:
        assert level.rel is not None
        node = Node(self.ctx, self.owner, level, row, (*self.at, (key, level.rel.name)))
        node.hydrate()
        return node

    def reparent(self, parent: Row) -> None:
        rel, source = self.level.rel, self.level.source
        assert rel is not None and source is not None
        link = values_of(parent, rel.source_columns)
        self.parent = parent
        if link == self.link:
            return
        if self.link is not None:
            self.ctx.links.discard(source, rel, self.link, self)
        self.link = link
        if link is not None:
            self.ctx.links.add(source, rel, link, self)
        self.rebuild()

    def close(self) -> None:
        self.window.clear(self.emit)
        self.closed = True
        rel, source = self.level.rel, self.level.source
        if self.link is not None and rel is not None and source is not None:
            self.ctx.links.discard(source, rel, self.link, self)

    # -- reading -----------------------------------------------------------------------

    def nested(self) -> list[dict[str, Any]]:
        """The window's rows in order, each with its related children nested (as nest_rows)."""
        out = []
        for row in self.window.rows():
            item = dict(row)
            key = row_key(self.level.pk, row)
            for child in self.children.get(key, ()):
                assert child.level.rel is not None
                rows = child.nested()
                if child.level.rel.kind == "many_to_one":
                    item[child.level.rel.name] = rows[0] if rows else None
                else:
                    item[child.level.rel.name] = rows
            out.append(item)
        return out

    def occurrences(self) -> list[tuple[Path, str, Key, Row]]:
        at, table = self.at, self.level.table
        if not self.children:
            return [(at, table, key, row) for key, row in self.window.items()]
        out: list[tuple[Path, str, Key, Row]] = []
        for key, row in self.window.items():
            out.append((at, table, key, row))
            for child in self.children.get(key, ()):
                out.extend(child.occurrences())
        return out


def _start_after(query: Query, row: Row) -> Start:
    return Start(tuple((o.column, row[o.column]) for o in query.order_by), inclusive=False)


def _silent(key: Key, before: Row | None, after: Row | None) -> None:
    return None


def _no_pause() -> None:
    return None
