"""The local store: DuckDB tables for the schema, batched row application, persisted metadata.

One DuckDB connection, in memory or in a file (``path``) so the cache survives restarts. Each
schema table gets a DuckDB table (``queryplanner.sql.create_table_sql``) with one extra column
``_v``: the server version that last changed the row. Private tables:

    _qs_meta(key, value)       client id, schema version and hash, the resume cursor, ...
    _qs_outbox(id, body)       pending mutations not yet acknowledged (the persisted outbox)

Rows arrive in wire form and are written per table as one Arrow batch and one
``INSERT OR REPLACE ... SELECT`` (timestamps and JSON cast by DuckDB), deletes as one
``DELETE ... USING``: never a statement per row (DuckDB costs ~0.4 ms per statement here).
A server version is applied inside one transaction (``transaction()``), so every query sees
either the old or the new state, never a torn one.

When the stored schema hash differs from the client's schema the store is discarded and rebuilt
(like an IndexedDB upgrade); ``opened`` says why, and the old outbox is handed back to the
caller so pending writes of the old schema are reported, not silently dropped.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import orjson

from queryplanner import ColumnType, Schema, Table
from queryplanner.sql import DUCKDB_SETUP, create_table_sql
from queryplanner.wire_arrow import VERSION_COLUMN

from .batch import RowBatch, key_table
from .errors import StoreError
from .journal import Journal

log = logging.getLogger("querysync.cache")

def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Opened:
    """What opening the store found: a fresh, reused or rebuilt store."""

    state: str  # "fresh" | "reused" | "rebuilt"
    reason: str
    stale_outbox: tuple[dict[str, Any], ...] = ()


class LocalStore:
    def __init__(self, schema: Schema, path: str | None = None) -> None:
        self.schema = schema
        self.path = path
        try:
            self.con = duckdb.connect(path or ":memory:")
            for statement in DUCKDB_SETUP:  # works around a DuckDB bug that loses rows
                self.con.execute(statement)
        except duckdb.Error as exc:
            raise StoreError(f"Cannot open the local store at {path!r}: {exc}") from None
        self._inserts = {t.name: self._insert_sql(t) for t in schema.tables}
        # Bumped by every write to a table: answers computed from it are stale once it moves.
        self.generation: dict[str, int] = dict.fromkeys(schema.table_names, 0)
        self._deletes = {t.name: self._delete_sql(t, "_qs_batch") for t in schema.tables}
        # Row images of writes to watched tables, for the incremental engine (cache.journal).
        self.journal = Journal(schema)
        self._returning = {
            t.name: " RETURNING " + ", ".join(f"{_q(t.name)}.{_q(c)}" for c in t.column_names)
            for t in schema.tables
        }
        self.opened = self._open()

    # -- opening and schema upgrades -----------------------------------------------------

    def _open(self) -> Opened:
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS _qs_meta (key VARCHAR PRIMARY KEY, value VARCHAR)"
        )
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS _qs_outbox (id BIGINT PRIMARY KEY, body VARCHAR)"
        )
        old_hash = self.get_meta("schema_hash")
        if old_hash == self.schema.hash:
            return Opened("reused", f"The store matches schema version {self.schema.version}.")
        stale: tuple[dict[str, Any], ...] = ()
        if old_hash is None:
            state, reason = "fresh", "A new local store."
        else:
            stale = tuple(self.outbox())
            state = "rebuilt"
            reason = (
                f"The local store was built for schema version {self.get_meta('schema_version')} "
                f"(hash {old_hash}); this client has version {self.schema.version} (hash "
                f"{self.schema.hash}). The store was discarded and rebuilt"
                + (
                    f"; {len(stale)} pending mutation(s) of the old schema were not sent."
                    if stale
                    else "."
                )
            )
            log.warning(reason)
        with self.transaction():
            for (name,) in self.con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT starts_with(table_name, '_qs_')"
                " AND database_name = current_database()"
            ).fetchall():
                self.con.execute(f"DROP TABLE {_q(name)}")
            self.con.execute("DELETE FROM _qs_meta")
            self.con.execute("DELETE FROM _qs_outbox")
            for stmt in _statements(create_table_sql(self.schema, version_column=VERSION_COLUMN)):
                # No PRIMARY KEY index: keeping DuckDB's ART index up to date made every batch
                # write ~4x slower; put_batch replaces rows by key itself (delete, then insert).
                self.con.execute(_PRIMARY_KEY.sub(")", stmt))
            self.set_meta("schema_hash", self.schema.hash)
            self.set_meta("schema_version", str(self.schema.version))
            self.set_meta("client_id", secrets.token_urlsafe(12))
        return Opened(state, reason, stale)

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.con.close()

    # -- metadata ------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM _qs_meta WHERE key = ?", [key]).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def set_metas(self, values: Mapping[str, str | None]) -> None:
        """Several metadata values in one statement (each costs ~0.4 ms); None is stored as
        NULL. Not DELETE + INSERT: in the poke's transaction that made later scans of the
        row tables ~4x slower (measured, see bench/client.py's cold covered query)."""
        if not values:
            return
        # An UPDATE of the keys there already (every poke's version and cursor) costs about
        # half an upsert; keys not there yet are upserted.
        keys = list(values)
        cases = " ".join("WHEN ? THEN ?" for _ in keys)
        params = [x for kv in values.items() for x in kv]
        row = self.con.execute(
            f"UPDATE _qs_meta SET value = CASE key {cases} END WHERE key IN "
            f"({', '.join('?' for _ in keys)})",
            [*params, *keys],
        ).fetchone()
        if row is not None and int(row[0]) == len(keys):
            return
        marks = ", ".join("(?, ?)" for _ in values)
        self.con.execute(f"INSERT OR REPLACE INTO _qs_meta VALUES {marks}", params)

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.con.execute("DELETE FROM _qs_meta WHERE key = ?", [key])
        else:
            self.con.execute("INSERT OR REPLACE INTO _qs_meta VALUES (?, ?)", [key, value])

    @property
    def client_id(self) -> str:
        cid = self.get_meta("client_id")
        assert cid is not None
        return cid

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # -- the outbox ----------------------------------------------------------------------

    def outbox(self) -> list[dict[str, Any]]:
        rows = self.con.execute("SELECT body FROM _qs_outbox ORDER BY id").fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def outbox_add(self, mutation: Mapping[str, Any]) -> None:
        self.con.execute(
            "INSERT OR REPLACE INTO _qs_outbox VALUES (?, ?)",
            [mutation["id"], orjson.dumps(dict(mutation)).decode()],
        )

    def outbox_remove_through(self, last_id: int) -> None:
        self.con.execute("DELETE FROM _qs_outbox WHERE id <= ?", [last_id])

    # -- rows ----------------------------------------------------------------------------

    def _insert_sql(self, table: Table) -> str:
        cols = [*table.column_names, VERSION_COLUMN]
        exprs = []
        for c in table.columns:
            if c.type is ColumnType.TIMESTAMP:
                exprs.append(f"CAST({_q(c.name)} AS TIMESTAMP)")
            elif c.type is ColumnType.JSON:
                exprs.append(f"CAST({_q(c.name)} AS JSON)")
            else:
                exprs.append(_q(c.name))
        exprs.append(_q(VERSION_COLUMN))
        return (
            f"INSERT INTO {_q(table.name)} ({', '.join(map(_q, cols))}) "
            f"SELECT {', '.join(exprs)} FROM _qs_batch"
        )

    def _delete_sql(self, table: Table, source: str) -> str:
        """Delete the rows whose keys are in the registered Arrow table ``source``."""
        cond = " AND ".join(
            f"{_q(table.name)}.{_q(k)} = "
            + (
                f"CAST({source}.{_q(k)} AS TIMESTAMP)"
                if table.column(k).type is ColumnType.TIMESTAMP
                else f"{source}.{_q(k)}"
            )
            for k in table.primary_key
        )
        return f"DELETE FROM {_q(table.name)} USING {source} WHERE {cond}"

    def put_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert or replace wire-form rows (each may carry ``_v``) as one Arrow batch."""
        if rows:
            self.put_batch(RowBatch(self.schema.table(table), rows))

    def put_batch(self, batch: RowBatch, *, replace: bool = True) -> None:
        """Insert the batch's rows, replacing stored rows with the same keys; ``replace=False``
        when the caller knows none of the keys is stored (the delete is a join with the whole
        table: during a hydration it made each batch cost more as the table grew)."""
        table = batch.table.name
        self.con.register("_qs_batch", batch.arrow)
        try:
            self.generation[table] += 1
            if self.journal.wants(table, batch.arrow.num_rows):
                ret = self._returning[table]
                old = self._images(self._deletes[table] + ret) if replace else []
                self.journal.put(table, old, self._images(self._inserts[table] + ret))
            else:
                if replace:
                    self.con.execute(self._deletes[table])
                self.con.execute(self._inserts[table])
        except duckdb.Error as exc:
            raise StoreError(f"Cannot store rows of table {table!r}: {exc}") from None
        finally:
            self.con.unregister("_qs_batch")

    def _images(self, sql: str) -> list[dict[str, Any]]:
        cur = self.con.execute(sql)
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, values, strict=True)) for values in cur.fetchall()]

    def delete_keys(self, table: str, keys: Iterable[Sequence[Any]]) -> None:
        """Delete rows by primary key as one statement."""
        t = self.schema.table(table)
        key_list = [tuple(k) for k in keys]
        if not key_list:
            return
        self.con.register("_qs_keys", key_table(t, key_list))
        try:
            self.generation[table] += 1
            sql = self._delete_sql(t, "_qs_keys")
            if self.journal.wants(table, len(key_list)):
                self.journal.delete(table, self._images(sql + self._returning[table]))
            else:
                self.con.execute(sql)
        finally:
            self.con.unregister("_qs_keys")

    def clear(self) -> None:
        """Drop every server-derived row (a protocol ``reset``)."""
        self.journal.mark_bulk(self.schema.table_names)
        for t in self.schema.tables:
            self.generation[t.name] += 1
            self.con.execute(f"DELETE FROM {_q(t.name)}")

    def get_rows(
        self, table: str, keys: Iterable[Sequence[Any]]
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        """The stored rows (Python values, with ``_v``) for these keys."""
        t = self.schema.table(table)
        key_list = [tuple(k) for k in keys]
        if not key_list:
            return {}
        pk = t.primary_key
        cond = " OR ".join("(" + " AND ".join(f"{_q(k)} = ?" for k in pk) + ")" for _ in key_list)
        params = [v for k in key_list for v in k]
        cur = self.con.execute(f"SELECT * FROM {_q(table)} WHERE {cond}", params)
        names = [d[0] for d in cur.description or ()]
        out = {}
        for values in cur.fetchall():
            row = dict(zip(names, values, strict=True))
            out[tuple(row[k] for k in pk)] = row
        return out

    def select(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        cur = self.con.execute(sql, list(params))
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, values, strict=True)) for values in cur.fetchall()]

    def select_tuples(
        self, sql: str, params: Sequence[Any] = ()
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows as tuples: large results skip the per-row dict."""
        cur = self.con.execute(sql, list(params))
        return [d[0] for d in cur.description or ()], cur.fetchall()

    def count(self, table: str) -> int:
        row = self.con.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()
        return int(row[0]) if row else 0


_PRIMARY_KEY = re.compile(r', PRIMARY KEY \([^)]*\)\)$')


def _statements(sql: str | Iterable[str]) -> list[str]:
    if isinstance(sql, str):
        return [s for s in sql.split(";\n") if s.strip()]
    return list(sql)
