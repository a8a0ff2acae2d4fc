"""The planner: where to answer a query, as a value (no I/O).

    p = plan(q, cache_state)
    p.route        # Route.LOCAL, Route.SERVER or Route.LOCAL_THEN_SERVER
    p.relies_on    # the complete queries a LOCAL answer is computed from
    p.explain()    # "Answered locally: covered by issue[project_id = 3] (complete at version 812)."

The rules, in order:

1. covered by complete queries (``coverage``) -> LOCAL, online or not;
2. an aggregate that is not covered -> SERVER: a partial count or sum would be a wrong number,
   so the server computes it (offload), also when offline (it waits for the connection);
3. a row query with cached rows of its table -> LOCAL_THEN_SERVER: show the cached part now and
   let the server complete it (offline: when the connection returns);
4. otherwise -> SERVER.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from .coverage import CachedRows, CompleteQuery, Coverage
from .coverage_index import CoverageIndex
from .describe import describe
from .query import Query


class Route(StrEnum):
    LOCAL = "local"
    SERVER = "server"
    LOCAL_THEN_SERVER = "local_then_server"


class CacheState(CachedRows, Protocol):
    """What the planner needs to know about a client's cache (``cache`` implements it)."""

    @property
    def index(self) -> CoverageIndex:
        """The complete queries, with the versions they are complete at."""
        ...

    @property
    def online(self) -> bool: ...

    def has_rows(self, table: str) -> bool:
        """Does the store hold any row of ``table``?"""
        ...


@dataclass(frozen=True)
class Plan:
    route: Route
    query: Query
    coverage: Coverage
    online: bool
    description: str  # describe(query), for explain()
    by_descriptions: tuple[str, ...]  # describe() of each complete query relied on

    @property
    def relies_on(self) -> tuple[CompleteQuery, ...]:
        return self.coverage.by

    def explain(self) -> str:
        """One sentence a developer understands."""
        what, why = self.description, self.coverage.reason
        if self.route is Route.LOCAL:
            if not self.relies_on:
                return (f"Answered locally: {what} is empty whatever the data, so it needs no "
                        "cached rows.")
            return f"Answered locally: covered by {self._by()}."
        if self.route is Route.LOCAL_THEN_SERVER:
            if self.online:
                return (f"Showing the cached rows of {what} now; the server completes it "
                        f"({why}).")
            return (f"Offline: showing the cached rows of {what}; the server completes it "
                    f"when the connection returns ({why}).")
        if self.query.aggregate is not None:
            wait = "" if self.online else " once the connection returns"
            return f"Offloaded to the server{wait}: the rows of {what} are not all cached ({why})."
        if self.online:
            return f"Sent to the server: nothing of {what} is cached yet."
        return f"Waiting for the server: offline and nothing of {what} is cached yet."

    def _by(self, shown: int = 3) -> str:
        by = self.relies_on
        parts = [f"{d} (complete at version {c.version})"
                 for d, c in zip(self.by_descriptions[:shown], by[:shown], strict=True)]
        if len(by) > shown:
            parts.append(f"{len(by) - shown} more")
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def plan(q: Query, cache_state: CacheState) -> Plan:
    """Decide where to answer the bound query ``q``."""
    index = cache_state.index
    cov = index.covers(q, cache_state)
    online = cache_state.online
    if cov.covered:
        route = Route.LOCAL
    elif q.aggregate is None and cache_state.has_rows(q.table):
        route = Route.LOCAL_THEN_SERVER
    else:
        route = Route.SERVER
    schema = index.schema
    by = tuple(describe(c.query, schema) for c in cov.by)
    return Plan(route, q, cov, online, describe(q, schema), by)
