"""The asyncio client: one sync stream, a local store under a byte budget, live subscriptions.

    async with Client("http://127.0.0.1:8000", schema, path="cache.duckdb") as client:
        sub = client.subscribe(table("issue").where(col("status") == "todo").limit(50).build())
        sub.subscribe(lambda snap: print(len(snap.rows), snap.complete, snap.source))
        await client.update("issue", [42], {"status": "done"})

Applying a server version (a poke: up to thousands of rows, Arrow batches, membership and
budget) runs on one worker thread, so a big batch does not freeze the event loop: the stream
keeps reading, timers and other tasks keep running. The local state has one lock
(``LocalState.lock``); the worker holds it while it applies a version, and every method here
that reads or writes the store or the budget takes it (``@_locked``, never across an
``await``), so the loop only waits when it touches the store in that moment. The stream task
reconnects
with exponential backoff and jitter, resumes with ``Last-Event-ID``, re-declares the desired
queries and replays the outbox on every ``hello``. See docs/client.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import httpx
import reactivex
from reactivex.abc import ObserverBase, SchedulerBase
from reactivex.disposable import Disposable
from reactivex.subject import BehaviorSubject

from queryplanner import Query, Schema, bind
from queryplanner.protocol import (
    CompleteEvent,
    ErrorEvent,
    Hello,
    MutationResult,
    Poke,
    QueryErrorEvent,
    Reset,
    ResultEvent,
    RowsEvent,
    SchemaEvent,
)

from .budget import Budget, Usage
from .coalesce import merge_runs
from .errors import CacheError, ClientClosed, SchemaVersionError, ServerError
from .live import ConnectionState, LiveQuery, Snapshot, identity_columns
from .local import LocalState, PokeOutcome
from .locking import locked as _locked
from .preload import Preloads, synced_query
from .routing import Route, route
from .store import LocalStore
from .transport import StreamEvent, Transport, backoff_delay
from .writes import Writes

log = logging.getLogger("querysync.cache")

DEFAULT_BUDGET = 100 * 2**20
PARTIAL_EMIT_INTERVAL = 0.25  # seconds between snapshots of a query still hydrating
STREAM_QUEUE = 32  # events received ahead of the one being applied (then merged)


class BudgetWarning(UserWarning):
    """The active subscriptions alone need more than the byte budget."""


class Client(Writes):
    def __init__(
        self,
        url: str,
        schema: Schema,
        token: str | None = None,
        budget_bytes: int = DEFAULT_BUDGET,
        path: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        backoff_base: float = 0.05,
        backoff_cap: float = 5.0,
        expiry_interval: float = 1.0,
        incremental: bool = True,
        arrow: bool = True,
    ) -> None:
        self.url = url
        self.schema = schema
        self.store = LocalStore(schema, path)
        self.budget = Budget(budget_bytes, clock=clock)
        self.local = LocalState(schema, self.store, self.budget)
        self.client_id = self.store.client_id
        self._token = token
        self._rng, self._sleep = rng, sleep
        self._backoff = (backoff_base, backoff_cap)
        self._expiry_interval = expiry_interval
        self.connection_state: BehaviorSubject[ConnectionState] = BehaviorSubject(
            ConnectionState.CONNECTING
        )
        self.cache_usage: BehaviorSubject[Usage] = BehaviorSubject(self.budget.usage())
        self.update_error: SchemaVersionError | None = None
        self.stale_outbox = self.store.opened.stale_outbox
        self._lives: dict[str, LiveQuery] = {}
        # Live queries answered locally but not (yet) maintained by the incremental engine:
        # hydrating ones, shapes it cannot maintain, or all of them with incremental=False.
        self._incremental = incremental
        self._arrow = arrow  # ask for hydrations as Arrow (``rows=arrow``)
        self._rerun: set[str] = set()
        self._pins: Counter[str] = Counter()
        self._demoted: set[str] = set()
        self._futures: dict[int, asyncio.Future[MutationResult]] = {}
        self._preloads = Preloads()
        self._online = asyncio.Event()
        self._flush_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="querysync-db")
        self._http: httpx.AsyncClient | None = None
        self._transport: Transport | None = None
        self._closed = False
        self.reconnects = 0
        self._restore_pending()

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._http is not None:
            return
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        self._transport = Transport(
            self._http, self.url, self.schema.version, self._token, arrow=self._arrow
        )
        self._tasks = [
            asyncio.create_task(self._stream_loop(), name="querysync-stream"),
            asyncio.create_task(self._flush_loop(), name="querysync-outbox"),
            asyncio.create_task(self._expiry_loop(), name="querysync-ttl"),
        ]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._preloads.close(ClientClosed("The client was closed before the preload completed."))
        for live in self._lives.values():
            if live.task is not None:
                live.task.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._http is not None:
            await self._http.aclose()
        self._worker.shutdown(wait=True)
        with self.local.lock:
            self.local.save_shadow()
            self.store.close()
        self.connection_state.on_next(ConnectionState.CLOSED)

    def _check_open(self) -> Transport:
        if self._closed:
            raise ClientClosed("The client is closed; create a new Client.")
        if self._transport is None:
            raise ClientClosed("The client is not started; use 'async with Client(...)'.")
        return self._transport

    # -- the stream ----------------------------------------------------------------------

    async def _stream_loop(self) -> None:
        transport = self._check_open()
        attempt = 0
        while not self._closed:
            self.connection_state.on_next(ConnectionState.CONNECTING)
            try:
                with self.local.lock:
                    cursor = self.store.get_meta("cursor")
                await self._read_stream(transport, cursor)
            except SchemaVersionError as exc:
                self._update_needed(exc)
                return
            except (httpx.HTTPError, ServerError) as exc:
                log.info("sync stream dropped: %s", exc)
            if self._online.is_set():
                attempt = 0  # the stream was up (hello): start the backoff over
            self._online.clear()
            self.local.rows.online = False
            if self._closed:
                return
            self.connection_state.on_next(ConnectionState.OFFLINE)
            await self._sleep(
                backoff_delay(attempt, self._rng, base=self._backoff[0], cap=self._backoff[1])
            )
            attempt += 1
            self.reconnects += 1

    async def _read_stream(self, transport: Transport, cursor: str | None) -> None:
        """Read the stream while earlier events are applied: the next poke is received and
        parsed while the worker applies the previous one. One consumer applies the events in
        order; when the stream ends, what was received is applied before this returns (so the
        stored cursor is the last event applied when the client reconnects)."""
        queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(maxsize=STREAM_QUEUE)
        consumer = asyncio.create_task(self._consume(queue))
        try:
            async for ev in transport.sync_stream(self.client_id, cursor):
                if consumer.done():
                    break  # it failed; its exception is raised below
                await queue.put(ev)
        except asyncio.CancelledError:
            consumer.cancel()
            raise
        except BaseException:
            await self._drain(queue, consumer)
            raise
        await self._drain(queue, consumer)

    async def _consume(self, queue: asyncio.Queue[StreamEvent | None]) -> None:
        """Apply events in order; pokes already waiting behind a poke are merged into it."""
        ahead: list[StreamEvent | None] = []
        while True:
            ev = ahead.pop(0) if ahead else await queue.get()
            if ev is None:
                return
            if not isinstance(ev.event, Poke):
                await self._on_event(ev.event, ev.id)
                continue
            burst = [ev]
            while not ahead and not queue.empty():
                nxt = queue.get_nowait()
                if nxt is not None and isinstance(nxt.event, Poke):
                    burst.append(nxt)
                else:
                    ahead.append(nxt)
            pokes = [b.event for b in burst if isinstance(b.event, Poke)]
            for last, poke in merge_runs(self.schema, pokes):
                await self._on_event(poke, burst[last].id)

    @staticmethod
    async def _drain(
        queue: asyncio.Queue[StreamEvent | None], consumer: asyncio.Task[None]
    ) -> None:
        if not consumer.done():
            await queue.put(None)
        await consumer

    def _update_needed(self, exc: SchemaVersionError) -> None:
        self.update_error = exc
        self._online.clear()
        self.connection_state.on_next(ConnectionState.UPDATE_NEEDED)
        log.warning("%s", exc)

    async def _on_event(self, event: Any, event_id: str | None) -> None:
        if isinstance(event, Hello):
            if event.resume == "fresh" and self._holds_server_rows():
                # No cursor was sent, so the server assumes we hold nothing and will not delete
                # what we have: drop it ourselves, as for a reset (pending writes stay).
                self._on_reset()
            self.connection_state.on_next(ConnectionState.ONLINE)
            self._online.set()
            self.local.rows.online = True
            self._flush_wake.set()
            with self.local.lock:
                desired = list(self.local.desired)
            await self._declare(desired, [])
        elif isinstance(event, Poke):
            await self._on_poke(event, event_id)
        elif isinstance(event, Reset):
            log.info("server reset: %s", event.reason)
            self._on_reset()
        elif isinstance(event, QueryErrorEvent):
            self._on_query_error(event)
        elif isinstance(event, SchemaEvent) and event.update_needed:
            self._update_needed(
                SchemaVersionError(
                    self.schema.version, event.server_schema_version, event.min_client_version
                )
            )
            raise self.update_error  # type: ignore[misc]
        elif isinstance(event, ErrorEvent):
            log.info("server closed the stream: %s %s", event.code, event.message)

    @_locked
    def _holds_server_rows(self) -> bool:
        return any(True for _ in self.budget.rows())

    @_locked
    def _on_reset(self) -> None:
        self.local.apply_reset()
        for live in self._lives.values():
            if live.mode == "sync":  # hydrating again: re-run (throttled) until complete
                self._unwatch(live.qid)
                self._rerun.add(live.qid)
        self._refresh(None)

    def _apply_poke(self, poke: Poke, event_id: str | None) -> PokeOutcome:
        """On the worker thread."""
        with self.local.lock:
            return self.local.apply_poke(poke, event_id)

    async def _on_poke(self, poke: Poke, event_id: str | None) -> None:
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(self._worker, self._apply_poke, poke, event_id)
        self._after_poke(poke, outcome)

    @_locked
    def _after_poke(self, poke: Poke, outcome: PokeOutcome) -> None:
        for res in poke.mutations:
            self._resolve(res)
        if outcome.evicted:
            self._spawn(self._declare([], outcome.evicted))
        if outcome.demoted:
            self._demote(outcome.demoted)
        self._preloads.failed([*outcome.evicted, *outcome.demoted], _evicted)
        self._preloads.completed(poke.complete)
        self._refresh(outcome.tables | set(poke.complete), completed=set(poke.complete))
        self._publish_usage()

    async def _expiry_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._expiry_interval)
            self.expire()

    @_locked
    def expire(self) -> list[str]:
        """Drop the inactive queries whose TTL has ended (on the injected clock): their rows
        leave the store and they leave the server's desired set. Runs every
        ``expiry_interval`` seconds; returns the dropped query ids."""
        expired = [q for q in self.budget.expired() if q not in self._pins]
        if not expired:
            return []
        with self.local.transaction():
            self.local.drop_desired(expired)
        log.info("dropped %d expired queries: %s", len(expired), ", ".join(expired))
        self._preloads.failed(expired, lambda q: CacheError(
            f"Query {q} reached its TTL before it was complete."))
        self._spawn(self._declare([], expired))
        self._publish_usage()
        return expired

    @_locked
    def _on_query_error(self, event: QueryErrorEvent) -> None:
        self.local.drop_desired([event.query_id])
        self._preloads.failed(
            [event.query_id], lambda _: ServerError(422, event.error.code, event.error.message)
        )
        live = self._lives.pop(event.query_id, None)
        if live is not None:
            self._unwatch(live.qid)
            live.fail(ServerError(422, event.error.code, event.error.message))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _declare(self, add: Sequence[str], remove: Sequence[str]) -> None:
        """Change the server's desired set; offline changes are re-declared on the next hello."""
        if not (add or remove) or not self._online.is_set():
            return
        transport = self._check_open()
        with self.local.lock:
            docs = [self._add_doc(q) for q in add if q in self.local.desired]
        body = {
            "clientId": self.client_id,
            "schemaVersion": self.schema.version,
            "add": docs,
            "remove": list(remove),
        }
        try:
            answer = await transport.post("/queries", body)
        except SchemaVersionError as exc:
            self._update_needed(exc)
            return
        except httpx.HTTPError as exc:
            log.info("declaring queries failed (will retry on reconnect): %s", exc)
            return
        for rej in answer.get("rejected", []):
            err = rej.get("error", {})
            self._on_query_error(
                QueryErrorEvent(rej["id"], _error_body(err.get("code"), err.get("message")))
            )

    @_locked
    def _add_doc(self, qid: str) -> dict[str, Any]:
        d = self.local.desired[qid]
        doc: dict[str, Any] = {"id": qid, "query": d.json}
        if d.ttl is not None:
            doc["ttl"] = d.ttl
        return doc

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(
        self, query: Query, *, ttl: float | None = None
    ) -> reactivex.Observable[Snapshot]:
        """A live query: an Observable of ``Snapshot``s (see docs/client.md)."""
        bound = bind(query, self.schema)

        def on_subscribe(
            observer: ObserverBase[Snapshot], scheduler: SchedulerBase | None = None
        ) -> Disposable:
            if self._closed:
                observer.on_error(ClientClosed("The client is closed."))
                return Disposable()
            live = self._lives.get(bound.id)
            if live is None:
                live = self._activate(bound, ttl)
            live.observers.append(observer)
            if live.last is not None:
                observer.on_next(live.last)
            return Disposable(lambda: self._release(live, observer))

        return reactivex.create(on_subscribe)

    @_locked
    def _activate(self, query: Query, ttl: float | None) -> LiveQuery:
        r = self._route(query)
        live = LiveQuery(query, query.id, r.mode, r.relies_on, explanation=r.explanation)
        self._lives[live.qid] = live
        if live.mode != "server":
            self._rerun.add(live.qid)
        self._start_mode(live, ttl)
        return live

    def _start_mode(self, live: LiveQuery, ttl: float | None) -> None:
        if live.mode == "server":
            live.task = asyncio.ensure_future(self._offload(live))
            return
        if live.mode == "sync":
            new = live.qid not in self.local.desired
            self.local.add_desired(live.query, live.qid, pinned=False, ttl=ttl)
            live.relies_on = (live.qid,)
            if new:
                self._spawn(self._declare([live.qid], []))
        for qid in live.relies_on:
            self._pin(qid)
        self._emit_local(live)
        if live.mode == "sync":
            self._enforce_after_admit()

    @_locked
    def _route(self, query: Query) -> Route:
        if query.id in self._demoted:
            return Route("server", (), "Served by the server: the active set exceeds the budget.")
        return route(query, self.local.rows)

    @_locked
    def _release(self, live: LiveQuery, observer: ObserverBase[Snapshot]) -> None:
        if observer in live.observers:
            live.observers.remove(observer)
        if live.observers or self._lives.get(live.qid) is not live:
            return
        del self._lives[live.qid]
        self._unwatch(live.qid)
        if live.task is not None:
            live.task.cancel()
        self._demoted.discard(live.qid)
        for qid in live.relies_on:
            self._unpin(qid)
        self._publish_usage()

    @_locked
    def _pin(self, qid: str) -> None:
        self._pins[qid] += 1
        if qid in self.budget:
            self.budget.pin(qid)

    @_locked
    def _unpin(self, qid: str) -> None:
        self._pins[qid] -= 1
        if self._pins[qid] <= 0:
            del self._pins[qid]
            if qid in self.budget:
                self.budget.unpin(qid)

    @_locked
    def _watch(self, live: LiveQuery) -> None:
        """Hand a locally answered, complete live query to the incremental engine."""
        if (
            self._incremental
            and live.qid in self._rerun
            and not self._hydrating(live)
            and self.local.live.watch(live.qid, live.query)
        ):
            self._rerun.discard(live.qid)

    @_locked
    def _unwatch(self, qid: str) -> None:
        self._rerun.discard(qid)
        self.local.live.unwatch(qid)

    @_locked
    def _emit_local(self, live: LiveQuery) -> None:
        self._watch(live)
        d = self.local.desired.get(live.qid)
        complete = live.mode == "local" or (d is not None and d.complete_at is not None)
        for qid in live.relies_on:
            if qid in self.budget and qid in self.local.desired:
                self.budget.touch(qid)
        if live.qid in self.local.live:
            rows = self.local.live.rows(live.qid)
        else:
            rows = tuple(self.local.run(live.query))
        snap = Snapshot(live.qid, rows, complete, self.local.version, "local")
        live.emit(snap, identity_columns(self.schema, live.query))

    @_locked
    def _refresh(self, tables: set[str] | None, completed: Collection[str] = ()) -> None:
        """Emit what the last write changed: the watched queries the engine reports changed
        (the others cost nothing), and the re-run ones that read a written table."""
        changed = self.local.live.take_changed()
        if tables is None:
            lives = list(self._lives.values())
        else:
            qids = changed | self._rerun | set(completed)
            lives = [self._lives[q] for q in sorted(qids) if q in self._lives]
        for live in lives:
            if live.mode == "server":
                continue
            if live.qid in self.local.live:
                if tables is None or live.qid in changed or live.qid in completed:
                    self._emit_local(live)
            elif tables is None or live.qid in completed or _reads(live, self.local, tables):
                if live.qid not in completed and self._hydrating(live):
                    self._emit_later(live)
                else:
                    self._emit_local(live)

    @_locked
    def _hydrating(self, live: LiveQuery) -> bool:
        d = self.local.desired.get(live.qid)
        return live.mode == "sync" and d is not None and d.complete_at is None

    def _emit_later(self, live: LiveQuery) -> None:
        """A hydrating query's partial answers are coalesced: re-reading a growing result on
        every poke would make hydration quadratic. One snapshot per interval, then the
        complete one; the interval grows with the cost of reading the partial result (at most
        a tenth of the loop's time goes to partial snapshots of a large hydration)."""
        if live.emit_scheduled:
            return
        live.emit_scheduled = True

        def emit() -> None:
            live.emit_scheduled = False
            if self._lives.get(live.qid) is live and not self._closed:
                t0 = time.perf_counter()
                self._emit_local(live)
                live.emit_cost = time.perf_counter() - t0

        delay = max(PARTIAL_EMIT_INTERVAL, 9 * live.emit_cost)
        asyncio.get_running_loop().call_later(delay, emit)

    @_locked
    def _enforce_after_admit(self) -> None:
        with self.local.transaction():
            evicted, demoted = self.local._enforce_budget()
        self._preloads.failed([*evicted, *demoted], _evicted)
        if evicted:
            self._spawn(self._declare([], evicted))
        if demoted:
            self._demote(demoted)
        self._publish_usage()

    @_locked
    def _demote(self, qids: Sequence[str]) -> None:
        """The pinned set outgrew the budget: serve these from the server, do not thrash."""
        msg = (
            f"The active subscriptions need more than the cache budget of "
            f"{self.budget.budget_bytes} bytes; {len(qids)} of them are served from the server "
            "instead of the local store."
        )
        warnings.warn(msg, BudgetWarning, stacklevel=2)
        log.warning(msg)
        self._demoted.update(qids)
        self._spawn(self._declare([], list(qids)))
        for live in list(self._lives.values()):
            if live.qid in qids or set(live.relies_on) & set(qids):
                for qid in live.relies_on:
                    self._pins[qid] -= 1
                    if self._pins[qid] <= 0:
                        del self._pins[qid]
                live.mode, live.relies_on = "server", ()
                self._unwatch(live.qid)
                live.task = asyncio.ensure_future(self._offload(live))
        self._publish_usage(warning=msg)

    @_locked
    def _publish_usage(self, warning: str | None = None) -> None:
        self.cache_usage.on_next(self.budget.usage(sorted(self._demoted), warning))

    async def _offload(self, live: LiveQuery) -> None:
        """Serve a query from the server (``POST /query`` with ``live``), retrying offline."""
        transport = self._check_open()
        ident = identity_columns(self.schema, live.query)
        attempt = 0
        while not self._closed:
            rows: list[dict[str, Any]] = []
            try:
                async for ev in transport.query_stream(live.query.to_json(), live=True):
                    if isinstance(ev, RowsEvent):
                        rows.extend(ev.rows)
                    elif isinstance(ev, CompleteEvent):
                        attempt = 0
                        live.emit(
                            Snapshot(live.qid, tuple(rows), True, ev.version, "server"), ident
                        )
                    elif isinstance(ev, ResultEvent):
                        live.emit(Snapshot(live.qid, ev.rows, True, ev.version, "server"), ident)
            except SchemaVersionError as exc:
                self._update_needed(exc)
                live.fail(exc)
                return
            except ServerError as exc:
                live.fail(exc)
                return
            except httpx.HTTPError as exc:
                log.info("offloaded query %s dropped: %s", live.qid, exc)
            await self._sleep(
                backoff_delay(attempt, self._rng, base=self._backoff[0], cap=self._backoff[1])
            )
            attempt += 1

    # -- one-shot reads ------------------------------------------------------------------

    @_locked
    def explain(self, query: Query) -> str:
        return self._route(bind(query, self.schema)).explanation

    async def preload(self, query: Query, *, ttl: float | None = None) -> int:
        """Sync ``query``'s rows into the local store without subscribing (``cache.preload``);
        returns the server version at which the store holds it complete (at once when the
        store already covers it). For an aggregate, the rows it is computed from are synced."""
        self._check_open()
        bound = synced_query(bind(query, self.schema), self.schema)
        with self.local.lock:
            if route(bound, self.local.rows).mode == "local":
                return self.local.version
            done = self._preloads.wait(bound.id)
            new = bound.id not in self.local.desired
            self.local.add_desired(bound, bound.id, pinned=False, ttl=ttl)
        if new:
            self._spawn(self._declare([bound.id], []))
        self._enforce_after_admit()
        return await done

    async def query(self, query: Query) -> Snapshot:
        """The query's answer once: from the local store when covered, else from the server."""
        bound = bind(query, self.schema)
        with self.local.lock:
            r = self._route(bound)
            if r.mode == "local":
                rows = tuple(self.local.run(bound))
                return Snapshot(bound.id, rows, True, self.local.version, "local")
        transport = self._check_open()
        out: list[dict[str, Any]] = []
        async for ev in transport.query_stream(bound.to_json(), live=False):
            if isinstance(ev, RowsEvent):
                out.extend(ev.rows)
            elif isinstance(ev, CompleteEvent):
                return Snapshot(bound.id, tuple(out), True, ev.version, "server")
        raise ServerError(502, "incomplete", "The server closed the query stream before complete.")


def _reads(live: LiveQuery, local: LocalState, tables: set[str]) -> bool:
    from .tables import query_tables

    return bool(query_tables(local.schema, live.query) & tables)


def _error_body(code: Any, message: Any) -> Any:
    from queryplanner.protocol import ErrorBody

    return ErrorBody(str(code or "invalid_query"), str(message or "The query was rejected."))


def _evicted(qid: str) -> Exception:
    return CacheError(f"Query {qid} left the cache before it was complete: the budget cannot "
                      "hold it beside the active queries.")
