"""Run a real server on 127.0.0.1 for tests (ours and the client's): uvicorn in a thread.

    from server.testing import run_server
    with run_server(schema, db_path, anonymous=True) as url:
        httpx.get(url + "/schema")

``port=0`` picks a free port. Startup and shutdown waits are bounded; leaving the block closes
every stream with the ``shutdown`` event, stops uvicorn and closes the database, so the same
database file can be opened again (a restart).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from queryplanner import Schema, parse_query, query_id
from queryplanner.wire_arrow import from_ipc

from .app import SyncServer, create_app
from .columnar import wire_rows


@dataclass
class RunningServer:
    url: str
    app: Starlette
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def sync(self) -> SyncServer:
        srv: SyncServer = self.app.state.sync
        return srv

    def call(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the server's event loop (e.g. to close streams)."""
        loop = getattr(self.server, "_qs_loop", None)
        if loop is not None:
            loop.call_soon_threadsafe(fn, *args)

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine on the server's event loop and wait for its result."""
        loop = getattr(self.server, "_qs_loop", None)
        assert loop is not None, "the server is not running"
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


@contextlib.contextmanager
def serve_app(
    app: Starlette, *, port: int = 0, start_timeout: float = 20.0
) -> Iterator[RunningServer]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a daemon thread until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server._qs_loop = loop  # type: ignore[attr-defined]
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
            # Library watcher tasks (sse-starlette's) outlive the server; end them cleanly.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            # A connection closed at the last moment (a client that dropped its stream while a
            # large write was under way) finishes closing on the loop's next iterations; one
            # still open after a second is aborted, so no transport outlives the loop.
            connections = server.server_state.connections
            for _ in range(50):
                if not connections:
                    break
                loop.run_until_complete(asyncio.sleep(0.02))
            for conn in list(connections):
                transport = getattr(conn, "transport", None)
                if transport is not None:
                    transport.abort()
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=f"querysync-test-server-{bound}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"The test server on port {bound} did not start.")
        time.sleep(0.02)
    running = RunningServer(f"http://127.0.0.1:{bound}", app, server, thread)
    try:
        yield running
    finally:
        running.call(running.sync.shutdown_streams)
        time.sleep(0.1)  # let the final events reach the sockets
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextlib.contextmanager
def run_server(
    schema: Schema, db_path: str | Path = ":memory:", *, port: int = 0, **opts: Any
) -> Iterator[str]:
    """Start ``create_app(schema, db_path=..., **opts)`` on 127.0.0.1; yield its base URL."""
    with serve_app(create_app(schema, db_path=str(db_path), **opts), port=port) as running:
        yield running.url


@dataclass
class Received:
    name: str
    id: str
    data: dict[str, Any]


def completed(evs: list[Received]) -> set[str]:
    """The query ids the pokes among ``evs`` marked complete."""
    return {q for e in evs if e.name == "poke" for q in e.data["complete"]}


class StreamReader:
    """Reads ``GET /sync`` in a thread with httpx-sse; ``close()`` drops the connection.

    ``state`` is the client's row state built by applying the pokes (table -> key -> row),
    ``last_id`` the last poke id, for reconnecting with ``Last-Event-ID``.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        schema_version: int = 1,
        last_event_id: str | None = None,
        token: str | None = None,
        state: dict[str, dict[tuple[Any, ...], dict[str, Any]]] | None = None,
        keys: dict[str, tuple[str, ...]] | None = None,
        arrow_schema: Schema | None = None,
    ) -> None:
        """``arrow_schema``: open the stream with ``rows=arrow`` and decode the Arrow blocks
        of hydrations with this schema (into ``state``, as wire rows)."""
        import httpx

        self.events: list[Received] = []
        self.state = state if state is not None else {}
        self.keys = keys or {}
        self.last_id = last_event_id
        self._cond = threading.Condition()
        self._stop = threading.Event()
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(30, connect=5))
        self._params = {"clientId": client_id, "schemaVersion": str(schema_version)}
        self.arrow_schema = arrow_schema
        if arrow_schema is not None:
            self._params["rows"] = "arrow"
        self._headers = headers
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import httpx
        import orjson
        from httpx_sse import connect_sse

        try:
            with connect_sse(
                self._client, "GET", "/sync", params=self._params, headers=self._headers
            ) as es:
                self.status = es.response.status_code
                stream = es.response.extensions.get("network_stream")
                self._socket = stream.get_extra_info("socket") if stream is not None else None
                if es.response.status_code != 200:
                    es.response.read()
                    self.error_body = orjson.loads(es.response.content)
                    return
                for sse in es.iter_sse():
                    if self._stop.is_set():
                        return
                    ev = Received(sse.event, sse.id, orjson.loads(sse.data) if sse.data else {})
                    with self._cond:
                        self._apply(ev)
                        self.events.append(ev)
                        self._cond.notify_all()
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by us or by the server
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    ended = False
    _socket: socket.socket | None = None
    status = 0
    error_body: Any = None

    def _apply(self, ev: Received) -> None:
        if ev.name == "reset":
            self.state.clear()
        elif ev.name == "poke":
            for table, rows in ev.data["put"].items():
                pk = self.keys.get(table, ("id",))
                for row in rows:
                    self.state.setdefault(table, {})[tuple(row[k] for k in pk)] = row
            for table, keys in ev.data["del"].items():
                for key in keys:
                    self.state.get(table, {}).pop(tuple(key), None)
            for table, blocks in ev.data.get("arrow", {}).items():
                assert self.arrow_schema is not None, "Arrow rows on a stream that asked for JSON"
                t = self.arrow_schema.table(table)
                pk = self.keys.get(table, ("id",))
                for block in blocks:
                    for row in wire_rows(t, from_ipc(t, base64.b64decode(block))):
                        self.state.setdefault(table, {})[tuple(row[k] for k in pk)] = row
            self.last_id = ev.id

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[Received]:
        """Wait until ``predicate(events)`` is true; raise TimeoutError naming what arrived."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = [e.name for e in self.events]
                    raise TimeoutError(f"Condition not met in {timeout}s; events: {names}")
                self._cond.wait(left)
            return list(self.events)

    def wait_version(self, version: int, timeout: float = 10.0) -> None:
        self.wait_for(
            lambda evs: any(e.name == "poke" and e.data["version"] >= version for e in evs),
            timeout,
        )

    def close(self) -> None:
        """Drop the connection (as a network failure would) and stop reading."""
        self._stop.set()
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)
        self._client.close()
        self._thread.join(timeout=10)


# -- helpers for tests against the demo schema ----------------------------------------------

SECRET = "test-secret-0123456789abcdef-0123456789"
T0 = "2026-01-01T00:00:00"


def issue(i: int, **over: Any) -> dict[str, Any]:
    row = {
        "id": i,
        "project_id": 1,
        "title": f"issue {i}",
        "description": None,
        "status": "open",
        "priority": i % 4,
        "assignee_id": None,
        "creator_id": 1,
        "visibility": "public",
        "estimate": None,
        "sort_order": float(i),
        "created": T0,
        "modified": T0,
    }
    row.update(over)
    return row


def seed_mutations(n_issues: int = 6) -> list[dict[str, Any]]:
    rows: list[tuple[str, dict[str, Any]]] = [
        ("user", {"id": 1, "name": "ann", "email": None}),
        ("user", {"id": 2, "name": "bob", "email": None}),
        ("team", {"id": 1, "key": "ENG", "name": "Engineering"}),
        ("project", {"id": 1, "team_id": 1, "name": "sync"}),
        ("label", {"id": 1, "name": "bug", "color": "red"}),
    ]
    rows += [("issue", issue(i)) for i in range(1, n_issues + 1)]
    rows += [
        ("comment", {"id": 1, "issue_id": 1, "creator_id": 2, "body": "first", "created": T0}),
        ("issue_label", {"issue_id": 1, "label_id": 1}),
    ]
    return [{"id": k + 1, "op": "insert", "table": t, "row": r} for k, (t, r) in enumerate(rows)]


class Api:
    """A small synchronous client for the JSON endpoints."""

    def __init__(self, url: str, client_id: str = "seed-client", token: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, timeout=20, headers=headers)
        self.client_id = client_id
        self.next_id = 1

    def mutate(self, *muts: dict[str, Any], schema_version: int = 1) -> dict[str, Any]:
        batch = []
        for m in muts:
            batch.append({**m, "id": self.next_id})
            self.next_id += 1
        r = self.http.post(
            "/mutate",
            json={"clientId": self.client_id, "schemaVersion": schema_version, "mutations": batch},
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def add_query(
        self,
        schema: Schema,
        doc: dict[str, Any],
        client_id: str | None = None,
        schema_version: int = 1,
    ) -> str:
        qid = query_id(parse_query(doc, schema))
        r = self.http.post(
            "/queries",
            json={
                "clientId": client_id or self.client_id,
                "schemaVersion": schema_version,
                "add": [{"id": qid, "query": doc}],
            },
        )
        assert r.status_code == 200 and r.json()["accepted"] == [qid], r.text
        return qid

    def close(self) -> None:
        self.http.close()


def db_rows(running: RunningServer, sql: str, params: list[Any] | None = None) -> list[Any]:
    """Read DuckDB directly (the oracle) through the server's reader cursor."""
    srv = running.sync

    def read() -> list[Any]:
        return srv.db.cursor().execute(sql, params or []).fetchall()

    return srv.db._readers.submit(read).result(timeout=10)


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value
