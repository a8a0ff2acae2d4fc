"""What the server remembers per client, and how a client's pokes are built from it.

A ``ClientRecord`` holds the desired queries (each bound to a shared subscription, with its
TTL), the rows the client holds with per-client reference counts (how many of its queries hold
each row) and the ``_v`` sent, the last poke's cursor (version, seq), a bounded log of recent
pokes for exact resumes, and mutation outcomes not yet delivered.

``PokeBuilder`` turns subscription deltas, hydrations and removals into the puts and deletes of
one poke: a row is put when its count goes 0 -> n or its version changed, deleted when its
count reaches 0. ``sync_to`` recomputes everything from the subscriptions (used on resume).
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from queryplanner import Schema
from queryplanner.protocol import MutationResult, Poke

from .mutations import VERSION_COLUMN
from .subscriptions import RowKey, SubDelta, Subscription, WireRow


@dataclass
class Desired:
    sub: Subscription
    ttl: float | None
    complete: bool = False
    expires_at: float | None = None


@dataclass
class SentPoke:
    seq: int
    version: int
    name: str
    data: bytes


@dataclass
class ClientRecord:
    client_id: str
    user_id: str | None
    schema_version: int
    desired: dict[str, Desired] = field(default_factory=dict)
    held: dict[RowKey, list[Any]] = field(default_factory=dict)  # key -> [refcount, _v]
    seq: int = 0
    version: int = 0
    sent: deque[SentPoke] = field(default_factory=deque)
    sent_bytes: int = 0
    pending_outcomes: list[MutationResult] = field(default_factory=list)
    outbox: Any = None  # the attached stream's Outbox, None while detached
    detached_at: float | None = field(default_factory=time.monotonic)

    def remember(self, poke: SentPoke, limit: int) -> None:
        self.sent.append(poke)
        self.sent_bytes += len(poke.data)
        while self.sent and self.sent_bytes > limit:
            self.sent_bytes -= len(self.sent.popleft().data)

    def replay_after(self, seq: int) -> list[SentPoke] | None:
        """The remembered pokes after ``seq``; None when the log no longer reaches back."""
        if seq == self.seq:
            return []
        if not self.sent or self.sent[0].seq > seq + 1:
            return None
        return [p for p in self.sent if p.seq > seq]


class PokeBuilder:
    """Accumulates one poke for one client; ``poke()`` returns None when nothing changed."""

    def __init__(self, rec: ClientRecord, version: int) -> None:
        self.rec = rec
        self.version = version
        self.puts: dict[RowKey, WireRow] = {}
        self.dels: set[RowKey] = set()
        self.complete: dict[str, int] = {}
        self.mutations: list[MutationResult] = []
        self.force = False  # send even an empty poke (a new stream's first cursor)

    def _inc(self, k: RowKey, row: WireRow) -> None:
        held = self.rec.held.get(k)
        if held is None:
            self.rec.held[k] = [1, row[VERSION_COLUMN]]
            self.puts[k] = row
            self.dels.discard(k)
        else:
            held[0] += 1
            if held[1] != row[VERSION_COLUMN]:
                held[1] = row[VERSION_COLUMN]
                self.puts[k] = row

    def _dec(self, k: RowKey) -> None:
        held = self.rec.held.get(k)
        if held is None:
            return
        held[0] -= 1
        if held[0] <= 0:
            del self.rec.held[k]
            self.puts.pop(k, None)
            self.dels.add(k)

    def delta(self, d: SubDelta) -> None:
        for k, row in d.added.items():
            self._inc(k, row)
        for k, row in d.changed.items():
            held = self.rec.held.get(k)
            if held is not None and held[1] != row[VERSION_COLUMN]:
                held[1] = row[VERSION_COLUMN]
                self.puts[k] = row
        for k in d.removed:
            self._dec(k)

    def hydrate(self, qid: str, rows: Mapping[RowKey, WireRow]) -> None:
        for k, row in rows.items():
            self._inc(k, row)
        self.complete[qid] = self.version

    def drop(self, rows: Iterable[RowKey]) -> None:
        for k in rows:
            self._dec(k)

    def sync_to(self, subs: Iterable[Subscription]) -> None:
        """Recompute the held rows from scratch: exact whatever happened since the last poke."""
        target: Counter[RowKey] = Counter()
        rows: dict[RowKey, WireRow] = {}
        for sub in subs:
            for k, row in sub.result.items():
                target[k] += 1
                rows[k] = row
        for k in list(self.rec.held):
            if k not in target:
                del self.rec.held[k]
                self.dels.add(k)
        for k, n in target.items():
            row = rows[k]
            held = self.rec.held.get(k)
            if held is None or held[1] != row[VERSION_COLUMN]:
                self.puts[k] = row
            self.rec.held[k] = [n, row[VERSION_COLUMN]]

    def poke(
        self, schema: Schema, fragments: dict[int, tuple[Any, orjson.Fragment]]
    ) -> Poke | None:
        """The poke, or None when nothing changed.

        ``fragments`` caches each row's JSON for the step: most rows go to many clients (the
        rows of shared subscriptions), and each is encoded once. Keyed by the row object's id,
        with the row kept alive beside its JSON so no other row can take that id in the step.
        """
        if not (self.puts or self.dels or self.complete or self.mutations or self.force):
            return None
        known = (
            schema.as_of(self.rec.schema_version)
            if self.rec.schema_version < schema.version
            else schema
        )
        put: dict[str, list[Any]] = {}
        for (tname, _), row in self.puts.items():
            if known is not schema:
                if not known.has_table(tname):
                    continue
                names = set(known.table(tname).column_names) | {VERSION_COLUMN}
                put.setdefault(tname, []).append({c: v for c, v in row.items() if c in names})
                continue
            hit = fragments.get(id(row))
            if hit is None:
                hit = fragments[id(row)] = (row, orjson.Fragment(orjson.dumps(row)))
            put.setdefault(tname, []).append(hit[1])
        dele: dict[str, list[list[Any]]] = {}
        for tname, key in self.dels:
            if known.has_table(tname):
                dele.setdefault(tname, []).append([_json_key(v) for v in key])
        return Poke(self.version, put, dele, dict(self.complete), tuple(self.mutations))


def _json_key(value: Any) -> Any:
    iso = getattr(value, "isoformat", None)
    return iso() if iso is not None else value
