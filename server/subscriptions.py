"""Subscriptions (one per distinct (query, read-rule scope)) and THE seam for incremental
maintenance.

A subscription holds the current result of one query for one rule scope as a map from
(table, primary key) to the wire row (with ``_v``): every row hydration sends, related
children and junction rows included. Clients that desire the same query under the same rules
share it, so a commit re-runs it once however many clients hold it.

``Maintainer.changes`` is the one function that, given the committed change batches, yields
the changes per subscription. ``IncrementalMaintainer`` (``server.incremental``, the default)
pushes the batches through ``queryplanner.ivm``; ``RerunMaintainer`` re-runs every
subscription whose tables were touched and diffs (the reference the tests compare with).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import duckdb

from queryplanner import (
    Column,
    ColumnType,
    Condition,
    Exists,
    Query,
    Schema,
    Table,
    compile_predicate,
)
from queryplanner.query import And, Not, Or
from queryplanner.sql import RowSetSQL, compile_row_sets
from queryplanner.wire import encode_row

from .changelog import ChangeBatch, touched_tables
from .mutations import VERSION_COLUMN

RowKey = tuple[str, tuple[Any, ...]]
WireRow = dict[str, Any]


def internal_schema(schema: Schema) -> Schema:
    """The schema with the ``_v`` column on every table, so compiled SQL selects it too."""
    tables = [
        Table(
            t.name,
            (*t.columns, Column(VERSION_COLUMN, ColumnType.INTEGER, nullable=False)),
            t.primary_key,
            t.relationships,
            t.since,
        )
        for t in schema.tables
    ]
    return Schema(tuple(tables), schema.version, schema.min_client_version)


@dataclass
class SubDelta:
    added: dict[RowKey, WireRow] = field(default_factory=dict)
    changed: dict[RowKey, WireRow] = field(default_factory=dict)
    removed: set[RowKey] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


class Subscription:
    def __init__(
        self, key: tuple[str, str], query: Query, schema: Schema, rules: Mapping[str, Condition]
    ) -> None:
        self.key = key
        self.query = query
        self.rules = rules
        self._result: dict[RowKey, WireRow] = {}
        self._build: Callable[[], None] | None = None
        self.clients: set[str] = set()
        self.ivm: Any = None  # the incremental maintainer's state for this subscription
        self.compile(schema)

    @property
    def result(self) -> dict[RowKey, WireRow]:
        """The current rows; a deferred build runs first (see ``defer``)."""
        if self._build is not None:
            self.build()
        return self._result

    @result.setter
    def result(self, rows: dict[RowKey, WireRow]) -> None:
        self._result = rows

    def defer(self, build: Callable[[], None] | None) -> None:
        """Build this subscription's state later, at the latest when its result is read
        (a columnar hydration sends the rows first: ``server.columnar``); None: no build."""
        self._build = build

    def build(self) -> None:
        """Run the deferred build now (once)."""
        build, self._build = self._build, None
        if build is not None:
            build()

    def compile(self, schema: Schema) -> None:
        """(Re)compile for ``schema`` (at creation, and after an online migration)."""
        query, rules = self.query, self.rules
        self.schema = schema
        self.row_sets: list[RowSetSQL] = compile_row_sets(
            query, internal_schema(schema), rules=rules
        )
        self.tables = dependencies(query, schema, rules) | {r.table for r in self.row_sets}
        # A one-table query without EXISTS: a changed row can only matter if it is in the
        # result or matches the condition, which Python can test without running SQL.
        self.row_test: Callable[[Mapping[str, Any]], bool] | None = None
        rule = rules.get(query.table)
        if not query.related and self.tables == {query.table} and not (
            has_exists(query.where) or has_exists(rule)
        ):
            terms = tuple(c for c in (query.where, rule) if c is not None)
            cond = None if not terms else terms[0] if len(terms) == 1 else And(terms)
            self.row_test = compile_predicate(cond, schema, query.table)

    def may_change(self, batches: Sequence[ChangeBatch]) -> bool:
        """False only when no change of ``batches`` can alter this subscription's result."""
        if self.row_test is None:
            return True
        table = self.query.table
        for b in batches:
            for c in b.changes:
                if c.table != table:
                    continue
                if c.key is None or (table, c.key) in self.result:
                    return True
                if c.row is not None and self.row_test(c.row):
                    return True
        return False

    def run(self, cur: duckdb.DuckDBPyConnection) -> dict[RowKey, WireRow]:
        out: dict[RowKey, WireRow] = {}
        for rs in self.row_sets:
            table = self.schema.table(rs.table)
            pk = table.primary_key
            rel = cur.execute(rs.sql, list(rs.params))
            names = [d[0] for d in rel.description or ()]
            for rec in rel.fetchall():
                row = dict(zip(names, rec, strict=True))
                wire = encode_row(table, row)
                wire[VERSION_COLUMN] = row[VERSION_COLUMN]
                out[(rs.table, tuple(row[k] for k in pk))] = wire
        return out


def diff(old: Mapping[RowKey, WireRow], new: Mapping[RowKey, WireRow]) -> SubDelta:
    delta = SubDelta()
    for k, row in new.items():
        before = old.get(k)
        if before is None:
            delta.added[k] = row
        elif before[VERSION_COLUMN] != row[VERSION_COLUMN]:
            delta.changed[k] = row
    delta.removed = {k for k in old if k not in new}
    return delta


def dependencies(query: Query, schema: Schema, rules: Mapping[str, Condition]) -> set[str]:
    """Every table whose change may change the query's result (EXISTS and rules included)."""
    out: set[str] = set()
    _query_tables(query, schema, rules, out)
    return out


def _query_tables(
    query: Query, schema: Schema, rules: Mapping[str, Condition], out: set[str]
) -> None:
    _table_tables(query.table, query.where, schema, rules, out)
    table = schema.table(query.table)
    for r in query.related:
        rel = table.relationship(r.relationship)
        if rel.through is not None:
            _table_tables(rel.through.table, None, schema, rules, out)
        _query_tables(r.query, schema, rules, out)


def _table_tables(
    name: str,
    where: Condition | None,
    schema: Schema,
    rules: Mapping[str, Condition],
    out: set[str],
) -> None:
    first = name not in out
    out.add(name)
    if where is not None:
        _cond_tables(where, name, schema, rules, out)
    rule = rules.get(name)
    if first and rule is not None:
        _cond_tables(rule, name, schema, rules, out)


def _cond_tables(
    cond: Condition, table: str, schema: Schema, rules: Mapping[str, Condition], out: set[str]
) -> None:
    if isinstance(cond, And | Or):
        for t in cond.terms:
            _cond_tables(t, table, schema, rules, out)
    elif isinstance(cond, Not):
        _cond_tables(cond.term, table, schema, rules, out)
    elif isinstance(cond, Exists):
        rel = schema.table(table).relationship(cond.relationship)
        if rel.through is not None:
            _table_tables(rel.through.table, None, schema, rules, out)
        _table_tables(rel.target, cond.where, schema, rules, out)


def has_exists(cond: Condition | None) -> bool:
    if isinstance(cond, Exists):
        return True
    if isinstance(cond, And | Or):
        return any(has_exists(t) for t in cond.terms)
    if isinstance(cond, Not):
        return has_exists(cond.term)
    return False


class Maintainer(Protocol):
    # Called now and then inside a long ``add`` (set by the sync engine for a step): it may
    # serve other work, but must not add or remove subscriptions.
    pause: Callable[[], None]

    def begin(self, cur: duckdb.DuckDBPyConnection, version: int) -> None:
        """A step starts: ``cur`` is a read transaction at ``version`` until the next call."""
        ...

    def add(self, cur: duckdb.DuckDBPyConnection, sub: Subscription) -> None:
        """Start maintaining ``sub``: set ``sub.result`` to its rows in the snapshot."""
        ...

    def remove(self, sub: Subscription) -> None:
        """Stop maintaining ``sub`` (no client desires it any more)."""
        ...

    def set_schema(self, schema: Schema) -> None:
        """Maintain under ``schema`` from now on (called with no subscription added)."""
        ...

    def changes(
        self,
        cur: duckdb.DuckDBPyConnection,
        batches: Sequence[ChangeBatch] | None,
        subscriptions: Iterable[Subscription],
    ) -> Iterator[tuple[Subscription, SubDelta]]:
        """Bring each subscription to the snapshot of ``cur`` and yield the non-empty deltas.

        ``batches`` are the committed batches since the subscriptions' version, or None when
        unknown (the change log no longer reaches back): then every subscription is stale.
        """
        ...


class RerunMaintainer:
    """Re-runs every subscription that reads a touched table, and diffs."""

    def __init__(self) -> None:
        self.pause: Callable[[], None] = no_pause  # one query per add: nothing to pause

    def begin(self, cur: duckdb.DuckDBPyConnection, version: int) -> None:
        return None

    def add(self, cur: duckdb.DuckDBPyConnection, sub: Subscription) -> None:
        sub.result = sub.run(cur)

    def remove(self, sub: Subscription) -> None:
        return None

    def set_schema(self, schema: Schema) -> None:
        return None

    def changes(
        self,
        cur: duckdb.DuckDBPyConnection,
        batches: Sequence[ChangeBatch] | None,
        subscriptions: Iterable[Subscription],
    ) -> Iterator[tuple[Subscription, SubDelta]]:
        touched = None if batches is None else touched_tables(batches)
        for sub in subscriptions:
            if touched is not None and not (sub.tables & touched):
                continue
            if batches is not None and not sub.may_change(batches):
                continue
            new = sub.run(cur)
            delta = diff(sub.result, new)
            sub.result = new
            if delta:
                yield sub, delta


def no_pause() -> None:
    """A maintainer's ``pause`` outside a sync engine step: nothing to serve."""
    return None
