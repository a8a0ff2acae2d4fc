"""The order + limit window (top-k) with a stored bound, kept as a prefix of the order.

A window holds the first rows (at most ``limit``; all when ``limit`` is None) of the rows that
match, in a total order. Its invariant, between any two changes of a batch:

    the window is a *prefix* of the matching rows in order, and ``exhausted`` says it is all
    of them; when not exhausted it may be shorter than ``limit`` only inside a batch.

A change keeps the prefix: a leaving row is dropped; an arriving row is inserted when it sorts
before the last row (the stored bound) or the window is exhausted; otherwise it is ignored,
because rows past the bound are unknown. When the window ends a batch short and not exhausted,
``needs_refill`` asks the owner to fetch "the next k rows after the last one" from the store
(which already holds the batch's final state) — one refill per window per batch, however many
rows left it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter

from ..predicate import SortKey, row_key
from .changes import Key, Row

Emit = Callable[[Key, Row | None, Row | None], None]
_first = itemgetter(0)


class Window:
    __slots__ = ("_entries", "_pk", "_rows", "_sort_key", "exhausted", "limit")

    def __init__(self, sort_key: Callable[[Row], SortKey], pk: tuple[str, ...],
                 limit: int | None) -> None:
        self._sort_key = sort_key
        self._pk = pk
        self.limit = limit
        self._entries: list[tuple[SortKey, Key]] = []
        self._rows: dict[Key, Row] = {}
        self.exhausted = True

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Key) -> bool:
        return key in self._rows

    def get(self, key: Key) -> Row | None:
        return self._rows.get(key)

    def rows(self) -> Iterator[Row]:
        """The rows in order."""
        rows = self._rows
        return (rows[k] for _, k in self._entries)

    def items(self) -> list[tuple[Key, Row]]:
        """(key, row) in order."""
        rows = self._rows
        return [(k, rows[k]) for _, k in self._entries]

    def ordered_keys(self) -> list[Key]:
        return [k for _, k in self._entries]

    def last(self) -> Row | None:
        return self._rows[self._entries[-1][1]] if self._entries else None

    @property
    def needs_refill(self) -> bool:
        return not self.exhausted and (self.limit is None or len(self._entries) < self.limit)

    def wanted(self) -> int | None:
        """How many rows a refill should fetch (None: all the remaining ones)."""
        return None if self.limit is None else self.limit - len(self._entries)

    def load(self, rows: Iterable[Row], emit: Emit | None) -> None:
        """Fill an empty window from rows already in order (a hydration).

        With no ``emit`` (nobody listens to a hydration's single rows) the rows go in with
        a few list operations instead of one call chain per row: a 100k-row hydration.
        """
        if emit is not None:
            for row in rows:
                self._append(row, emit)
        else:
            rows = rows if isinstance(rows, list) else list(rows)
            pk = self._pk
            if len(pk) == 1:
                (name,) = pk
                keys = [(row[name],) for row in rows]
            else:
                keys = [row_key(pk, row) for row in rows]
            self._entries.extend(zip(map(self._sort_key, rows), keys, strict=True))
            self._rows.update(zip(keys, rows, strict=True))
        self.exhausted = self.limit is None or len(self._entries) < self.limit

    def refill(self, rows: list[Row], asked: int | None, emit: Emit) -> None:
        """Append rows that come after the last one (fetched from the store)."""
        for row in rows:
            self._append(row, emit)
        if asked is None or len(rows) < asked:
            self.exhausted = True

    def _append(self, row: Row, emit: Emit) -> None:
        key = row_key(self._pk, row)
        self._entries.append((self._sort_key(row), key))
        self._rows[key] = row
        emit(key, None, row)

    def change(self, key: Key, new: Row | None, emit: Emit) -> None:
        """The row ``key`` now has image ``new`` if it matches, or None if it does not."""
        before = self._rows.pop(key, None)
        if before is not None:
            i = bisect.bisect_left(self._entries, self._sort_key(before), key=_first)
            del self._entries[i]
        if new is None:
            if before is not None:
                emit(key, before, None)
            return
        sk = self._sort_key(new)
        entries = self._entries
        if not (self.exhausted or (entries and sk < entries[-1][0])):
            if before is not None:
                emit(key, before, None)
            return
        bisect.insort(entries, (sk, key), key=_first)
        self._rows[key] = new
        emit(key, before, new)
        if self.limit is not None and len(entries) > self.limit:
            _, out = entries.pop()
            emit(out, self._rows.pop(out), None)
            self.exhausted = False

    def clear(self, emit: Emit) -> None:
        for _, key in self._entries:
            emit(key, self._rows[key], None)
        self._entries.clear()
        self._rows.clear()
        self.exhausted = True
