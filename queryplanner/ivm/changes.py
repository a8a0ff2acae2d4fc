"""The values that flow in and out of the engine: row changes in, result changes out.

In: a batch is the row changes of one committed transaction, in commit order. ``coalesce``
reduces it to one net change per row (first old image, last new image), so every row is seen
once per batch and a change that undoes itself disappears.

Out: a subscription's result is a set of *occurrences*: a row of some table at a place in the
nested result. The place (``at``) is the path of (ancestor key, relationship) pairs from the
root: ``()`` for a root row, ``(((5,), "comments"),)`` for a comment nested under issue 5. A
``ResultChange`` lists the occurrences that entered, left or changed their row image; the
server turns them into ``put``/``del`` per table (reference counted per client), the client
into snapshots. Order is not sent as positions: every row carries its order columns and the
order is total, so ``compile_sort_key(query.order_by)`` puts a window back in order.
Aggregate groups are occurrences too (table = the query's table, key = the groupBy values).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..predicate import row_key
from ..schema import Schema

Row = Mapping[str, Any]
Key = tuple[Any, ...]
Path = tuple[tuple[Key, str], ...]


@dataclass(frozen=True)
class RowChange:
    """One row change: an insert (``old`` None), a delete (``new`` None) or an edit."""

    table: str
    old: Row | None
    new: Row | None

    @classmethod
    def add(cls, table: str, row: Row) -> RowChange:
        return cls(table, None, row)

    @classmethod
    def remove(cls, table: str, row: Row) -> RowChange:
        return cls(table, row, None)

    @classmethod
    def edit(cls, table: str, old: Row, new: Row) -> RowChange:
        return cls(table, old, new)


def coalesce(schema: Schema, batch: Iterable[RowChange]) -> dict[str, list[RowChange]]:
    """One net change per (table, primary key), grouped by table, in first-seen order."""
    net: dict[tuple[str, Key], list[Any]] = {}
    for change in _split(schema, batch):
        pk = schema.table(change.table).primary_key
        image = change.new if change.new is not None else change.old
        if image is None:
            continue
        slot = net.get((change.table, row_key(pk, image)))
        if slot is None:
            net[(change.table, row_key(pk, image))] = [change.old, change.new]
        else:
            slot[1] = change.new
    out: dict[str, list[RowChange]] = {}
    for (table, _), (old, new) in net.items():
        if old is None and new is None:
            continue
        if old is not None and new is not None and dict(old) == dict(new):
            continue
        out.setdefault(table, []).append(RowChange(table, old, new))
    return out


def _split(schema: Schema, batch: Iterable[RowChange]) -> Iterable[RowChange]:
    """An edit that changes the primary key is a delete of one row and an insert of another."""
    for change in batch:
        old, new = change.old, change.new
        if old is not None and new is not None:
            pk = schema.table(change.table).primary_key
            if row_key(pk, old) != row_key(pk, new):
                yield RowChange(change.table, old, None)
                yield RowChange(change.table, None, new)
                continue
        yield change


class ResultRow(NamedTuple):
    """One occurrence of a row in a result: where it sits, its table, key and image.

    A named tuple, not a frozen dataclass: a hydration makes one per row.
    """

    at: Path
    table: str
    key: Key
    row: Row


@dataclass(frozen=True)
class ResultChange:
    """What one batch (or a subscribe) did to one subscription's result.

    ``reset`` means: forget every occurrence of this subscription; ``added`` is the whole new
    result (a re-hydration, sent when a batch costs more to push through than to re-run).
    ``removed`` carries the last image the consumer saw; ``edited`` the new image.
    """

    added: tuple[ResultRow, ...] = ()
    removed: tuple[ResultRow, ...] = ()
    edited: tuple[ResultRow, ...] = ()
    reset: bool = False

    def __bool__(self) -> bool:
        return self.reset or bool(self.added or self.removed or self.edited)


class Delta:
    """Collects elementary occurrence transitions and nets them out per occurrence."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: dict[tuple[Path, str, Key], list[Row | None]] = {}

    def record(self, at: Path, table: str, key: Key, before: Row | None, after: Row | None) -> None:
        slot = self._slots.get((at, table, key))
        if slot is None:
            self._slots[(at, table, key)] = [before, after]
        else:
            slot[1] = after

    def __len__(self) -> int:
        return len(self._slots)

    def change(self) -> ResultChange:
        added: list[ResultRow] = []
        removed: list[ResultRow] = []
        edited: list[ResultRow] = []
        for (at, table, key), (before, after) in self._slots.items():
            if before is None and after is not None:
                added.append(ResultRow(at, table, key, after))
            elif after is None and before is not None:
                removed.append(ResultRow(at, table, key, before))
            elif before is not None and after is not None and before != after:
                edited.append(ResultRow(at, table, key, after))
        self._slots.clear()
        return ResultChange(tuple(added), tuple(removed), tuple(edited))
