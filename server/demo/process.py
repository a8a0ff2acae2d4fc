"""The demo server as a child process on 127.0.0.1, for the browser tests and ``bench/demo.py``.

    with DemoProcess(db_path) as demo:      # a free port, waits until it answers
        page.goto(demo.url)
        demo.stop()                          # the app goes offline
        demo.start(schema=bumped_schema)     # same port, same database

A real process (not a thread) so that stopping it drops every socket the browser holds, as a
crashed or restarted server would, and the DuckDB file is closed before the next start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from .seed import SCHEMA_PATH

ROOT = Path(__file__).resolve().parents[2]

# Debian's Chromium, driven by Playwright without a browser download (scripts/ensure_chromium).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class DemoProcessError(RuntimeError):
    """The demo server did not start (its output is in the message) or did not stop."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DemoProcess:
    """``python -m server.demo.command`` on a fixed free port, restartable."""

    def __init__(self, db: Path, *, port: int | None = None, issues: int = 50_000) -> None:
        self.db = Path(db)
        self.port = port or free_port()
        self.issues = issues
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.db.with_suffix(".log")

    def start(self, *, schema: Path = SCHEMA_PATH, timeout: float = 120.0) -> DemoProcess:
        if self.proc is not None:
            raise DemoProcessError(f"the demo server on port {self.port} is already running")
        cmd = [sys.executable, "-m", "server.demo.command", "--db", str(self.db),
               "--port", str(self.port), "--schema", str(schema), "--issues", str(self.issues)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise DemoProcessError(f"the demo server exited at start:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}schema", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise DemoProcessError(f"the demo server did not answer within {timeout} s:\n"
                               f"{self.output()}")

    def stop(self, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()  # open streams kept uvicorn from a graceful exit in time
            proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def __enter__(self) -> DemoProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
