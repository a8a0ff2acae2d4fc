"""The sync engine: subscriptions, client records, and the ordered steps that feed streams.

All engine state lives on the engine thread. Requests and streams enqueue commands and wake the
engine; commits wake it too. One *step* (on the engine thread) then:

1. opens a DuckDB read transaction and reads the version ``V`` it sees (under the change log's
   lock, so the log holds exactly the batches up to ``V``);
2. brings every subscription touched by the batches since the last step to ``V`` (the seam,
   ``Maintainer.changes``);
3. applies the queued commands in order (attach a stream, detach, change desired queries);
4. builds at most one poke per attached client at version ``V`` and hands the encoded events to
   the client's outbox on the event loop.

So a client's events are in version order, and after a poke with version ``V`` its state is the
server's state at ``V`` for every complete query.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from queryplanner import Condition, Query, Schema
from queryplanner.protocol import (
    Cursor,
    ErrorBody,
    ErrorEvent,
    Event,
    Hello,
    Poke,
    QueryErrorEvent,
    Reset,
    SchemaEvent,
    encode_event,
)

from .changelog import ChangeBatch
from .clients import ClientRecord, Desired, Fragments, PokeBuilder, SentPoke
from .columnar import ArrowHydration, columnar
from .db import Database
from .incremental import IncrementalMaintainer
from .store import Store
from .stream import Outbox
from .subscriptions import Maintainer, RowKey, Subscription, WireRow, no_pause

log = logging.getLogger("querysync.server")


@dataclass(frozen=True)
class EngineLimits:
    outbox_bytes: int = 4 << 20  # per-client queue before a slow consumer is cut off
    poke_bytes: int = 256 << 10  # rows per poke of a hydration split in several (about)
    arrow_poke_bytes: int = 2 << 20  # Arrow data per poke of a columnar hydration (about)
    resume_bytes: int = 4 << 20  # per-client log of recent pokes kept for resumes
    default_ttl: float = 30.0  # how long a query without TTL outlives its stream
    record_ttl: float = 600.0  # how long a detached client's record is kept


@dataclass(frozen=True)
class Attach:
    client_id: str
    user_id: str | None
    schema_version: int
    cursor: Cursor | None
    outbox: Outbox
    arrow: bool = False  # the stream takes hydrations as Arrow (``rows=arrow``)


@dataclass(frozen=True)
class Detach:
    client_id: str
    outbox: Outbox


@dataclass(frozen=True)
class ChangeQueries:
    client_id: str
    user_id: str | None
    schema_version: int
    rules: Mapping[str, Condition]
    scope: str
    add: tuple[tuple[str, Query, float | None], ...]
    remove: tuple[str, ...]


@dataclass(frozen=True)
class SchemaChange:
    """Move every subscription to ``schema`` (its new columns already exist in DuckDB)."""

    schema: Schema
    done: Callable[[], None]  # run on the event loop once the subscriptions use it


@dataclass(frozen=True)
class AnnounceSchema:
    """Tell every open stream that the server now serves ``schema``."""

    schema: Schema


Command = Attach | Detach | ChangeQueries | SchemaChange | AnnounceSchema
Outgoing = tuple[Outbox | None, Any]


class SyncEngine:
    def __init__(
        self,
        schema: Schema,
        db: Database,
        store: Store,
        *,
        limits: EngineLimits | None = None,
        maintainer: Maintainer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.schema = schema
        self.db = db
        self.store = store
        self.limits = limits or EngineLimits()
        self.maintainer: Maintainer = maintainer or IncrementalMaintainer(schema)
        self.clock = clock
        self.epoch = uuid.uuid4().hex[:8]
        self.subs: dict[tuple[str, str], Subscription] = {}
        self.records: dict[str, ClientRecord] = {}
        self.version = store.version
        self._commands: deque[Command] = deque()
        # What the current step hands to the loop at its end, in order: (outbox, events) to
        # push, (outbox, final event) to close, (None, callback) to call.
        self._outgoing: list[Outgoing] = []
        self._fragments: Fragments = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.steps = 0
        self.pokes_sent = 0  # pokes handed to client outboxes (benchmarks: delivered/offered)
        # Milliseconds from the commit of a step's oldest batch to its pokes being handed to
        # the event loop (the server's share of write-to-client latency), recent steps only.
        self.send_ms: deque[float] = deque(maxlen=100_000)
        self._oldest_commit: float | None = None
        self._between: Callable[[], None] = _nothing
        self._streaming: _Streaming | None = None
        self._streamed_to: list[Outbox] = []  # outboxes a hydration streamed to in this step
        # Subscriptions whose rows went out as Arrow: built after the step's last poke.
        self._deferred: list[Subscription] = []

    # -- lifecycle (event loop) ------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="qs-engine", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        thread = self._thread
        if thread is not None:
            self._stopping = True
            self._wake.set()
            await asyncio.to_thread(thread.join, 30)
            self._thread = None

    def notify(self, batch: ChangeBatch | None = None) -> None:
        """Wake the engine; safe from any thread (the writer calls it after each commit).

        The engine thread waits on a threading event, not on the event loop: a commit reaches
        the engine without waiting for the loop, which may be busy writing to sockets.
        """
        self._wake.set()

    def submit(self, command: Command) -> None:
        with self._lock:
            self._commands.append(command)
        self.notify()

    def _run(self) -> None:
        """The engine thread: one step per wake-up (commits and commands coalesce)."""
        while not self._stopping:
            # The timeout gives a periodic step that expires detached queries and records.
            self._wake.wait(timeout=1.0)
            self._wake.clear()  # a wake-up after this runs another step
            if self._stopping:
                return
            try:
                self._step()
            except Exception:  # keep serving; the failed step's commands are lost
                log.exception("sync engine step failed")

    def close_all(self, final: ErrorEvent) -> None:
        """On the loop: end every open stream with ``final`` (graceful shutdown)."""
        for rec in list(self.records.values()):
            ob = rec.outbox
            if ob is not None:
                ob.close(final)

    # -- the step (engine thread) ----------------------------------------------------------

    def _step(self) -> None:
        with self._lock:
            commands = list(self._commands)
            self._commands.clear()
        if not commands and self.store.log.version == self.version:
            self._expire({})  # a periodic wake-up with nothing to send: no snapshot needed
            return
        cur = self.db.cursor()
        cur.execute("BEGIN")
        row = cur.execute("SELECT v FROM _qs_meta WHERE k = 'version'").fetchone()
        version = int(row[0]) if row else 0
        # The writer appends a batch to the log right after committing it: wait for that, so
        # the log holds exactly the batches up to the snapshot.
        if not self.store.log.wait_for(version):
            cur.execute("COMMIT")
            raise RuntimeError(f"The change log did not reach version {version}.")
        try:
            self.maintainer.begin(cur, version)
            self._advance(cur, version, commands)
        finally:
            self._fragments.clear()
            for outbox in self._streamed_to:  # after this step's last push, bounded again
                self._outgoing.append((None, outbox.hydrated))
            self._streamed_to.clear()
            self._flush()  # the pokes go out before the read transaction ends
            try:
                self._build_deferred(cur, version)
            finally:
                cur.execute("COMMIT")
            if self._oldest_commit is not None:
                self.send_ms.append((time.monotonic() - self._oldest_commit) * 1000)
                self._oldest_commit = None
        self.steps += 1

    def _advance(self, cur: Any, version: int, commands: list[Command]) -> None:
        batches = self.store.log.since(self.version, upto=version)
        if batches:
            self._oldest_commit = batches[0].committed_at
        builders: dict[str, PokeBuilder] = {}
        builder = _builder_of(builders, version)
        events: dict[str, list[Event]] = {}  # events before the poke (hello, reset, ...)
        if version != self.version or batches is None:
            for sub, delta in self.maintainer.changes(cur, batches, self.subs.values()):
                for cid in sub.clients:
                    rec = self.records.get(cid)
                    if rec is None or rec.outbox is None:
                        continue
                    d = rec.desired.get(sub.key[0])
                    if d is not None and d.complete:
                        builder(rec).delta(delta)
            for b in batches or ():
                for cid, outcomes in b.outcomes.items():
                    rec = self.records.get(cid)
                    if rec is None:
                        continue
                    if rec.outbox is None:
                        rec.pending_outcomes.extend(outcomes)
                    else:
                        builder(rec).mutations.extend(outcomes)
        self.version = version
        # A new stream's hello must not wait for other clients' hydrations: attaches go first,
        # and the ones that arrive during this step are served between subscriptions.
        commands.sort(key=lambda c: not isinstance(c, Attach))
        self._between = lambda: self._serve_attaches(cur, version, builder, events)
        # Inside one subscription's hydration too, but only attaches that cannot forget
        # another user's record (that would remove subscriptions in the middle of an add).
        self.maintainer.pause = lambda: self._pause_in_add(cur, version, builder, events)
        try:
            self._commands_of_step(cur, version, commands, builder, builders, events)
            self._between()  # streams opened during the hydrations: hello before the encoding
        finally:
            self._between = _nothing
            self.maintainer.pause = no_pause
        self._expire(events)
        self._poke_all(version, builders, events)

    def _commands_of_step(
        self,
        cur: Any,
        version: int,
        commands: list[Command],
        builder: Callable[[ClientRecord], PokeBuilder],
        builders: dict[str, PokeBuilder],
        events: dict[str, list[Event]],
    ) -> None:
        attached = False
        for cmd in commands:
            if not isinstance(cmd, Attach) and not attached:
                attached = True
                self._flush()  # the hellos (and replays) leave before any hydration work
            if isinstance(cmd, Attach):
                self._attach(cur, cmd, version, builder, events)
            elif isinstance(cmd, SchemaChange):
                self._change_schema(cur, cmd)
            elif isinstance(cmd, AnnounceSchema):
                self._announce(cmd.schema, events)
            elif isinstance(cmd, Detach):
                rec = self.records.get(cmd.client_id)
                if rec is not None and rec.outbox is cmd.outbox:
                    rec.outbox = None
                    rec.detached_at = self.clock()
                    builders.pop(rec.client_id, None)
            else:
                self._change_queries(cur, cmd, builder, events)

    def _serve_attaches(
        self,
        cur: Any,
        version: int,
        builder: Callable[[ClientRecord], PokeBuilder],
        events: dict[str, list[Event]],
        *,
        safe_only: bool = False,
    ) -> None:
        """Serve the attaches that arrived during this step now, and send their hellos.

        Safe to take out of order: a later Detach names its outbox (it no longer matches), and
        a later ChangeQueries of the client hydrates into the attached stream. ``safe_only``
        (inside a hydration): only the attaches of a new client id or of the same user.
        """

        def now(c: Command) -> bool:
            if not isinstance(c, Attach):
                return False
            if not safe_only:
                return True
            if self._streaming is not None and c.client_id == self._streaming.rec.client_id:
                return False  # the client being streamed to re-attaches after the add
            if any(c.client_id in s.clients for s in self._deferred):
                # Its attach would read a subscription still being built (or build one inside
                # another's build): after the builds.
                return False
            rec = self.records.get(c.client_id)
            return rec is None or rec.user_id == c.user_id

        with self._lock:
            if not any(now(c) for c in self._commands):
                return
            attaches = [c for c in self._commands if isinstance(c, Attach) and now(c)]
            rest = [c for c in self._commands if not now(c)]
            self._commands.clear()
            self._commands.extend(rest)
        for cmd in attaches:
            self._attach(cur, cmd, version, builder, events)
        self._flush()

    def _pause_in_add(
        self,
        cur: Any,
        version: int,
        builder: Callable[[ClientRecord], PokeBuilder],
        events: dict[str, list[Event]],
    ) -> None:
        """A pause inside a subscription's add: stream the rows loaded so far to the client
        that asked for it, and serve the streams opened meanwhile."""
        self._stream_hydration(version, builder)
        self._serve_attaches(cur, version, builder, events, safe_only=True)

    def _stream_hydration(
        self, version: int, builder: Callable[[ClientRecord], PokeBuilder]
    ) -> None:
        """Send the rows a new subscription has loaded so far, in pokes at the step's version
        ahead of its last one, so the client works while the server still hydrates.

        Only rows new to the client that no live change of this step touched go (the
        "hydration-only" rows the step would send first anyway); the others stay for the
        step's last poke. ``streamed`` keeps their keys: the final ``hydrate`` skips them.
        """
        s = self._streaming
        outbox = s.rec.outbox if s is not None else None
        if s is None or outbox is None:
            return
        self._unbound_until_step_end(outbox)
        # The rows loaded since the last pause are the newest entries of ``sub.result``: read
        # them from its end, not by skipping every row already seen.
        result = s.sub.result
        loaded = list(itertools.islice(reversed(result.items()), len(result) - s.seen))
        loaded.reverse()
        s.seen = len(result)
        main = builder(s.rec)
        ahead = PokeBuilder(s.rec, version)
        for k, row in loaded:
            if k in s.rec.held or k in main.puts or k in main.dels:
                continue
            ahead.add_fresh(k, row)
            s.streamed.add(k)
        for poke in ahead.pokes(self.schema, self._fragments, self.limits.poke_bytes):
            self._send_poke(s.rec, version, poke)
        self._flush()

    def _unbound_until_step_end(self, outbox: Outbox) -> None:
        if not outbox.hydrating:
            # Rows stream ahead of the step's last push: the slow-consumer bound waits for
            # that push (a hydration is bounded by its query, as in one push).
            outbox.hydrating = True
            self._streamed_to.append(outbox)

    def _takes_arrow(self, rec: ClientRecord, sub: Subscription) -> bool:
        """Whether ``rec``'s stream gets ``sub``'s hydration as Arrow blocks."""
        return (
            rec.arrow
            and rec.schema_version == self.schema.version
            and columnar(sub, self.schema)
        )

    def _send_columnar(
        self,
        cur: Any,
        version: int,
        rec: ClientRecord,
        sub: Subscription,
        builder: Callable[[ClientRecord], PokeBuilder],
        streamed: set[RowKey],
    ) -> dict[RowKey, WireRow]:
        """Send a subscription's rows to ``rec`` as Arrow (``server.columnar``); returns the
        rows that wait for the step's last poke. ``streamed`` gets the keys sent (dropped
        again if the add fails)."""
        main = builder(rec)
        held, puts, dels = rec.held, main.puts, main.dels
        hydration = ArrowHydration(
            sub,
            self.schema,
            lambda k: k not in held and k not in puts and k not in dels,
            self.limits.arrow_poke_bytes,
        )
        assert rec.outbox is not None
        for sent in hydration.pokes(cur, version):
            self._unbound_until_step_end(rec.outbox)
            main.sent_ahead(sent.keys, sent.versions)
            streamed.update(sent.keys)
            self._send_poke(rec, version, sent.poke)
            self._flush()  # each poke leaves while the next is read
        return hydration.later

    def _build_deferred(self, cur: Any, version: int) -> None:
        """Build the subscriptions whose rows went out as Arrow (after the step's last poke:
        their clients have them). Streams opened meanwhile are served inside the builds."""
        while self._deferred:
            sub = self._deferred[0]
            builders: dict[str, PokeBuilder] = {}
            builder = _builder_of(builders, version)
            events: dict[str, list[Event]] = {}
            self.maintainer.pause = functools.partial(
                self._serve_attaches, cur, version, builder, events, safe_only=True
            )
            try:
                if self.subs.get(sub.key) is sub:
                    sub.build()
                else:  # released in its step: nothing to build
                    sub.defer(None)
            except Exception:
                log.exception("query %s failed while its state was built", sub.key[0])
                self._drop_unbuilt(sub, version, builder, events)
            finally:
                self.maintainer.pause = no_pause
                self._deferred.pop(0)
            self._poke_all(version, builders, events)
            self._flush()

    def _drop_unbuilt(
        self,
        sub: Subscription,
        version: int,
        builder: Callable[[ClientRecord], PokeBuilder],
        events: dict[str, list[Event]],
    ) -> None:
        """A subscription whose build failed after its rows went out: its clients drop the
        query (``queryError``) and start over from the rest (``reset``), since the server no
        longer knows which of the rows they hold were this query's."""
        self.maintainer.remove(sub)
        self.subs.pop(sub.key, None)
        qid = sub.key[0]
        for cid in sorted(sub.clients):
            rec = self.records.get(cid)
            if rec is None:
                continue
            rec.desired.pop(qid, None)
            if rec.outbox is None:
                rec.must_reset = True
                continue
            events.setdefault(cid, []).extend([
                QueryErrorEvent(
                    qid, ErrorBody("invalid_query", "The server could not run this query.")
                ),
                Reset("A query's rows were sent but the server could not keep it."),
            ])
            builder(rec).restart()
        sub.clients.clear()

    def _send_poke(self, rec: ClientRecord, version: int, poke: Poke) -> None:
        self.pokes_sent += 1
        rec.seq += 1
        rec.version = version
        self._send(rec, Cursor(version, rec.seq, self.epoch), poke)

    def _poke_all(
        self, version: int, builders: dict[str, PokeBuilder], events: dict[str, list[Event]]
    ) -> None:
        for cid in set(builders) | set(events):
            rec = self.records.get(cid)
            if rec is None:
                continue
            if rec.outbox is None:
                pending = builders.get(cid)
                if pending is not None:
                    rec.pending_outcomes.extend(pending.mutations)
                continue
            for ev in events.get(cid, ()):
                self._send(rec, None, ev)
            built = builders.get(cid)
            if built is not None:
                for poke in built.pokes(self.schema, self._fragments, self.limits.poke_bytes):
                    self._send_poke(rec, version, poke)

    def _send(self, rec: ClientRecord, cursor: Cursor | None, event: Event) -> None:
        name, data = encode_event(event)
        if cursor is not None:
            rec.remember(SentPoke(cursor.seq, cursor.version, name, data), self.limits.resume_bytes)
        self._deliver(rec.outbox, (None if cursor is None else str(cursor), name, data))

    def _deliver(self, outbox: Outbox | None, item: tuple[str | None, str, bytes]) -> None:
        if outbox is None:
            return
        # A step's events for one outbox are pushed together: the slow-consumer bound is
        # checked once for them, so a hydration split in many pokes is not cut off half-way.
        if self._outgoing:
            last, arg = self._outgoing[-1]
            if last is outbox and isinstance(arg, list):
                arg.append(item)
                return
        self._outgoing.append((outbox, [item]))

    def _flush(self) -> None:
        """Hand the step's events and closes to the loop in order, with one wake-up."""
        out, self._outgoing = self._outgoing, []
        if out and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(_run_all, out)

    # -- commands --------------------------------------------------------------------------

    def _record(self, client_id: str, user_id: str | None, schema_version: int) -> ClientRecord:
        rec = self.records.get(client_id)
        if rec is not None and rec.user_id != user_id:
            # Another user's client id: nothing of the previous user's state may carry over.
            self._forget(rec)
            rec = None
        if rec is None:
            rec = ClientRecord(client_id, user_id, schema_version)
            self.records[client_id] = rec
        return rec

    def _forget(self, rec: ClientRecord) -> None:
        for qid in list(rec.desired):
            self._release(rec, qid)
        if rec.outbox is not None:
            self._close(
                rec.outbox, ErrorEvent("replaced", "Another user connected with this client id.")
            )
        self.records.pop(rec.client_id, None)

    def _close(self, outbox: Outbox, final: ErrorEvent) -> None:
        self._outgoing.append((outbox, final))

    def _release(self, rec: ClientRecord, qid: str) -> Desired | None:
        d = rec.desired.pop(qid, None)
        if d is not None:
            d.sub.clients.discard(rec.client_id)
            if not d.sub.clients:
                self.subs.pop(d.sub.key, None)
                self.maintainer.remove(d.sub)
        return d

    def _attach(
        self,
        cur: Any,
        cmd: Attach,
        version: int,
        builder: Callable[[ClientRecord], PokeBuilder],
        events: dict[str, list[Event]],
    ) -> None:
        existing = self.records.get(cmd.client_id)
        rec = self._record(cmd.client_id, cmd.user_id, cmd.schema_version)
        if rec.outbox is not None and rec.outbox is not cmd.outbox:
            self._close(
                rec.outbox,
                ErrorEvent("replaced", "A newer stream of this client replaced this one."),
            )
        rec.outbox = cmd.outbox
        rec.detached_at = None
        for d in rec.desired.values():
            d.expires_at = None
        c = cmd.cursor
        replay = None
        if (
            c is not None
            and existing is rec
            and c.epoch == self.epoch
            and rec.schema_version == cmd.schema_version
            and c.seq <= rec.seq
            and self.store.log.reaches(rec.version)
            and rec.arrow == cmd.arrow  # the remembered pokes are in the stream's encoding
            and not rec.must_reset
        ):
            replay = rec.replay_after(c.seq)
        kind = "fresh" if c is None else ("resumed" if replay is not None else "reset")
        rec.schema_version = cmd.schema_version
        rec.arrow = cmd.arrow
        rec.must_reset = False
        row = cur.execute(
            "SELECT coalesce(max(id), 0) FROM _qs_mutation WHERE client_id = ?", [cmd.client_id]
        ).fetchone()
        hello = Hello(
            cmd.client_id,
            cmd.user_id,
            version,
            cmd.schema_version,
            self.schema.version,
            self.schema.hash,
            kind,  # type: ignore[arg-type]
            int(row[0]) if row else 0,
        )
        # Sent at once (not at the end of the step): it must precede the replayed pokes.
        self._send(rec, None, hello)
        b = builder(rec)
        b.force = True
        if kind == "resumed":
            assert replay is not None
            for p in replay:
                self._deliver(
                    rec.outbox, (str(Cursor(p.version, p.seq, self.epoch)), p.name, p.data)
                )
            # Whatever happened since the last poke: bring the held rows to the subscriptions.
            b.sync_to(d.sub for d in rec.desired.values())
            for qid, d in rec.desired.items():
                if not d.complete:
                    d.complete = True
                    b.complete[qid] = version
        else:
            if kind == "reset":
                self._send(rec, None, Reset("The server cannot resume this stream exactly."))
            b.restart()
        b.mutations[:0] = rec.pending_outcomes
        rec.pending_outcomes = []

    def _change_queries(
        self,
        cur: Any,
        cmd: ChangeQueries,
        builder: Callable[[ClientRecord], PokeBuilder],
        events: dict[str, list[Event]],
    ) -> None:
        rec = self._record(cmd.client_id, cmd.user_id, cmd.schema_version)
        attached = rec.outbox is not None
        for qid in cmd.remove:
            d = self._release(rec, qid)
            if d is not None and attached and d.complete:
                builder(rec).drop(d.sub.result)
        scope = cmd.scope
        for qid, query, ttl in cmd.add:
            if qid in rec.desired:
                rec.desired[qid].ttl = ttl
                continue
            key = (qid, scope)
            sub = self.subs.get(key)
            streamed: set[RowKey] = set()  # rows of the subscription sent ahead of the step
            later: dict[RowKey, WireRow] | None = None  # a columnar hydration's other rows
            new = sub is None
            if new:
                self._between()  # a hydration may be long: streams opened meanwhile get hello
                if self.records.get(rec.client_id) is not rec:
                    return  # another user took this client id meanwhile: drop the rest
                attached = rec.outbox is not None  # this client's own stream may be one
            try:
                if sub is None:
                    sub = Subscription(key, query, self.schema, cmd.rules)
                if attached and self._takes_arrow(rec, sub):
                    # Read at the step's snapshot, as the subscription's result now is.
                    later = self._send_columnar(cur, self.version, rec, sub, builder, streamed)
                    if new:  # its state is built after the step's last poke
                        sub.defer(functools.partial(self.maintainer.add, cur, sub))
                        self._deferred.append(sub)
                elif new:
                    self._streaming = _Streaming(rec, sub, streamed) if attached else None
                    try:
                        self.maintainer.add(cur, sub)
                    finally:
                        self._streaming = None
            except Exception as exc:  # a query DuckDB cannot run: report, keep serving
                log.warning("query %s failed: %s", qid, exc)
                if streamed:
                    builder(rec).drop(streamed)  # rows sent ahead of the failed add go
                if attached:
                    events.setdefault(rec.client_id, []).append(
                        QueryErrorEvent(
                            qid,
                            ErrorBody("invalid_query", "The server could not run this query."),
                        )
                    )
                continue
            if new:
                self.subs[key] = sub
            sub.clients.add(rec.client_id)
            d = Desired(sub, ttl)
            rec.desired[qid] = d
            if attached:
                d.complete = True
                if later is not None:
                    builder(rec).hydrate(qid, later)
                else:
                    builder(rec).hydrate(qid, sub.result, skip=streamed)
            else:
                d.expires_at = (rec.detached_at or self.clock()) + self._ttl(d)

    def _change_schema(self, cur: Any, cmd: SchemaChange) -> None:
        # Additive only: the new columns are NULL in every row, so the rebuilt results hold the
        # same rows at the same versions and nothing is sent; only the compiled SQL changes.
        self.schema = cmd.schema
        subs = list(self.subs.values())
        for sub in subs:
            sub.build()  # a deferred build must not run after the rebuild below
            self.maintainer.remove(sub)
        self.maintainer.set_schema(cmd.schema)
        for sub in subs:
            sub.compile(cmd.schema)
            self.maintainer.add(cur, sub)
        self._outgoing.append((None, cmd.done))

    def _announce(self, schema: Schema, events: dict[str, list[Event]]) -> None:
        for rec in self.records.values():
            if rec.outbox is None:
                continue
            events.setdefault(rec.client_id, []).append(
                SchemaEvent(
                    schema.version,
                    schema.oldest_client_version,
                    not schema.supports_client(rec.schema_version),
                )
            )

    def _ttl(self, d: Desired) -> float:
        return self.limits.default_ttl if d.ttl is None else d.ttl

    def _expire(self, events: dict[str, list[Event]]) -> None:
        now = self.clock()
        for rec in list(self.records.values()):
            if rec.outbox is not None or rec.detached_at is None:
                continue
            for qid, d in list(rec.desired.items()):
                if d.expires_at is None:
                    d.expires_at = rec.detached_at + self._ttl(d)
                if d.expires_at <= now:
                    self._release(rec, qid)
            if not rec.desired and now - rec.detached_at > self.limits.record_ttl:
                self.records.pop(rec.client_id, None)

    # -- introspection for tests and benchmarks --------------------------------------------

    def stats(self) -> dict[str, int]:
        return {
            "version": self.version,
            "subscriptions": len(self.subs),
            "clients": len(self.records),
            "attached": sum(1 for r in self.records.values() if r.outbox is not None),
            "steps": self.steps,
            "pokes_sent": self.pokes_sent,
        }


@dataclass
class _Streaming:
    """A new subscription whose rows go to the client that asked for it while it loads."""

    rec: ClientRecord
    sub: Subscription
    streamed: set[RowKey]  # keys sent ahead (the step's final hydrate skips them)
    seen: int = 0  # how many of ``sub.result`` were looked at


def _nothing() -> None:
    pass


def _builder_of(
    builders: dict[str, PokeBuilder], version: int
) -> Callable[[ClientRecord], PokeBuilder]:
    """The step's one ``PokeBuilder`` per client, made on first use."""

    def builder(rec: ClientRecord) -> PokeBuilder:
        b = builders.get(rec.client_id)
        if b is None:
            b = builders[rec.client_id] = PokeBuilder(rec, version)
        return b

    return builder


def _run_all(calls: list[Outgoing]) -> None:
    for outbox, arg in calls:
        if outbox is None:
            arg()
        elif isinstance(arg, list):
            outbox.push_many(arg)
        else:
            outbox.close(arg)
