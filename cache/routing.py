"""Where a query is answered: locally (covered), synced into the store, or on the server.

The decision is ``queryplanner``'s coverage index over the desired queries that are complete;
this module only adapts the local store to its ``CachedRows`` protocol and maps the answer to
the client's three modes:

    local   covered by complete queries: answered from the store, kept live by their stream
    sync    not covered, a row query: local partial answer now; the query joins the server's
            desired set and the store completes it (the planner's LOCAL_THEN_SERVER)
    server  not covered and an aggregate (or demoted by the budget): offloaded to POST /query
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from queryplanner import Query, QueryError, Schema
from queryplanner.coverage import CompleteQuery
from queryplanner.coverage_index import CoverageIndex
from queryplanner.predicate import compile_predicate, compile_start_filter
from queryplanner.sql import compile_select

from .budget import Budget
from .store import LocalStore

Mode = Literal["local", "sync", "server"]


@dataclass(frozen=True)
class Route:
    mode: Mode
    relies_on: tuple[str, ...]
    explanation: str


class StoreRows:
    """``CachedRows`` over the local store: counts a complete query's rows matching another."""

    def __init__(self, schema: Schema, store: LocalStore) -> None:
        self.schema = schema
        self.store = store

    def count_matching(self, complete: CompleteQuery, query: Query) -> int:
        c = compile_select(complete.query, self.schema)
        try:
            keep = compile_predicate(query.where, self.schema, query.table)
        except QueryError:
            return 0  # EXISTS needs related rows: count nothing, so coverage stays sound
        after = compile_start_filter(query)
        return sum(1 for r in self.store.select(c.sql, c.params) if keep(r) and after(r))


def route(query: Query, index: CoverageIndex, rows: StoreRows, budget: Budget) -> Route:
    cov = index.covers(query, rows)
    if cov.covered:
        by = tuple(c.id for c in cov.by)
        names = ", ".join(f"{c.id} (complete at version {c.version})" for c in cov.by)
        return Route("local", by, f"Answered locally: covered by {names}. {cov.reason}".strip())
    if query.aggregate is not None:
        return Route(
            "server",
            (),
            f"Offloaded to the server: the aggregate's rows are not cached. {cov.reason}",
        )
    return Route(
        "sync",
        (query.id,),
        "Local partial answer now; the server completes it (the query is added to the desired "
        f"set). {cov.reason}".strip(),
    )
