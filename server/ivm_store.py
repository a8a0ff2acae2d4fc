"""The incremental engine's ``Store`` over DuckDB: the engine step's read snapshot, cached.

``queryplanner.ivm.Engine`` reads the committed state *after* a batch to refill windows, walk
relationships and re-check EXISTS. On the server that state is the engine step's DuckDB read
transaction (every batch up to the step's version is applied, and nothing later is visible), so
within one snapshot every answer can be cached: a step that pushes five changes through twenty
windows asks DuckDB the same point lookup many times, and each call costs ~0.2 ms from Python.

``DuckStore`` is shared by every engine; ``ScopedStore`` is one engine's view of it under the
read rules of junction tables. Read rules of ordinary tables are in the queries themselves
(``apply_read_rules``), but a many-to-many step passes through a junction table that the query
AST cannot name: its rule is compiled into the SQL of a scan and tested on the rows of a lookup
here, so no hidden junction row links a parent to a child.

Rows are the tables' columns plus ``_v`` (the version that last changed the row), JSON columns
parsed: the same images the store's change log records for old and new rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import duckdb
import orjson

from queryplanner import ColumnType, Condition, Query, Schema, compile_predicate
from queryplanner.ivm import Row, StoreRelated
from queryplanner.sql import compile_select

_CACHE_MAX = 400_000  # cached answers per snapshot before the cache starts over (a hydration
# of a whole table prefetches one answer per row)
_CHUNK = 5_000  # values per batched lookup query


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckStore:
    """Answers ``scan`` and ``lookup`` from the snapshot of the cursor given to ``use``."""

    def __init__(self, schema: Schema, internal: Schema) -> None:
        self.schema = schema
        self.internal = internal  # the schema with ``_v`` on every table (selected too)
        self.cur: duckdb.DuckDBPyConnection | None = None
        self.version = -1
        self.statements = 0  # DuckDB statements run (for benchmarks and tests)
        self._lookups: dict[tuple[str, tuple[str, ...], tuple[Any, ...]], list[Row]] = {}
        self._scans: dict[tuple[Query, str], list[Row]] = {}
        self._json = {
            t.name: tuple(c.name for c in t.columns if c.type is ColumnType.JSON)
            for t in schema.tables
        }

    def use(self, cur: duckdb.DuckDBPyConnection, version: int) -> None:
        """Read from ``cur`` (a read transaction at ``version``) until the next call."""
        if version != self.version or cur is not self.cur:
            self._lookups.clear()
            self._scans.clear()
        self.cur, self.version = cur, version

    def _run(self, table: str, sql: str, params: Sequence[Any]) -> list[Row]:
        assert self.cur is not None, "DuckStore.use() must be called before reading"
        self.statements += 1
        rel = self.cur.execute(sql, list(params))
        names = [d[0] for d in rel.description or ()]
        rows = [dict(zip(names, rec, strict=True)) for rec in rel.fetchall()]
        json_cols = self._json[table]
        if json_cols:
            for row in rows:
                for c in json_cols:
                    if isinstance(row.get(c), str):
                        row[c] = orjson.loads(row[c])
        return list(rows)

    def scan(self, query: Query, rules: Mapping[str, Condition] | None = None,
             scope: str = "") -> list[Row]:
        key = (query, scope)
        hit = self._scans.get(key)
        if hit is None:
            compiled = compile_select(query, self.internal, rules=rules)
            hit = self._run(query.table, compiled.sql, compiled.params)
            if len(self._scans) >= _CACHE_MAX:
                self._scans.clear()
            self._scans[key] = hit
        return hit

    def lookup(self, table: str, columns: tuple[str, ...], values: tuple[Any, ...]) -> list[Row]:
        if any(v is None for v in values):
            return []  # SQL equality: NULL links to nothing
        key = (table, columns, values)
        hit = self._lookups.get(key)
        if hit is None:
            t = self.internal.table(table)
            cols = ", ".join(q(c) for c in t.column_names)
            where = " AND ".join(f"{q(c)} = ?" for c in columns)
            hit = self._run(table, f"SELECT {cols} FROM {q(table)} WHERE {where}", values)
            if len(self._lookups) >= _CACHE_MAX:
                self._lookups.clear()
            self._lookups[key] = hit
        return hit

    def lookup_many(
        self, table: str, columns: tuple[str, ...], values: set[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], list[Row]]:
        """``lookup`` for many values in one query per chunk; the answers are cached."""
        out: dict[tuple[Any, ...], list[Row]] = {}
        missing = []
        for v in values:
            hit = self._lookups.get((table, columns, v))
            if hit is None:
                missing.append(v)
            else:
                out[v] = hit
        if len(columns) != 1:  # rare (composite links): one lookup each
            for v in missing:
                out[v] = self.lookup(table, columns, v)
            return out
        t = self.internal.table(table)
        cols = ", ".join(q(c) for c in t.column_names)
        col = columns[0]
        for i in range(0, len(missing), _CHUNK):
            chunk = missing[i : i + _CHUNK]
            found: dict[tuple[Any, ...], list[Row]] = {v: [] for v in chunk}
            sql = f"SELECT {cols} FROM {q(table)} WHERE {q(col)} IN (SELECT unnest(?))"
            for row in self._run(table, sql, [[v[0] for v in chunk]]):
                got = found.get((row[col],))
                if got is None:  # a value that does not compare equal in Python: no cache
                    found = {}
                    break
                got.append(row)
            if not found:
                continue
            if len(self._lookups) + len(found) > _CACHE_MAX:
                self._lookups.clear()
            for v, rows in found.items():
                self._lookups[(table, columns, v)] = rows
            out.update(found)
        return out


class ScopedStore:
    """One engine's ``Store``: the shared snapshot under the rules of junction tables."""

    def __init__(self, base: DuckStore, junction_rules: Mapping[str, Condition]) -> None:
        self.base = base
        self.rules = dict(junction_rules)
        self.scope = repr(sorted(self.rules.items(), key=lambda kv: kv[0]))
        related = StoreRelated(self)
        self._tests: dict[str, Callable[[Row], bool]] = {
            t: compile_predicate(cond, base.schema, t, related) for t, cond in self.rules.items()
        }

    def scan(self, query: Query) -> Sequence[Row]:
        return self.base.scan(query, self.rules or None, self.scope)

    def lookup(
        self, table: str, columns: tuple[str, ...], values: tuple[Any, ...]
    ) -> Sequence[Row]:
        rows = self.base.lookup(table, columns, values)
        test = self._tests.get(table)
        return rows if test is None else [r for r in rows if test(r)]

    def lookup_many(
        self, table: str, columns: tuple[str, ...], values: set[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], list[Row]]:
        found = self.base.lookup_many(table, columns, values)
        test = self._tests.get(table)
        if test is None:
            return found
        return {v: [r for r in rows if test(r)] for v, rows in found.items()}


def junction_tables(schema: Schema) -> frozenset[str]:
    """The tables that some many-to-many relationship passes through."""
    return frozenset(
        r.through.table for t in schema.tables for r in t.relationships if r.through is not None
    )
