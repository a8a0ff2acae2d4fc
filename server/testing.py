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
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from queryplanner import Schema

from .app import SyncServer, create_app


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
        server._qs_loop = loop  # type: ignore[attr-defined]
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
            # Library watcher tasks (sse-starlette's) outlive the server; end them cleanly.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
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
