"""A subscription to a row query: its levels, its root node and its batch bookkeeping.

The engine routes changes to a view (root-table rows through the subscription index; child
rows through the link index; EXISTS re-checks through ``exists``). During a batch the view's
nodes record transitions in ``delta`` and put windows that ran short in ``dirty``; ``finish``
refills those windows once from the store and returns the netted ``ResultChange``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..predicate import row_key
from ..query import Query
from .changes import Delta, Key, ResultChange, ResultRow, Row
from .tree import Context, Level, Node


class RowView:
    def __init__(self, ctx: Context, sub_id: str, query: Query) -> None:
        self.ctx = ctx
        self.sub_id = sub_id
        self.query = query
        self.delta = Delta()
        self.dirty: set[Node] = set()
        self.root_level = Level(ctx, query, None, None)
        self.root = Node(ctx, self, self.root_level, None, ())

    def levels(self) -> Iterator[Level]:
        stack = [self.root_level]
        while stack:
            level = stack.pop()
            yield level
            stack.extend(level.children)

    def hydrate(self) -> ResultChange:
        q = self.query
        limit = self.root.window.capacity  # the limit and the root window's spare rows
        rows = list(self.ctx.store.scan(Query(q.table, q.where, q.order_by, limit, q.start)))
        self.root.hydrate(rows, record=False)
        self.delta = Delta()
        self.dirty.clear()
        return ResultChange(added=self.occurrences(), reset=True)

    def change(self, key: Key, old: Row | None, new: Row | None) -> None:
        """A root-table row changed (or must be re-checked: ``old`` is ``new``)."""
        self.root.change(key, new)

    def finish(self) -> ResultChange:
        while self.dirty:
            self.dirty.pop().refill()
        return self.delta.change()

    def reset(self) -> ResultChange:
        """Drop the maintained result and re-hydrate it from the store."""
        self.close()
        self.root = Node(self.ctx, self, self.root_level, None, ())
        return self.hydrate()

    def close(self) -> None:
        self.root.close()
        self.delta = Delta()
        self.dirty.clear()

    def rows(self) -> list[dict[str, Any]]:
        return self.root.nested()

    def occurrences(self) -> tuple[ResultRow, ...]:
        return tuple(map(ResultRow._make, self.root.occurrences()))

    def holds(self, key: Key) -> bool:
        return key in self.root.window

    def root_key(self, row: Row) -> Key:
        return row_key(self.root_level.pk, row)
