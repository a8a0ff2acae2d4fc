"""Which stored rows each desired query holds, kept in step with the store change by change.

The budget reference-counts rows by the queries whose local result holds them, so after every
write the client must know how each affected query's row set moved. Re-running every query on
every poke is quadratic during hydration (each batch re-reads all rows so far), so the work is
sized to the change instead, with DuckDB deciding every match (its semantics are the queries'):

    flat     one table, no window, no related, no EXISTS: a changed key is a member exactly
             when its stored row matches the query; one semi-join of the query's row set with
             the changed keys gives the members among them, the other changed keys are out.
    window   the same but with limit/start: its window can only move when a changed row
             matches the unwindowed query or was a member; only then is the query re-run.
    other    related children, EXISTS (rows of other tables decide) or a timestamp primary key:
             re-run whenever one of the tables it reads changed.

``changed`` maps a table to the primary keys written or deleted there (``None``: unknown,
re-run whatever reads the table).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from queryplanner import ColumnType, Query, Schema
from queryplanner.predicate import Row, compile_predicate
from queryplanner.query import And, Condition, Not, Or
from queryplanner.sql import compile_row_sets, compile_select
from queryplanner.wire import decode_value

from .batch import key_table
from .budget import Budget, RowId
from .store import LocalStore

Kind = Literal["flat", "window", "other"]
Changed = Mapping[str, Collection[tuple[Any, ...]] | None]


@dataclass(frozen=True)
class _Plan:
    kind: Kind
    sql: str  # the query's (unwindowed) row set semi-joined with ``_qs_changed``
    params: tuple[Any, ...]
    predicate: Callable[[Row], bool]
    timestamps: tuple[str, ...] = ()  # the timestamp columns the predicate reads


def _never(row: Row) -> bool:
    return False


def _columns(cond: Condition | None) -> set[str]:
    """The columns a (single-table) condition reads."""
    if cond is None:
        return set()
    if isinstance(cond, And | Or):
        return set().union(*(_columns(t) for t in cond.terms))
    if isinstance(cond, Not):
        return _columns(cond.term)
    column = getattr(cond, "column", None)
    return {column} if isinstance(column, str) else set()


class Membership:
    def __init__(self, schema: Schema, store: LocalStore, budget: Budget) -> None:
        self.schema = schema
        self.store = store
        self.budget = budget
        self._plans: dict[str, _Plan] = {}

    def forget(self, qid: str) -> None:
        self._plans.pop(qid, None)

    def members(self, query: Query) -> set[RowId]:
        """Every row the query's local result holds (children included), from the store."""
        out: set[RowId] = set()
        for rs in compile_row_sets(query, self.schema):
            pk = self.schema.table(rs.table).primary_key
            # Only the key columns: a large result's membership is read often.
            cols = ", ".join(f'm."{k}"' for k in pk)
            cur = self.store.con.execute(f"SELECT {cols} FROM ({rs.sql}) AS m", list(rs.params))
            out.update((rs.table, tuple(r)) for r in cur.fetchall())
        return out

    def refresh(
        self,
        queries: Iterable[tuple[str, Query, frozenset[str]]],
        changed: Changed,
        rows: Mapping[str, Sequence[tuple[tuple[Any, ...], Row]]] | None = None,
    ) -> None:
        """Bring the budget's member sets of ``queries`` (id, query, tables read) up to date.

        ``rows`` may give, per table, every changed key that is still stored with its row
        (wire values): the other changed keys are deleted. Then the matches are decided by the
        queries' compiled predicates (``queryplanner.predicate``, DuckDB's semantics) without a
        statement per query; only the timestamp columns a predicate reads are decoded.
        """
        for qid, query, tables in queries:
            if not tables & changed.keys():
                continue
            plan = self._plan(qid, query, tables)
            keys = changed.get(query.table) if plan.kind != "other" else None
            if keys is None:
                self.budget.set_members(qid, self.members(query))
                continue
            if not keys:
                continue
            t = query.table
            stored = rows.get(t) if rows is not None else None
            if stored is not None:
                hits = {k for k, r in stored if plan.predicate(self._python(t, plan, r))}
            else:
                hits = self._matching(t, plan.sql, plan.params, keys)
            if plan.kind == "flat":
                # hits are among keys: when all match (a hydration's rows), none left.
                out = () if len(hits) == len(keys) else [(t, k) for k in keys if k not in hits]
                self.budget.update_members(qid, added=zip(itertools.repeat(t), hits), removed=out)
            elif hits or any(self.budget.holds_member(qid, (t, k)) for k in keys):
                self.budget.set_members(qid, self.members(query))

    def _python(self, table: str, plan: _Plan, row: Row) -> Row:
        """A wire row with the timestamps the plan's predicate reads as ``datetime``."""
        if not plan.timestamps:
            return row
        t = self.schema.table(table)
        out = dict(row)
        for name in plan.timestamps:
            value = out.get(name)
            if isinstance(value, str):
                out[name] = decode_value(t, t.column(name), value)
        return out

    def _plan(self, qid: str, query: Query, tables: frozenset[str]) -> _Plan:
        found = self._plans.get(qid)
        if found is None:
            found = self._plans[qid] = self._make_plan(query, tables)
        return found

    def _make_plan(self, query: Query, tables: frozenset[str]) -> _Plan:
        t = self.schema.table(query.table)
        if (
            query.related
            or query.aggregate is not None
            or tables != {query.table}
            or any(t.column(k).type is ColumnType.TIMESTAMP for k in t.primary_key)
        ):
            return _Plan("other", "", (), _never)
        kind: Kind = "flat"
        if query.limit is not None or query.start is not None:
            kind = "window"
            query = dataclasses.replace(query, limit=None, start=None)
        pk = t.primary_key
        # Only the keys, unordered: the row set's ORDER BY and DISTINCT over every column
        # cost twice the join.
        root = compile_select(query, self.schema, columns=pk, ordered=False)
        cols = ", ".join(f'm."{k}"' for k in pk)
        on = " AND ".join(f'm."{k}" = k."{k}"' for k in pk)
        sql = f"SELECT {cols} FROM ({root.sql}) AS m SEMI JOIN _qs_changed AS k ON {on}"
        predicate = compile_predicate(query.where, self.schema, query.table)
        timestamps = tuple(
            sorted(
                c for c in _columns(query.where)
                if t.has_column(c) and t.column(c).type is ColumnType.TIMESTAMP
            )
        )
        return _Plan(kind, sql, tuple(root.params), predicate, timestamps)

    def _matching(
        self, table: str, sql: str, params: tuple[Any, ...], keys: Collection[tuple[Any, ...]]
    ) -> set[tuple[Any, ...]]:
        self.store.con.register("_qs_changed", key_table(self.schema.table(table), list(keys)))
        try:
            return set(self.store.con.execute(sql, list(params)).fetchall())  # rows are tuples
        finally:
            self.store.con.unregister("_qs_changed")
