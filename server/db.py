"""The one place DuckDB is called from: one writer thread, reader threads (and the sync
engine's own thread, which takes its cursor here too).

DuckDB calls block and cost ~0.2 ms even for ``SELECT 1``, so none runs on the event loop.
Every thread gets its own cursor (a DuckDB connection sharing the database); the writer thread
is the only one that writes, so transactions never conflict, and readers see committed
snapshots (DuckDB's MVCC).

DuckDB lets one process at a time open a file for writing. ``connect`` translates its refusal
("Could not set lock on file") into ``DatabaseLocked``, naming the file and the process that
holds it; ``check_available`` lets a command fail with that one line before it starts a
server (``querysync serve``, ``querysync demo``).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from queryplanner.sql import DUCKDB_SETUP

T = TypeVar("T")

_HOLDER = re.compile(r"\(PID (\d+)\)")


class DatabaseUnavailable(RuntimeError):
    """The DuckDB file cannot be opened (the message is DuckDB's first line, with the file)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


class DatabaseLocked(DatabaseUnavailable):
    """Another process holds the DuckDB file; ``pid`` is that process when DuckDB names it."""

    def __init__(self, path: str, pid: int | None) -> None:
        self.pid = pid
        holder = f" (PID {pid})" if pid is not None else ""
        super().__init__(
            path,
            f"The database file {path} is in use by another process{holder}; stop that "
            "process or choose another file (--db).",
        )


def connect(path: str) -> duckdb.DuckDBPyConnection:
    """``duckdb.connect(path)``, with a file another process holds as ``DatabaseLocked``."""
    try:
        return duckdb.connect(path)
    except duckdb.IOException as exc:
        detail = str(exc)
        if "Could not set lock" in detail:
            holder = _HOLDER.search(detail)
            raise DatabaseLocked(path, int(holder.group(1)) if holder else None) from None
        raise DatabaseUnavailable(path, f"Cannot open {path}: {detail.splitlines()[0]}") from None


def check_available(path: str | Path) -> None:
    """Raise ``DatabaseLocked`` (or ``DatabaseUnavailable``) now if ``path`` cannot be opened,
    so a command fails before it starts serving. A missing file is available (it is created);
    another process may still take the file between this check and the server's own open."""
    path = str(path)
    if path == ":memory:" or not Path(path).exists():
        return
    connect(path).close()


class Database:
    def __init__(self, path: str, *, readers: int = 2) -> None:
        self.path = path
        self._conn = connect(path)
        for statement in DUCKDB_SETUP:  # works around a DuckDB bug; cursors inherit it
            self._conn.execute(statement)
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="qs-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="qs-reader")
        self._closed = False

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor (created on first use)."""
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cur is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("The database is closed.")
                cur = self._conn.cursor()
                self._cursors.append(cur)
            self._local.cursor = cur
        return cur

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    def write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run on the writer thread and wait (for startup, the CLI and bulk loads)."""
        return self._writer.submit(fn, *args).result()

    def close(self) -> None:
        for pool in (self._readers, self._writer):
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self._closed = True
            for cur in self._cursors:
                cur.close()
            self._cursors.clear()
            self._conn.close()
