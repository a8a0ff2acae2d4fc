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

``spare`` rows past the limit may be held too (the prefix is then up to ``limit + spare``
long): only the first ``limit`` are the result (``rows``, ``items``, ``in``, what is emitted);
the others stand by, so a row leaving the result lets the next one in without a store read.
A refill happens only once the spares are used up. Emissions follow the visible part: a row
crossing the limit either way is emitted as entering or leaving.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter

from ..predicate import SortKey, row_key
from .changes import Key, Row

Emit = Callable[[Key, Row | None, Row | None], None]
PAUSE_ROWS = 500  # rows between two pauses of a hydration that emits row by row
_first = itemgetter(0)


class Window:
    __slots__ = ("_entries", "_pk", "_rows", "_sort_key", "exhausted", "limit", "spare")

    def __init__(self, sort_key: Callable[[Row], SortKey], pk: tuple[str, ...],
                 limit: int | None, spare: int = 0) -> None:
        self._sort_key = sort_key
        self._pk = pk
        self.limit = limit
        self.spare = spare if limit else 0  # (a limit of 0 holds nothing)
        self._entries: list[tuple[SortKey, Key]] = []
        self._rows: dict[Key, Row] = {}  # every held row, the spares included
        self.exhausted = True

    @property
    def capacity(self) -> int | None:
        """How many rows the window holds at most (the limit and the spares)."""
        return None if self.limit is None else self.limit + self.spare

    def _visible(self) -> list[tuple[SortKey, Key]]:
        if self.spare and self.limit is not None and len(self._entries) > self.limit:
            return self._entries[: self.limit]
        return self._entries

    def __len__(self) -> int:
        return len(self._visible())

    def __contains__(self, key: Key) -> bool:
        """Is ``key`` in the result (a spare is not)."""
        row = self._rows.get(key)
        if row is None:
            return False
        if not self.spare:
            return True
        return self._index(row) < self.limit  # type: ignore[operator]

    def has(self, key: Key) -> bool:
        """Is ``key`` held, in the result or as a spare."""
        return key in self._rows

    def _index(self, row: Row) -> int:
        return bisect.bisect_left(self._entries, self._sort_key(row), key=_first)

    def get(self, key: Key) -> Row | None:
        return self._rows.get(key)

    def rows(self) -> Iterator[Row]:
        """The result's rows in order."""
        rows = self._rows
        return (rows[k] for _, k in self._visible())

    def items(self) -> list[tuple[Key, Row]]:
        """The result's (key, row) in order."""
        rows = self._rows
        return [(k, rows[k]) for _, k in self._visible()]

    def ordered_keys(self) -> list[Key]:
        return [k for _, k in self._visible()]

    def last(self) -> Row | None:
        """The last row held (spares included): a refill reads the rows after it."""
        return self._rows[self._entries[-1][1]] if self._entries else None

    @property
    def needs_refill(self) -> bool:
        return not self.exhausted and (self.limit is None or len(self._entries) < self.limit)

    def wanted(self) -> int | None:
        """How many rows a refill should fetch (None: all the remaining ones)."""
        cap = self.capacity
        return None if cap is None else cap - len(self._entries)

    def load(
        self, rows: Iterable[Row], emit: Emit | None, pause: Callable[[], None] | None = None
    ) -> None:
        """Fill an empty window from rows already in order (a hydration; at most
        ``capacity`` of them).

        With no ``emit`` (nobody listens to a hydration's single rows) the rows go in with
        a few list operations instead of one call chain per row: a 100k-row hydration.
        """
        if emit is not None:
            for n, row in enumerate(rows, 1):
                self._append(row, emit)
                if pause is not None and n % PAUSE_ROWS == 0:
                    pause()  # each row may open child windows: a long hydration
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
        cap = self.capacity
        self.exhausted = cap is None or len(self._entries) < cap

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
        if self.limit is None or len(self._entries) <= self.limit:
            emit(key, None, row)

    def change(self, key: Key, new: Row | None, emit: Emit) -> None:
        """The row ``key`` now has image ``new`` if it matches, or None if it does not."""
        if self.spare:
            self._change_with_spares(key, new, emit)
            return
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

    def _change_with_spares(self, key: Key, new: Row | None, emit: Emit) -> None:
        """``change`` on the held prefix; then emit what crossed the limit.

        Only ``key`` moves, so besides ``key`` at most one row crosses the limit: the last
        visible row is pushed out when ``key`` comes in, the first spare moves in when
        ``key`` goes out.
        """
        assert self.limit is not None
        lim, entries, rows = self.limit, self._entries, self._rows
        edge = entries[lim - 1][1] if len(entries) >= lim else None  # last visible before
        first_spare = entries[lim][1] if len(entries) > lim else None
        before = rows.pop(key, None)
        was_visible = False
        if before is not None:
            i = self._index(before)
            was_visible = i < lim
            del entries[i]
        now_visible = False
        if new is not None:
            sk = self._sort_key(new)
            if self.exhausted or (entries and sk < entries[-1][0]):
                i = bisect.bisect_left(entries, sk, key=_first)
                entries.insert(i, (sk, key))
                rows[key] = new
                now_visible = i < lim
                if len(entries) > lim + self.spare:
                    _, out = entries.pop()  # a spare (or ``key`` itself, past every spare)
                    rows.pop(out)
                    self.exhausted = False
        if was_visible or now_visible:
            emit(key, before if was_visible else None, new if now_visible else None)
        if now_visible and not was_visible and edge is not None:
            emit(edge, rows[edge], None)  # pushed past the limit (still held as a spare)
        elif was_visible and not now_visible and first_spare is not None:
            emit(first_spare, None, rows[first_spare])  # the first spare moves in

    def clear(self, emit: Emit) -> None:
        for _, key in self._visible():
            emit(key, self._rows[key], None)
        self._entries.clear()
        self._rows.clear()
        self.exhausted = True
