"""``Client.preload``: the awaitables of queries synced into the store without a subscriber.

A preload adds a query to the desired set as an inactive query (cached, kept fresh, evicted
least recently used first, dropped at its TTL) and waits for the poke that completes it: the
store then answers the query, and every query it covers, locally. No snapshot is built, which
is what makes a preload the way to fill a large cache (a 100k-row snapshot costs its caller a
third of a second of dicts). It fails when the query leaves the desired set before it is
complete: evicted or demoted by the budget, refused by the server, or the client closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping

from queryplanner import Query, Schema, bind


class Preloads:
    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[int]]] = {}

    def wait(self, qid: str) -> asyncio.Future[int]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(qid, []).append(fut)
        return fut

    def completed(self, complete: Mapping[str, int]) -> None:
        """A poke completed these queries (id -> version)."""
        for qid, version in complete.items():
            for fut in self._waiting.pop(qid, ()):
                if not fut.done():
                    fut.set_result(version)

    def failed(self, qids: Iterable[str], error: Callable[[str], Exception]) -> None:
        """These queries left the desired set before they were complete."""
        for qid in qids:
            for fut in self._waiting.pop(qid, ()):
                if not fut.done():
                    fut.set_exception(error(qid))

    def close(self, error: Exception) -> None:
        self.failed(list(self._waiting), lambda _: error)


def synced_query(query: Query, schema: Schema) -> Query:
    """The query whose rows a preload syncs: the query itself, or for an aggregate the rows it
    is computed from (the aggregate then runs locally)."""
    if query.aggregate is None:
        return query
    return bind(Query(query.table, query.where), schema)
