"""The DuckDB source of truth: tables with a per-row version, the version counter, mutation
outcomes, bulk loads and the change log.

Layout: every schema table gets a ``_v BIGINT`` column (the version that last changed the row);
``_qs_meta`` holds the current version; ``_qs_mutation`` the outcome of every processed
mutation per (client id, mutation id), so a replay after a lost response or a server restart
applies nothing twice. All writes run on the writer thread (``Database.write``), one
transaction per batch, with multi-row statements.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from queryplanner import ColumnType, Schema, Table
from queryplanner.protocol import Mutation, MutationResult
from queryplanner.sql import SQL_TYPES, create_table_sql

from .batch_rows import BatchRows
from .changelog import Change, ChangeBatch, ChangeLog
from .db import Database
from .errors import BadRequest, MutationOrder
from .ivm_store import DuckStore
from .mutations import (
    VERSION_COLUMN,
    NetChange,
    RelatedSource,
    Row,
    RowKey,
    WriteCheck,
    keys_of,
    net_changes,
    plan,
)
from .subscriptions import internal_schema

_CHUNK = 500  # rows per multi-row statement (keeps the parameter count reasonable)


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class MutateOutcome:
    version: int
    last_mutation_id: int
    results: tuple[MutationResult, ...]


@dataclass
class _Request:
    """One client's batch waiting for the writer, and what became of it."""

    client_id: str
    mutations: tuple[Mutation, ...]
    known: Mapping[str, frozenset[str]] | None
    check: WriteCheck | None
    outcome: MutateOutcome | None = None
    error: MutationOrder | None = field(default=None)


class Store:
    def __init__(
        self,
        schema: Schema,
        db: Database,
        *,
        log_versions: int = 10_000,
        log_bytes: int = 64 << 20,
        on_commit: Callable[[ChangeBatch], None] | None = None,
    ) -> None:
        self.schema = schema
        self.db = db
        self.on_commit = on_commit
        self._last_ids: dict[str, int] = {}
        self._pending: list[_Request] = []
        self._pending_lock = threading.Lock()
        version = db.write_sync(self._setup, schema)
        self.log = ChangeLog(version, max_versions=log_versions, max_bytes=log_bytes)
        # The schema with ``_v`` on every table, for the reader of write rules' EXISTS.
        self._internal = (schema, internal_schema(schema))

    @property
    def version(self) -> int:
        return self.log.version

    # -- setup -----------------------------------------------------------------------------

    def migrate(self, schema: Schema) -> None:
        """On the writer thread: create ``schema``'s new tables and columns (an additive
        migration, see ``server.migration``). ``self.schema`` is swapped by the caller once
        the sync engine uses the new schema."""
        self._setup(schema)

    def _setup(self, schema: Schema) -> int:
        cur = self.db.cursor()
        for ddl in create_table_sql(schema, version_column=VERSION_COLUMN):
            cur.execute(ddl)
        for t in schema.tables:
            have = {
                r[0]
                for r in cur.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [t.name]
                ).fetchall()
            }
            # A database seeded without the version column (or by an older schema) is upgraded.
            for c in t.columns:
                if c.name not in have:
                    cur.execute(
                        f"ALTER TABLE {q(t.name)} ADD COLUMN {q(c.name)} {SQL_TYPES[c.type]}"
                    )
            if VERSION_COLUMN not in have:
                cur.execute(
                    f"ALTER TABLE {q(t.name)} ADD COLUMN {VERSION_COLUMN} BIGINT NOT NULL DEFAULT 0"
                )
        cur.execute(
            "CREATE TABLE IF NOT EXISTS _qs_meta (k VARCHAR PRIMARY KEY, v BIGINT NOT NULL)"
        )
        cur.execute(
            "CREATE TABLE IF NOT EXISTS _qs_mutation (client_id VARCHAR NOT NULL, "
            "id BIGINT NOT NULL, status VARCHAR NOT NULL, reason VARCHAR, version BIGINT, "
            "PRIMARY KEY (client_id, id))"
        )
        cur.execute("INSERT OR IGNORE INTO _qs_meta VALUES ('version', 0)")
        row = cur.execute("SELECT v FROM _qs_meta WHERE k = 'version'").fetchone()
        return int(row[0]) if row else 0

    # -- commit ----------------------------------------------------------------------------

    def _commit(self, cur: duckdb.DuckDBPyConnection, batch: ChangeBatch) -> None:
        cur.execute("UPDATE _qs_meta SET v = ? WHERE k = 'version'", [batch.version])
        cur.execute("COMMIT")
        self.log.append(batch)
        if self.on_commit is not None:
            self.on_commit(batch)

    # -- mutations -------------------------------------------------------------------------

    def last_mutation_id(self, client_id: str) -> int:
        """On the writer thread: the client's last processed mutation id (0 when none)."""
        last = self._last_ids.get(client_id)
        if last is None:
            row = (
                self.db.cursor()
                .execute(
                    "SELECT coalesce(max(id), 0) FROM _qs_mutation WHERE client_id = ?", [client_id]
                )
                .fetchone()
            )
            last = int(row[0]) if row else 0
            self._last_ids[client_id] = last
        return last

    async def mutate(
        self,
        client_id: str,
        mutations: Sequence[Mutation],
        *,
        known: Mapping[str, frozenset[str]] | None = None,
        check: WriteCheck | None = None,
    ) -> MutateOutcome:
        """Apply one client's batch; batches waiting for the writer commit together."""
        req = _Request(client_id, tuple(mutations), known, check)
        with self._pending_lock:
            self._pending.append(req)
        await self.db.write(self._drain)
        if req.error is not None:
            raise req.error
        assert req.outcome is not None
        return req.outcome

    def _mutate(
        self,
        client_id: str,
        mutations: Sequence[Mutation],
        known: Mapping[str, frozenset[str]] | None,
        check: WriteCheck | None,
    ) -> MutateOutcome:
        """On the writer thread: apply one batch in its own transaction (tests, tools)."""
        req = _Request(client_id, tuple(mutations), known, check)
        self._run([req])
        if req.error is not None:
            raise req.error
        assert req.outcome is not None
        return req.outcome

    def _drain(self) -> None:
        """On the writer thread: apply every waiting batch (group commit).

        Under load, batches of several clients wait while one commits; applying them in one
        transaction costs the same few statements as one batch. The batches are decided in
        arrival order against the rows as the earlier ones left them, so the outcome is the
        one of committing them one by one, under one version.
        """
        with self._pending_lock:
            reqs, self._pending = self._pending, []
        if reqs:
            self._run(reqs)

    def _run(self, reqs: list[_Request]) -> None:
        try:
            self._apply(reqs, None)
        except duckdb.Error as exc:
            with contextlib.suppress(duckdb.Error):  # no transaction when it failed before
                self.db.cursor().execute("ROLLBACK")
            if len(reqs) == 1:
                # Our checks passed but DuckDB refused: reject the whole batch, still recorded.
                reason = f"The database rejected the batch: {str(exc).splitlines()[0][:200]}"
                self._apply(reqs, reason)
            else:
                for r in reqs:  # find the batch DuckDB refuses; the others commit
                    r.error = None
                    r.outcome = None
                    self._run([r])

    def _apply(self, reqs: list[_Request], refused: str | None) -> None:
        cur = self.db.cursor()
        version = self.version + 1
        lasts: dict[str, int] = {}
        fresh: list[tuple[_Request, list[Mutation], tuple[MutationResult, ...]]] = []
        for r in reqs:
            last = lasts.get(r.client_id)
            if last is None:
                last = self.last_mutation_id(r.client_id)
            new = [m for m in r.mutations if m.id > last]
            replayed = self._recorded(cur, r.client_id, [m.id for m in r.mutations if m.id <= last])
            if not new:
                r.outcome = MutateOutcome(self.version, last, replayed)
            elif new[0].id != last + 1:
                r.error = MutationOrder(
                    f"Mutation id {new[0].id} from client {r.client_id!r} leaves a gap: the "
                    f"next expected id is {last + 1}.",
                    expected=last + 1,
                    lastMutationId=last,
                )
            else:
                lasts[r.client_id] = new[-1].id
                fresh.append((r, new, replayed))
        if not fresh:
            return
        cur.execute("BEGIN")
        keys: dict[str, set[tuple[Any, ...]]] = {}
        for _, new, _ in fresh:
            for t, ks in keys_of(self.schema, new).items():
                keys.setdefault(t, set()).update(ks)
        old = self._fetch(cur, keys) if refused is None else {}
        working: dict[RowKey, dict[str, Any] | None] = dict(old)
        outcomes: dict[str, tuple[MutationResult, ...]] = {}
        recorded: list[tuple[str, MutationResult]] = []
        related = self._batch_rows(cur, working)
        for r, new, replayed in fresh:
            if refused is not None:
                results = tuple(MutationResult(m.id, "rejected", refused) for m in new)
            else:
                current = {k: v for k, v in working.items() if v is not None}
                decided = plan(
                    self.schema, new, current, known=r.known, check=r.check,
                    related=related,
                )
                for c in decided.changes:
                    working[(c.table, c.key)] = None if c.op == "delete" else dict(c.row or {})
                results = tuple(
                    MutationResult(x.id, x.status, x.reason,
                                   version if x.status == "applied" else None)
                    for x in decided.results
                )
            outcomes[r.client_id] = outcomes.get(r.client_id, ()) + results
            recorded += [(r.client_id, x) for x in results]
            r.outcome = MutateOutcome(version, new[-1].id, replayed + results)
        net = net_changes(self.schema, old, working)
        self._write(cur, net, version)
        changes = []
        for c in net:
            image = None
            if c.row is not None:
                image = {**c.row, VERSION_COLUMN: version}
            changes.append(
                Change(c.table, c.key, c.op, c.columns, image, old.get((c.table, c.key)))  # type: ignore[arg-type]
            )
        self._record(cur, recorded)
        self._commit(cur, ChangeBatch(version, tuple(changes), outcomes))
        for cid, last in lasts.items():
            self._last_ids[cid] = last

    def _batch_rows(
        self, cur: duckdb.DuckDBPyConnection, group: Mapping[RowKey, Row | None]
    ) -> RelatedSource:
        """What EXISTS in a write rule reads: the rows as the group commit so far (``group``)
        and the batch being decided (given by ``plan``) left them. The committed rows stay put
        until the group's writes, so one cached reader serves every batch of the group."""
        if self._internal[0] is not self.schema:  # the schema moves on a migration
            self._internal = (self.schema, internal_schema(self.schema))
        committed = DuckStore(self.schema, self._internal[1])
        committed.use(cur, self.version + 1)

        def rows(batch: Mapping[RowKey, Row | None]) -> BatchRows:
            return BatchRows(committed, (group, batch))

        return rows

    def _recorded(
        self, cur: duckdb.DuckDBPyConnection, client_id: str, ids: list[int]
    ) -> tuple[MutationResult, ...]:
        if not ids:
            return ()
        rows = cur.execute(
            "SELECT id, status, reason, version FROM _qs_mutation WHERE client_id = ? "
            "AND id BETWEEN ? AND ? ORDER BY id",
            [client_id, min(ids), max(ids)],
        ).fetchall()
        return tuple(MutationResult(int(i), s, r, v) for i, s, r, v in rows)

    def _record(
        self, cur: duckdb.DuckDBPyConnection, results: Sequence[tuple[str, MutationResult]]
    ) -> None:
        for chunk in _chunks(list(results)):
            cur.execute(
                "INSERT INTO _qs_mutation VALUES " + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)),
                [v for cid, r in chunk for v in (cid, r.id, r.status, r.reason, r.version)],
            )

    def _fetch(
        self, cur: duckdb.DuckDBPyConnection, keys: Mapping[str, set[tuple[Any, ...]]]
    ) -> dict[RowKey, dict[str, Any]]:
        out: dict[RowKey, dict[str, Any]] = {}
        for tname, keyset in keys.items():
            table = self.schema.table(tname)
            names = [*table.column_names, VERSION_COLUMN]
            pk = table.primary_key
            idx = [names.index(k) for k in pk]
            for chunk in _chunks(sorted(keyset, key=repr)):
                sql = (
                    f"SELECT {', '.join(q(n) for n in names)} FROM {q(tname)} WHERE "
                    f"({', '.join(q(k) for k in pk)}) IN ("
                    + ", ".join(["(" + ", ".join(["?"] * len(pk)) + ")"] * len(chunk))
                    + ")"
                )
                for rec in cur.execute(sql, [v for key in chunk for v in key]).fetchall():
                    row = dict(zip(names, rec, strict=True))
                    _parse_json(table, row)
                    out[(tname, tuple(rec[i] for i in idx))] = row
        return out

    def _write(
        self, cur: duckdb.DuckDBPyConnection, changes: Sequence[NetChange], version: int
    ) -> None:
        # One statement per (table, operation): an update writes the union of the columns its
        # rows change. A row's other columns in that union are written with the values read in
        # this transaction (the only writer), so nothing changes that the batch did not change.
        groups: dict[tuple[str, str, tuple[str, ...]], list[NetChange]] = {}
        union: dict[str, set[str]] = {}
        for c in changes:
            if c.op == "update":
                union.setdefault(c.table, set()).update(c.columns)
        for c in changes:
            cols: tuple[str, ...] = ()
            if c.op == "update":
                names = self.schema.table(c.table).column_names
                cols = tuple(n for n in names if n in union[c.table])
            groups.setdefault((c.table, c.op, cols), []).append(c)
        for (tname, op, columns), group in groups.items():
            table = self.schema.table(tname)
            pk = table.primary_key
            for chunk in _chunks(group):
                if op == "delete":
                    self._multi(
                        cur,
                        table,
                        "DELETE FROM {t} USING ({v}) v({c}) WHERE {on}",
                        pk,
                        [c.key for c in chunk],
                    )
                elif op == "insert":
                    names = table.column_names
                    rows = [_values(c, names) for c in chunk]
                    col_sql = ", ".join(q(n) for n in names)
                    ph = "(" + ", ".join(_cast(table, n) for n in names) + ", ?)"
                    cur.execute(
                        f"INSERT INTO {q(tname)} ({col_sql}, {VERSION_COLUMN}) VALUES "
                        + ", ".join([ph] * len(rows)),
                        _insert_params(table, names, rows, version),
                    )
                else:
                    upd = (*pk, *(n for n in columns if n not in pk))
                    sets = ", ".join(f"{q(n)} = v.{q(n)}" for n in columns)
                    template = (
                        "UPDATE {t} SET "
                        + sets
                        + f", {VERSION_COLUMN} = {int(version)} FROM ({{v}}) v({{c}}) WHERE {{on}}"
                    )
                    self._multi(cur, table, template, upd, [_values(c, upd) for c in chunk])

    def _multi(
        self,
        cur: duckdb.DuckDBPyConnection,
        table: Table,
        template: str,
        names: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
    ) -> None:
        ph = "(" + ", ".join(_cast(table, n) for n in names) + ")"
        on = " AND ".join(f"{q(table.name)}.{q(k)} = v.{q(k)}" for k in table.primary_key)
        sql = template.format(
            t=q(table.name),
            v="VALUES " + ", ".join([ph] * len(rows)),
            c=", ".join(q(n) for n in names),
            on=on,
        )
        cur.execute(sql, [_param(table, n, v) for r in rows for n, v in zip(names, r, strict=True)])

    # -- bulk load -------------------------------------------------------------------------

    def bulk_load(self, table: str, source: pa.Table | str | Path) -> int:
        """Insert (or replace by key) many rows from Arrow, Parquet or CSV as one version."""
        return self.db.write_sync(self._bulk_load, table, source)

    def _bulk_load(self, tname: str, source: pa.Table | str | Path) -> int:
        if not self.schema.has_table(tname):
            raise BadRequest(f"Unknown table {tname!r}.")
        table = self.schema.table(tname)
        cur = self.db.cursor()
        cols = ", ".join(q(n) for n in table.column_names)
        if isinstance(source, pa.Table):
            cur.register("_qs_bulk", source)
            src = "_qs_bulk"
        else:
            path = str(source)
            reader = "read_parquet" if path.endswith(".parquet") else "read_csv_auto"
            src = f"{reader}('{path.replace(chr(39), chr(39) * 2)}')"
        version = self.version + 1
        cur.execute("BEGIN")
        try:
            cur.execute(
                f"INSERT OR REPLACE INTO {q(tname)} ({cols}, {VERSION_COLUMN}) "
                f"SELECT {cols}, {int(version)} FROM {src}"
            )
        except duckdb.Error:
            cur.execute("ROLLBACK")
            raise
        finally:
            if isinstance(source, pa.Table):
                cur.unregister("_qs_bulk")
        self._commit(cur, ChangeBatch(version, (Change(tname, None, "load"),)))
        return version


def _values(change: NetChange, names: Sequence[str]) -> tuple[Any, ...]:
    assert change.row is not None
    return tuple(change.row[n] for n in names)


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _cast(table: Table, name: str) -> str:
    return f"?::{SQL_TYPES[table.column(name).type]}"


def _param(table: Table, name: str, value: Any) -> Any:
    if value is not None and table.column(name).type is ColumnType.JSON:
        return orjson.dumps(value).decode()
    return value


def _insert_params(
    table: Table, names: Sequence[str], rows: Sequence[tuple[Any, ...]], version: int
) -> list[Any]:
    out: list[Any] = []
    for r in rows:
        out.extend(_param(table, n, v) for n, v in zip(names, r, strict=True))
        out.append(version)
    return out


def _parse_json(table: Table, row: dict[str, Any]) -> None:
    for c in table.columns:
        if c.type is ColumnType.JSON and isinstance(row.get(c.name), str):
            row[c.name] = orjson.loads(row[c.name])


def timestamp_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
