"""The one place DuckDB is called from: one writer thread, reader threads (and the sync
engine's own thread, which takes its cursor here too).

DuckDB calls block and cost ~0.2 ms even for ``SELECT 1``, so none runs on the event loop.
Every thread gets its own cursor (a DuckDB connection sharing the database); the writer thread
is the only one that writes, so transactions never conflict, and readers see committed
snapshots (DuckDB's MVCC).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import duckdb

from queryplanner.sql import DUCKDB_SETUP

T = TypeVar("T")


class Database:
    def __init__(self, path: str, *, readers: int = 2) -> None:
        self.path = path
        self._conn = duckdb.connect(path)
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
