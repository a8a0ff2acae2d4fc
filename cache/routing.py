"""Where a query is answered: locally (covered), synced into the store, or on the server.

The decision is ``queryplanner.planner.plan`` over the desired queries that are complete; this
module adapts the local store to its ``CacheState`` protocol and maps the plan to the
client's three modes:

    local   LOCAL: covered by complete queries; answered from the store, kept live by their
            stream (works offline)
    sync    a row query that is not covered (LOCAL_THEN_SERVER or SERVER): the local partial
            answer now; the query joins the server's desired set and the store completes it
    server  an aggregate that is not covered (or a query demoted by the budget): offloaded to
            ``POST /query``
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from queryplanner import Query, QueryError, Schema
from queryplanner.coverage import CompleteQuery
from queryplanner.coverage_index import CoverageIndex
from queryplanner.planner import Route as PlanRoute
from queryplanner.planner import plan
from queryplanner.predicate import compile_predicate, compile_start_filter
from queryplanner.sql import compile_select

from .store import LocalStore

Mode = Literal["local", "sync", "server"]


@dataclass(frozen=True)
class Route:
    mode: Mode
    relies_on: tuple[str, ...]
    explanation: str


class StoreRows:
    """``CacheState`` over the local store: the coverage index, rows per table, and counts of
    a complete query's rows matching another."""

    def __init__(self, schema: Schema, store: LocalStore, index: CoverageIndex) -> None:
        self.schema = schema
        self.store = store
        self._index = index
        self.online = False

    @property
    def index(self) -> CoverageIndex:
        return self._index

    def has_rows(self, table: str) -> bool:
        return self.store.count(table) > 0

    def count_matching(self, complete: CompleteQuery, query: Query) -> int:
        c = compile_select(complete.query, self.schema)
        try:
            keep = compile_predicate(query.where, self.schema, query.table)
        except QueryError:
            return 0  # EXISTS needs related rows: count nothing, so coverage stays sound
        after = compile_start_filter(query)
        return sum(1 for r in self.store.select(c.sql, c.params) if keep(r) and after(r))


def route(query: Query, rows: StoreRows) -> Route:
    p = plan(query, rows)
    if p.route is PlanRoute.LOCAL:
        return Route("local", tuple(c.id for c in p.relies_on), p.explain())
    if query.aggregate is not None:
        return Route("server", (), p.explain())
    explanation = p.explain()
    if p.route is PlanRoute.SERVER:
        explanation += " Its rows are synced into the local store as they arrive."
    return Route("sync", (query.id,), explanation)
