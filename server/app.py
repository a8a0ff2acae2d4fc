"""``create_app``: the Starlette app of the sync server (routes, limits, errors, lifespan).

    GET  /schema    the served schema (no version check)
    GET  /sync      the client's one SSE stream
    POST /queries   change the desired query set
    POST /mutate    apply a mutation batch
    POST /query     one-shot or live server-side query, streamed over SSE

See docs/protocol.md for the messages and docs/server.md for the design.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from queryplanner import Limits, Schema, query_id
from queryplanner.errors import QueryError
from queryplanner.protocol import (
    Cursor,
    ErrorBody,
    ErrorEvent,
    MutateResponse,
    ProtocolError,
    dumps,
    loads,
    parse_client_id,
    parse_cursor,
    parse_mutate_request,
    parse_queries_request,
    parse_query_request,
    parse_row_encoding,
    parse_schema_version,
)
from queryplanner.sql import compile_row_sets
from queryplanner.validate import parse_query
from queryplanner.wire import WireError

from .auth import Authenticator
from .changelog import ChangeBatch
from .db import Database
from .engine import (
    AnnounceSchema,
    Attach,
    ChangeQueries,
    Detach,
    EngineLimits,
    SchemaChange,
    SyncEngine,
)
from .errors import (
    BadRequest,
    InvalidQuery,
    MethodNotAllowed,
    NotFound,
    SchemaVersionMismatch,
    ServerError,
    TooLarge,
    render,
)
from .incremental import IncrementalMaintainer
from .migration import Additions, check_additive
from .offload import CommitWatch, offload_response
from .permissions import Permissions
from .store import Store
from .stream import Outbox, sse_response
from .subscriptions import RerunMaintainer

log = logging.getLogger("querysync.server")


# Tighter than the core's defaults: a query is cheap to send and may be costly to run.
QUERY_LIMITS = Limits(max_limit=10_000, max_depth=8, max_in_values=1_000, max_nodes=500)


@dataclass(frozen=True)
class ServerOptions:
    max_body_bytes: int = 1 << 20
    max_mutations: int = 1000
    max_queries_per_request: int = 100
    query_limits: Limits = QUERY_LIMITS
    ping_seconds: float = 15.0
    shutdown_grace_seconds: float = 1.0


class SyncServer:
    """Everything one app serves; ``app.state.sync``."""

    def __init__(
        self,
        schema: Schema,
        db_path: str,
        *,
        permissions: Permissions,
        auth: Authenticator,
        options: ServerOptions,
        engine_limits: EngineLimits,
        log_versions: int,
        log_bytes: int,
        incremental: bool = True,
    ) -> None:
        self.schema = schema
        self.options = options
        self.permissions = permissions
        self.auth = auth
        self.db = Database(db_path)
        self.store = Store(schema, self.db, log_versions=log_versions, log_bytes=log_bytes)
        maintainer = IncrementalMaintainer(schema) if incremental else RerunMaintainer()
        self.engine = SyncEngine(
            schema, self.db, self.store, limits=engine_limits, maintainer=maintainer
        )
        self.commits = CommitWatch()
        self.store.on_commit = self._committed
        self.shutdown_event: anyio.Event | None = None
        self._schemas: dict[int, Schema] = {}
        self._migrating = asyncio.Lock()

    def schema_for(self, version: int) -> Schema:
        """The schema a client at ``version`` knows, after the 409 window check."""
        if not self.schema.supports_client(version):
            s = self.schema
            raise SchemaVersionMismatch(
                f"Client schema version {version} is not served; this server serves versions "
                f"{s.oldest_client_version} to {s.version}. Reload the app or upgrade the client.",
                clientVersion=version,
                serverVersion=s.version,
                minClientVersion=s.oldest_client_version,
                action="update",
            )
        cached = self._schemas.get(version)
        if cached is None:
            cached = self._schemas[version] = self.schema.as_of(version)
        return cached

    def _committed(self, batch: ChangeBatch) -> None:
        """On the writer thread, after each commit: wake the sync engine and live queries."""
        self.engine.notify(batch)
        self.commits.notify(batch)

    async def update_schema(self, new: Schema) -> Additions:
        """Move the running server to ``new``, an additive change of the served schema.

        1. ``check_additive`` (else ``SchemaError``); 2. create the new tables and columns in
        DuckDB (NULL in every row); 3. the sync engine recompiles every subscription (no row
        changes, nothing is sent); 4. requests are checked against ``new`` (its window of
        client versions); 5. every open stream gets a ``schema`` event, with ``updateNeeded``
        for clients whose version fell out of the window.
        """
        async with self._migrating:
            additions = check_additive(self.schema, new)
            await self.db.write(self.store.migrate, new)
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()

            def finished() -> None:
                if not done.done():
                    done.set_result(None)

            self.engine.submit(SchemaChange(new, finished))
            await asyncio.wait_for(done, timeout=60)
            self.store.schema = new  # read by the writer for each batch: one reference swap
            self.schema = new
            self._schemas = {}
            self.engine.submit(AnnounceSchema(new))
            log.info("schema updated to version %d (%s)", new.version, new.hash)
            return additions

    def shutdown_streams(self) -> None:
        self.engine.close_all(ErrorEvent("shutdown", "The server is shutting down; reconnect."))

    def close(self) -> None:
        self.db.close()


Handler = Callable[[Request], Awaitable[Response]]


def _endpoint(fn: Callable[[SyncServer, Request], Awaitable[Response]]) -> Handler:
    """Every error becomes the JSON body of the protocol; nothing else leaves the server."""

    @functools.wraps(fn)
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request.app.state.sync, request)
        except ServerError as exc:
            return render(exc)
        except ProtocolError as exc:
            return render(BadRequest(str(exc), field=exc.field))
        except QueryError as exc:
            return render(InvalidQuery(exc.reason, path=exc.path))
        except WireError as exc:
            err = BadRequest(str(exc))
            err.code, err.status = "invalid_row", 422
            return render(err)
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.url.path)
            return render(ServerError("The server failed to handle this request."))

    return wrapper


async def _json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"The body has {declared} bytes; the maximum is {limit}.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"The body is larger than the maximum of {limit} bytes.")
        chunks.append(chunk)
    if not chunks or not b"".join(chunks).strip():
        raise BadRequest("The request needs a JSON body.")
    return loads(b"".join(chunks))


@_endpoint
async def get_schema(srv: SyncServer, request: Request) -> Response:
    s = srv.schema
    return _ok(
        {
            "schema": s.to_dict(),
            "hash": s.hash,
            "version": s.version,
            "minClientVersion": s.oldest_client_version,
        }
    )


@_endpoint
async def get_sync(srv: SyncServer, request: Request) -> Response:
    params = request.query_params
    client_id = parse_client_id(params.get("clientId"))
    version = parse_schema_version(params.get("schemaVersion"))
    arrow = parse_row_encoding(params.get("rows"))
    srv.schema_for(version)
    principal = srv.auth.authenticate(request)
    cursor = parse_cursor(request.headers.get("last-event-id") or params.get("lastEventId"))
    if (request.headers.get("last-event-id") or params.get("lastEventId")) and cursor is None:
        cursor = _UNKNOWN_CURSOR  # a cursor that is not ours: answer with a reset
    outbox = Outbox(srv.engine.limits.outbox_bytes)
    engine = srv.engine
    outbox.on_close = lambda ob: engine.submit(Detach(client_id, ob))
    engine.submit(Attach(client_id, principal.user_id, version, cursor, outbox, arrow))
    assert srv.shutdown_event is not None
    return sse_response(
        outbox,
        ping=srv.options.ping_seconds,
        on_end=outbox.close,
        shutdown=srv.shutdown_event,
        grace=srv.options.shutdown_grace_seconds,
    )


_UNKNOWN_CURSOR = Cursor(0, 0, "unknown")


@_endpoint
async def post_queries(srv: SyncServer, request: Request) -> Response:
    req = parse_queries_request(await _json(request, srv.options.max_body_bytes))
    if len(req.add) + len(req.remove) > srv.options.max_queries_per_request:
        raise BadRequest(
            f"The request changes {len(req.add) + len(req.remove)} queries; the maximum is "
            f"{srv.options.max_queries_per_request}."
        )
    schema = srv.schema_for(req.schema_version)
    principal = srv.auth.authenticate(request)
    rules = srv.permissions.read(principal)
    accepted: list[str] = []
    rejected: list[dict[str, Any]] = []
    adds = []
    for add in req.add:
        try:
            query = parse_query(add.query, schema, srv.options.query_limits)
        except QueryError as exc:
            rejected.append(_rejected(add.id, "invalid_query", exc.reason, path=exc.path))
            continue
        if query.aggregate is not None:
            rejected.append(
                _rejected(
                    add.id,
                    "invalid_query",
                    "Aggregate queries are not synced; run them with POST /query.",
                    path="aggregate",
                )
            )
            continue
        canonical = query_id(query)
        if canonical != add.id:
            rejected.append(
                _rejected(
                    add.id,
                    "bad_request",
                    f"The query id {add.id!r} is not the canonical id {canonical!r} of this query.",
                )
            )
            continue
        try:
            compile_row_sets(query, srv.schema, rules=rules)
        except Exception as exc:  # the compiler refused a valid AST: say so, do not crash
            rejected.append(_rejected(add.id, "invalid_query", f"The query cannot run: {exc}."))
            continue
        adds.append((add.id, query, add.ttl))
        accepted.append(add.id)
    srv.engine.submit(
        ChangeQueries(
            req.client_id,
            principal.user_id,
            req.schema_version,
            rules,
            srv.permissions.scope(principal),
            tuple(adds),
            req.remove,
        )
    )
    return _ok({"accepted": accepted, "rejected": rejected})


def _rejected(qid: str, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"id": qid, "error": ErrorBody(code, message, extra).to_json()["error"]}


@_endpoint
async def post_mutate(srv: SyncServer, request: Request) -> Response:
    req = parse_mutate_request(
        await _json(request, srv.options.max_body_bytes), max_mutations=srv.options.max_mutations
    )
    schema = srv.schema_for(req.schema_version)
    principal = srv.auth.authenticate(request)
    known = None
    if schema is not srv.schema:
        known = {t.name: frozenset(t.column_names) for t in schema.tables}
    outcome = await srv.store.mutate(
        req.client_id, req.mutations, known=known, check=srv.permissions.write_check(principal)
    )
    return _ok(MutateResponse(outcome.version, outcome.last_mutation_id, outcome.results).to_json())


@_endpoint
async def post_query(srv: SyncServer, request: Request) -> Response:
    req = parse_query_request(await _json(request, srv.options.max_body_bytes))
    schema = srv.schema_for(req.schema_version)
    principal = srv.auth.authenticate(request)
    query = parse_query(req.query, schema, srv.options.query_limits)
    assert srv.shutdown_event is not None
    return await offload_response(
        srv, query, schema, srv.permissions.read(principal), live=req.live
    )


def _ok(doc: Mapping[str, Any]) -> Response:
    return Response(dumps(doc), media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return render(NotFound(f"No endpoint {request.url.path!r}; see docs/protocol.md."))
    if exc.status_code == 405:
        return render(MethodNotAllowed(f"{request.method} is not allowed on {request.url.path!r}."))
    err = BadRequest(str(exc.detail))
    err.status = exc.status_code
    return render(err)


def create_app(
    schema: Schema,
    *,
    db_path: str = ":memory:",
    rules: Mapping[str, Any] | Permissions | None = None,
    secret: str | None = None,
    anonymous: bool = False,
    options: ServerOptions | None = None,
    engine_limits: EngineLimits | None = None,
    log_versions: int = 10_000,
    log_bytes: int = 64 << 20,
    incremental: bool = True,
) -> Starlette:
    """The sync server as a Starlette app (mount it in any Starlette/FastAPI app).

    ``rules`` is a rules document (see ``server.permissions``); ``secret`` signs and checks the
    HS256 tokens; ``anonymous`` accepts requests without a token. ``incremental=False`` keeps
    live queries by re-running them after each commit instead of ``queryplanner.ivm``. The
    database opens at startup and closes at shutdown (the lifespan).
    """
    permissions = rules if isinstance(rules, Permissions) else Permissions(schema, rules)
    auth = Authenticator(secret, anonymous=anonymous)
    opts = options or ServerOptions()
    limits = engine_limits or EngineLimits()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        srv = SyncServer(
            schema,
            db_path,
            permissions=permissions,
            auth=auth,
            options=opts,
            engine_limits=limits,
            log_versions=log_versions,
            log_bytes=log_bytes,
            incremental=incremental,
        )
        srv.shutdown_event = anyio.Event()
        app.state.sync = srv
        srv.commits.bind(asyncio.get_running_loop())
        srv.engine.start()

        async def watch() -> None:
            assert srv.shutdown_event is not None
            await srv.shutdown_event.wait()
            srv.shutdown_streams()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:
                yield
            finally:
                srv.shutdown_streams()
                tg.cancel_scope.cancel()
        await srv.engine.stop()
        srv.close()

    routes = [
        Route("/schema", get_schema, methods=["GET"]),
        Route("/sync", get_sync, methods=["GET"]),
        Route("/queries", post_queries, methods=["POST"]),
        Route("/mutate", post_mutate, methods=["POST"]),
        Route("/query", post_query, methods=["POST"]),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error}
    )
