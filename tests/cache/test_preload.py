"""``Client.preload``: a query synced into the store without a subscriber; afterwards it and the
queries it covers are answered locally with no server round trip, and it stays fresh."""

from __future__ import annotations

import asyncio

import pytest

from cache import CacheError, ClientClosed
from queryplanner import Schema, bind, col, table
from server import create_app
from server.testing import db_rows, issue, serve_app

from ._live import Recorder, client_for, locked, online, run, seed

OPEN = table("issue").where(col("status") == "open").build()


def test_preload_fills_the_store_and_covers_later_queries(demo_schema: Schema) -> None:
    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            api = seed(srv.url, n_issues=6)
            api.mutate(*[{"op": "insert", "table": "issue", "row": issue(
                i, status="open" if i % 2 else "done")} for i in range(10, 60)])
            client = client_for(srv.url, demo_schema)
            writer = client_for(srv.url, demo_schema)
            for c in (client, writer):
                await c.start()
                await online(c)
            version = await asyncio.wait_for(client.preload(OPEN), 10)
            assert version >= 1
            want = {i for (i,) in db_rows(srv, "SELECT id FROM issue WHERE status = 'open'")}
            assert {r["id"] for r in locked(client, client.local.run, bind(OPEN, demo_schema))
                    } == want
            # No subscriber: nothing was materialized, the query is inactive (not pinned).
            qid = bind(OPEN, demo_schema).id
            assert not client.budget.is_pinned(qid)
            # A narrower query is covered: answered locally, complete at once.
            narrow = table("issue").where(col("status") == "open", col("id") < 30).build()
            assert "local" in client.explain(narrow).lower()
            snap = await client.query(narrow)
            assert snap.source == "local" and snap.complete
            assert {r["id"] for r in snap.rows} == {i for i in want if i < 30}
            # Preloading what is covered returns at once.
            assert await asyncio.wait_for(client.preload(narrow), 1) >= version

            # Kept fresh: another client's write reaches the preloaded rows.
            rec = Recorder(client.subscribe(narrow))
            await asyncio.wait_for(writer.update("issue", [11], {"status": "done"}), 10)
            await rec.matching(lambda s: 11 not in [r["id"] for r in s.rows], "issue 11 gone")
            rec.dispose()

            # An aggregate's preload syncs the rows it is computed from: then it runs locally.
            by_status = table("issue").aggregate(["status"], n=("count", None)).build()
            await asyncio.wait_for(client.preload(by_status), 10)
            snap = await client.query(by_status)
            assert snap.source == "local"
            assert {r["status"]: r["n"] for r in snap.rows} == {
                s: n for s, n in db_rows(srv, "SELECT status, count(*) FROM issue GROUP BY 1")}
            for c in (client, writer):
                await c.close()
            api.close()

    run(body)


def test_a_preload_the_budget_cannot_hold_fails(demo_schema: Schema) -> None:
    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            api = seed(srv.url, n_issues=6)
            api.mutate(*[{"op": "insert", "table": "issue", "row": issue(
                i, description="x" * 2000)} for i in range(10, 40)])
            client = client_for(srv.url, demo_schema, budget_bytes=20_000)
            await client.start()
            await online(client)
            with pytest.raises(CacheError, match="left the cache before it was complete"):
                await asyncio.wait_for(client.preload(table("issue").build()), 10)
            assert client.budget.bytes_held <= 20_000
            await client.close()
            with pytest.raises(ClientClosed):
                await client.preload(OPEN)
            api.close()

    run(body)


def test_closing_fails_a_waiting_preload(demo_schema: Schema) -> None:
    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            client = client_for(srv.url, demo_schema)
            await client.start()
            waiting = asyncio.ensure_future(client.preload(OPEN))
            await asyncio.sleep(0)  # the preload waits for its complete poke
            assert not waiting.done()
            await client.close()
            with pytest.raises(ClientClosed):
                await asyncio.wait_for(waiting, 5)

    run(body)
