"""Committed change batches and the bounded change log that serves resumes and the engine.

Every committed transaction becomes one ``ChangeBatch`` at its version: the rows it touched
(table, primary key, operation, changed columns, the row images before and after) and, for
a mutation batch, the client and the outcomes to report on its stream. A bulk load is recorded
as one ``load`` change without a key (the whole table may have changed).

The log keeps the newest batches within a window of versions and bytes. ``since(v)`` answers
the batches after ``v``, or None when the window no longer reaches back to ``v``: the caller
must then reset instead of resuming. The writer appends right after its COMMIT (not holding
the lock across it, so readers never wait for the commit's disk write); a reader that opened a
snapshot at version ``V`` (read from ``_qs_meta`` in its transaction) calls ``wait_for(V)``,
which returns as soon as the log holds every batch up to ``V`` (microseconds later).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from queryplanner.protocol import MutationResult

ChangeOp = Literal["insert", "update", "delete", "load"]


@dataclass(frozen=True)
class Change:
    table: str
    key: tuple[Any, ...] | None  # None for a bulk load of the whole table
    op: ChangeOp
    columns: tuple[str, ...] = ()  # the changed columns of an update
    # The row after the change (insert, update), so that a maintainer can tell whether a change
    # may touch a query without running it; not counted in the log's byte window.
    row: Mapping[str, Any] | None = field(default=None, compare=False)
    # The row before the change (update, delete): the incremental engine needs both images.
    old: Mapping[str, Any] | None = field(default=None, compare=False)

    def size(self) -> int:
        images = len(self.row or ()) + len(self.old or ())
        return 64 + 16 * len(self.key or ()) + 16 * len(self.columns) + 24 * images


@dataclass(frozen=True)
class ChangeBatch:
    version: int
    changes: tuple[Change, ...]
    # Mutation outcomes per client: the batches of several clients may commit together.
    outcomes: Mapping[str, tuple[MutationResult, ...]] = field(default_factory=dict)
    tables: frozenset[str] = field(init=False)
    # When the writer committed it (monotonic clock): the engine measures commit-to-send.
    committed_at: float = field(default_factory=time.monotonic, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", frozenset(c.table for c in self.changes))

    def size(self) -> int:
        outcomes = sum(len(o) for o in self.outcomes.values())
        return 64 + sum(c.size() for c in self.changes) + 64 * outcomes


class ChangeLog:
    def __init__(self, version: int, *, max_versions: int = 10_000, max_bytes: int = 64 << 20):
        self.lock = threading.Lock()
        self._appended = threading.Condition(self.lock)
        self._batches: deque[ChangeBatch] = deque()
        self._bytes = 0
        self._max_versions = max_versions
        self._max_bytes = max_bytes
        self.version = version
        # The log reaches back to ``floor``: every batch after it is held.
        self.floor = version

    def wait_for(self, version: int, timeout: float = 10.0) -> bool:
        """Wait until every batch up to ``version`` (committed) is in the log."""
        with self._appended:
            return self._appended.wait_for(lambda: self.version >= version, timeout)

    def append(self, batch: ChangeBatch) -> None:
        """Record a committed batch, right after its COMMIT."""
        with self._appended:
            self._append(batch)
            self._appended.notify_all()

    def _append(self, batch: ChangeBatch) -> None:
        self._batches.append(batch)
        self._bytes += batch.size()
        self.version = batch.version
        while self._batches and (
            len(self._batches) > self._max_versions or self._bytes > self._max_bytes
        ):
            old = self._batches.popleft()
            self._bytes -= old.size()
            self.floor = old.version

    def since(self, version: int, upto: int | None = None) -> list[ChangeBatch] | None:
        """The batches with ``version < v <= upto``; None when the log does not reach back."""
        with self.lock:
            if version < self.floor:
                return None
            top = self.version if upto is None else upto
            return [b for b in self._batches if version < b.version <= top]

    def reaches(self, version: int) -> bool:
        with self.lock:
            return version >= self.floor


def touched_tables(batches: Iterable[ChangeBatch]) -> frozenset[str]:
    out: set[str] = set()
    for b in batches:
        out |= b.tables
    return frozenset(out)
