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
from collections.abc import Collection, Iterable, Mapping
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
    arrow: bool = False  # the attached stream takes hydrations as Arrow (``rows=arrow``)
    must_reset: bool = False  # its next attach resets (the server lost track of its rows)
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


# id(row) -> (row, JSON, bytes) for one row; tuple of ids -> (rows, JSON, bytes) for a block
Fragments = dict[Any, tuple[Any, orjson.Fragment, int]]

BLOCK_ROWS = 64  # rows per orjson call in a hydration: a 1 KB-row block is a quarter of 256 KiB


class PokeBuilder:
    """Accumulates one step's changes for one client; ``pokes()`` turns them into pokes.

    Usually one poke. A large hydration is split: rows that only hydrating queries bring (new
    to the client, touched by no live change of this step) go first in pokes of at most
    ``max_bytes`` that carry nothing else; the last poke carries the rest, the deletes, the
    ``complete`` markers and the mutation outcomes (see docs/protocol.md, *Hydration*).
    """

    def __init__(self, rec: ClientRecord, version: int) -> None:
        self.rec = rec
        self.version = version
        self.puts: dict[RowKey, WireRow] = {}
        self.dels: set[RowKey] = set()
        self.complete: dict[str, int] = {}
        self.mutations: list[MutationResult] = []
        self.force = False  # send even an empty poke (a new stream's first cursor)
        self.fresh: set[RowKey] = set()  # puts that only hydrations brought

    def _inc(self, k: RowKey, row: WireRow, hydrating: bool = False) -> None:
        held = self.rec.held.get(k)
        if held is None:
            self.rec.held[k] = [1, row[VERSION_COLUMN]]
            self.puts[k] = row
            self.dels.discard(k)
            if hydrating:
                self.fresh.add(k)
        else:
            held[0] += 1
            if held[1] != row[VERSION_COLUMN]:
                held[1] = row[VERSION_COLUMN]
                self.puts[k] = row
                self.fresh.discard(k)

    def _dec(self, k: RowKey) -> None:
        held = self.rec.held.get(k)
        if held is None:
            return
        held[0] -= 1
        if held[0] <= 0:
            del self.rec.held[k]
            self.puts.pop(k, None)
            self.fresh.discard(k)
            self.dels.add(k)

    def delta(self, d: SubDelta) -> None:
        for k, row in d.added.items():
            self._inc(k, row)
            self.fresh.discard(k)
        for k, row in d.changed.items():
            held = self.rec.held.get(k)
            self.fresh.discard(k)
            if held is not None and held[1] != row[VERSION_COLUMN]:
                held[1] = row[VERSION_COLUMN]
                self.puts[k] = row
        for k in d.removed:
            self._dec(k)

    def hydrate(
        self, qid: str, rows: Mapping[RowKey, WireRow], skip: Collection[RowKey] = ()
    ) -> None:
        """The client now holds ``qid``'s rows (``skip``: rows already streamed to it)."""
        for k, row in rows.items():
            if k not in skip:
                self._inc(k, row, hydrating=True)
        self.complete[qid] = self.version

    def add_fresh(self, k: RowKey, row: WireRow) -> None:
        """A row new to the client that a hydration brings (streamed ahead of its step)."""
        self._inc(k, row, hydrating=True)

    def sent_ahead(self, keys: Iterable[RowKey], versions: Iterable[int]) -> None:
        """Rows new to the client that went ahead of the step's last poke (as Arrow): one
        query holds each."""
        held = self.rec.held
        for k, v in zip(keys, versions, strict=True):
            held[k] = [1, v]

    def drop(self, rows: Iterable[RowKey]) -> None:
        for k in rows:
            self._dec(k)

    def restart(self) -> None:
        """The client holds nothing from now on (a fresh stream or a reset): every desired
        query's rows go out again in this step and each query is complete again."""
        rec = self.rec
        rec.held.clear()
        rec.sent.clear()
        rec.sent_bytes = 0
        self.puts.clear()
        self.dels.clear()
        self.sync_to((d.sub for d in rec.desired.values()), cleared=True)
        for qid, d in rec.desired.items():
            d.complete = True
            self.complete[qid] = self.version

    def sync_to(self, subs: Iterable[Subscription], *, cleared: bool = False) -> None:
        """Recompute the held rows from scratch: exact whatever happened since the last poke.

        ``cleared``: the client holds nothing (a fresh stream or a reset), so every row is a
        hydration row (``fresh``): the early pokes may carry them in encoded blocks.
        """
        self.fresh.clear()
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
                if cleared:
                    self.fresh.add(k)
            self.rec.held[k] = [n, row[VERSION_COLUMN]]

    def pokes(self, schema: Schema, fragments: Fragments, max_bytes: int) -> list[Poke]:
        """The pokes of this step (none when nothing changed), in the order to send.

        ``fragments`` caches the rows' JSON for the step: most rows go to many clients (the
        rows of shared subscriptions), and each is encoded once. Keyed by the row object's id
        (or a hydration block's tuple of ids), with the rows kept alive beside their JSON so no
        other row can take that id in the step.
        """
        if not (self.puts or self.dels or self.complete or self.mutations or self.force):
            return []
        known = (
            schema.as_of(self.rec.schema_version)
            if self.rec.schema_version < schema.version
            else schema
        )
        # Live-change rows go straight into the last poke's per-table lists; hydration-only
        # rows are gathered per table and encoded in blocks (one orjson call per BLOCK_ROWS
        # rows instead of one per row: the per-row call dominated a 100k-row hydration).
        last: dict[str, list[Any]] = {}
        hydrating: dict[str, list[Any]] = {}
        fresh = self.fresh
        # Rows projected for an older schema are this client's own: not shared in the step.
        cache = fragments if known is schema else {}
        for k, row in self.puts.items():
            tname = k[0]
            if known is not schema:
                if not known.has_table(tname):
                    continue
                names = set(known.table(tname).column_names) | {VERSION_COLUMN}
                row = {c: v for c, v in row.items() if c in names}
            if k in fresh:
                _put(hydrating, tname, row)
            else:
                _put(last, tname, _encoded(row, cache)[0])
        early = _split(hydrating, cache, max_bytes)
        for tname, items in early.pop().items():  # the last chunk rides with everything else
            last.setdefault(tname, []).extend(items)
        out = [Poke(self.version, chunk) for chunk in early]
        dele: dict[str, list[list[Any]]] = {}
        for tname, key in self.dels:
            if known.has_table(tname):
                dele.setdefault(tname, []).append([_json_key(v) for v in key])
        out.append(
            Poke(self.version, last, dele, dict(self.complete), tuple(self.mutations))
        )
        return out


def _encoded(row: WireRow, fragments: Fragments) -> tuple[orjson.Fragment, int]:
    """One row's JSON, shared through ``fragments`` by every client of the step."""
    hit = fragments.get(id(row))
    if hit is None:
        data = orjson.dumps(row)
        hit = fragments[id(row)] = (row, orjson.Fragment(data), len(data))
    return hit[1], hit[2]


def _encoded_block(rows: list[WireRow], fragments: Fragments) -> tuple[orjson.Fragment, int]:
    """Several rows of one table as one fragment: their JSON objects joined by commas.

    Placed as one item of a poke's per-table list, it serializes as those rows' items. Keyed
    by the rows' ids, so clients hydrating the same subscription share the encoding.
    """
    key = tuple(map(id, rows))
    hit = fragments.get(key)
    if hit is None:
        data = orjson.dumps(rows)[1:-1]  # the array without its brackets
        hit = fragments[key] = (rows, orjson.Fragment(data), len(data))
    return hit[1], hit[2]


def _split(
    hydrating: dict[str, list[Any]], fragments: Fragments, max_bytes: int
) -> list[dict[str, list[Any]]]:
    """Hydration-only rows in chunks of at most ``max_bytes`` of rows (one per poke).

    A chunk is filled a whole block at a time; a block that alone exceeds the bound is sized
    row by row, so only a single row larger than the bound makes a chunk exceed it.
    """
    chunks: list[dict[str, list[Any]]] = [{}]
    size = 0
    for tname, rows in hydrating.items():
        for start in range(0, len(rows), BLOCK_ROWS):
            block = rows[start : start + BLOCK_ROWS]
            item, n = _encoded_block(block, fragments)
            parts = [(item, n)] if n <= max_bytes else [_encoded(r, fragments) for r in block]
            for item, n in parts:
                if size and size + n > max_bytes:
                    chunks.append({})
                    size = 0
                _put(chunks[-1], tname, item)
                size += n
    return chunks


def _put(by_table: dict[str, list[Any]], tname: str, item: Any) -> None:
    items = by_table.get(tname)
    if items is None:
        by_table[tname] = [item]
    else:
        items.append(item)


def _json_key(value: Any) -> Any:
    iso = getattr(value, "isoformat", None)
    return iso() if iso is not None else value
