"""Differential: the client's local answer == the server's answer == DuckDB over the source data.

Random filter/order/limit queries over the issue table. The client subscribes (the server
hydrates it, or the cache already covers it) and its local rows are compared with a fresh
client's ``query`` (answered by the server's ``POST /query``) and with hand-written SQL run
directly on the server's DuckDB (the oracle).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cache import Snapshot, SyncClient
from queryplanner import Query, Schema, col, table
from server import create_app
from server.testing import Api, RunningServer, db_rows, issue, seed_mutations, serve_app

STATUSES = ["open", "todo", "done"]
COLUMNS = ("id", "status", "priority", "assignee_id", "title")


@pytest.fixture(scope="module")
def world(demo_schema: Schema) -> Iterator[tuple[RunningServer, SyncClient, SyncClient]]:
    app = create_app(demo_schema, anonymous=True)
    with serve_app(app) as srv:
        api = Api(srv.url)
        api.mutate(*seed_mutations(2))
        api.mutate(
            *[
                {
                    "op": "upsert",
                    "table": "issue",
                    "row": issue(
                        i,
                        status=STATUSES[i % 3],
                        priority=(i * 7) % 4,
                        assignee_id=None if i % 5 == 0 else 1 + i % 2,
                        title=f"t{(i * 13) % 40:02d}",
                    ),
                }
                for i in range(1, 41)
            ]
        )
        api.close()
        local = SyncClient(srv.url, demo_schema, backoff_base=0.02, backoff_cap=0.2)
        fresh = SyncClient(srv.url, demo_schema, backoff_base=0.02, backoff_cap=0.2)
        try:
            yield srv, local, fresh
        finally:
            local.close()
            fresh.close()


@st.composite
def queries(draw: st.DrawFn) -> tuple[Query, str]:
    conds: list[Any] = []
    sql: list[str] = []
    if draw(st.booleans()):
        s = draw(st.sampled_from(STATUSES))
        conds.append(col("status") == s)
        sql.append(f"status = '{s}'")
    if draw(st.booleans()):
        p = draw(st.integers(0, 3))
        op = draw(st.sampled_from([">=", "<", "="]))
        conds.append(
            {">=": col("priority") >= p, "<": col("priority") < p, "=": col("priority") == p}[op]
        )
        sql.append(f"priority {op} {p}")
    if draw(st.booleans()):
        a = draw(st.sampled_from([1, 2]))
        conds.append(col("assignee_id") == a)
        sql.append(f"assignee_id = {a}")
    b = table("issue")
    if conds:
        b = b.where(*conds)
    order = draw(st.sampled_from(["priority", "title", "id"]))
    desc = draw(st.booleans())
    b = b.order_by(order, desc=desc)
    text = "SELECT " + ", ".join(COLUMNS) + " FROM issue"
    if sql:
        text += " WHERE " + " AND ".join(sql)
    text += f" ORDER BY {order} {'DESC' if desc else 'ASC'}" + (", id" if order != "id" else "")
    limit = draw(st.one_of(st.none(), st.integers(1, 12)))
    if limit is not None:
        b = b.limit(limit)
        text += f" LIMIT {limit}"
    return b.build(), text


def _complete(client: SyncClient, q: Query) -> Snapshot:
    done = threading.Event()
    got: list[Snapshot] = []

    def on(snap: Snapshot) -> None:
        if snap.complete:
            got.append(snap)
            done.set()

    sub = client.subscribe(q).subscribe(on)
    try:
        assert done.wait(15), f"no complete snapshot of {q.to_json()} within 15 s"
        return got[0]
    finally:
        sub.dispose()


def srv_schema(srv: RunningServer) -> Schema:
    return srv.sync.schema


def _project(rows: Any) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in COLUMNS) for r in rows]


@settings(
    deadline=None, max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pair=queries())
def test_client_equals_server_equals_duckdb(
    world: tuple[RunningServer, SyncClient, SyncClient], pair: tuple[Query, str]
) -> None:
    srv, local, fresh = world
    q, sql = pair
    expected = db_rows(srv, sql)
    theirs = fresh.query(q, timeout=15)
    assert theirs.source == "server"
    assert _project(theirs.rows) == expected, sql
    # A new client: the query is not covered, so the server hydrates it into the store (as
    # Arrow blocks, and as JSON rows for a client that asks for those).
    for arrow in (True, False):
        with SyncClient(srv.url, srv_schema(srv), backoff_base=0.02, backoff_cap=0.2,
                        arrow=arrow) as new:
            assert not new.explain(q).startswith("Answered locally")
            hydrated = _complete(new, q)
        assert _project(hydrated.rows) == expected, (sql, arrow)
    # Preloaded into a new client's store, then answered there.
    with SyncClient(srv.url, srv_schema(srv), backoff_base=0.02, backoff_cap=0.2) as new:
        new.preload(q, timeout=15)
        assert new.explain(q).startswith("Answered locally")
        assert _project(new.query(q).rows) == expected, sql
    # The long-lived client: after the first examples most queries are covered locally.
    mine = _complete(local, q)
    assert _project(mine.rows) == expected, (sql, local.explain(q))
