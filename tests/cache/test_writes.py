"""Optimistic writes, rollback on rejection, and the persisted outbox, against a real server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cache import MutationRejected
from queryplanner import Schema, col, table
from server import create_app
from server.testing import db_rows, issue, serve_app

from ._live import Recorder, client_for, ids, locked, online, run, seed, until

OPEN = table("issue").where(col("status") == "open").order_by("id").build()


def test_optimistic_write_is_visible_before_the_ack_and_settles(demo_schema: Schema) -> None:
    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            seed(srv.url).close()
            client = client_for(srv.url, demo_schema)
            await client.start()
            rec = Recorder(client.subscribe(OPEN))
            await rec.complete()
            fut = client.update("issue", [1], {"status": "done"})
            # Visible at once: before this coroutine yields, so before any answer can arrive.
            assert ids(rec.last) == [2, 3, 4, 5, 6] and not fut.done()
            result = await asyncio.wait_for(fut, 10)
            assert result.status == "applied"
            await until(lambda: client.local.pending == [], "the pending layer to settle")
            assert ids(rec.last) == [2, 3, 4, 5, 6]
            assert db_rows(srv, "SELECT status FROM issue WHERE id = 1") == [("done",)]
            await client.close()

    run(body)


def test_rejected_write_is_rolled_back(demo_schema: Schema) -> None:
    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            seed(srv.url).close()
            client = client_for(srv.url, demo_schema)
            await client.start()
            rec = Recorder(client.subscribe(OPEN))
            before = (await rec.complete()).rows
            fut = client.update("issue", [2], {"status": "done"}, if_version=999)
            assert ids(rec.last) == [1, 3, 4, 5, 6]
            with pytest.raises(MutationRejected) as info:
                await asyncio.wait_for(fut, 10)
            assert "version" in info.value.reason
            snap = await rec.matching(lambda s: s.rows == before, "the rollback")
            assert snap.changes.added == ((2,),)
            assert db_rows(srv, "SELECT status FROM issue WHERE id = 2") == [("open",)]
            await client.close()

    run(body)


def test_optimistic_insert_of_an_existing_key_is_shown_then_rolled_back(
    demo_schema: Schema,
) -> None:
    """Regression: an optimistic insert whose key was already held was silently not shown."""

    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            seed(srv.url).close()
            client = client_for(srv.url, demo_schema)
            await client.start()
            rec = Recorder(client.subscribe(OPEN))
            before = (await rec.complete()).rows
            fut = client.insert("issue", issue(3, title="clash"))
            assert [r["title"] for r in rec.last.rows if r["id"] == 3] == ["clash"]
            with pytest.raises(MutationRejected):
                await asyncio.wait_for(fut, 10)
            await rec.matching(lambda s: s.rows == before, "the rollback of the insert")
            await client.close()

    run(body)


def test_outbox_survives_a_restart_and_applies_exactly_once(
    demo_schema: Schema, tmp_path: Path
) -> None:
    store = str(tmp_path / "client.duckdb")
    dead = "http://127.0.0.1:9"  # nothing listens: the client stays offline

    async def body() -> None:
        offline = client_for(dead, demo_schema, path=store)
        await offline.start()
        offline.insert("issue", issue(100, title="written offline"))
        offline.update("issue", [100], {"title": "edited offline"})
        await offline.close()

        app = create_app(demo_schema, db_path=str(tmp_path / "server.duckdb"), anonymous=True)
        with serve_app(app) as srv:
            seed(srv.url).close()
            client = client_for(srv.url, demo_schema, path=store)
            assert [m["id"] for m in locked(client, client.store.outbox)] == [1, 2]
            rec = Recorder(client.subscribe(table("issue").where(col("id") == 100).build()))
            assert [r["title"] for r in rec.last.rows] == ["edited offline"]  # still pending
            await client.start()
            await until(lambda: locked(client, client.store.outbox) == [], "the outbox to drain")
            await rec.matching(
                lambda s: s.complete and s.rows[0]["title"] == "edited offline", "the server's row"
            )
            await client.close()
            # A second restart sends nothing again (the server would reject a second insert).
            again = client_for(srv.url, demo_schema, path=store)
            await again.start()
            await online(again)
            assert locked(again, again.store.outbox) == [] and again.local.pending == []
            await again.close()
            assert db_rows(srv, "SELECT title FROM issue WHERE id = 100") == [("edited offline",)]
            assert db_rows(
                srv,
                "SELECT count(*) FROM _qs_mutation WHERE client_id = ?",
                [client.client_id],
            ) == [(2,)]

    run(body)


def test_pending_writes_count_against_the_budget(demo_schema: Schema) -> None:
    """An optimistic write's bytes count: an inactive cached query is evicted at once to make
    room (and leaves the server's desired set), the active one stays, and the store stays
    within the budget; once the server decides the write the layer's bytes are gone."""

    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            seed(srv.url).close()
            client = client_for(srv.url, demo_schema, budget_bytes=12_000)
            await client.start()
            low = table("issue").where(col("id") <= 3).build()
            high = table("issue").where(col("id") >= 4, col("id") <= 10).build()
            inactive = Recorder(client.subscribe(low))
            await inactive.complete()
            inactive.dispose()  # still cached, no longer pinned
            active = Recorder(client.subscribe(high))
            await active.complete()
            budget = client.local.budget
            low_id, high_id = inactive.last.query_id, active.last.query_id
            assert {low_id, high_id} <= set(client.local.desired)
            assert budget.pending_bytes == 0
            held = budget.bytes_held
            # Over the budget with everything cached, within it once ``low`` is gone.
            text = budget.budget_bytes - held - 300 + held // 4
            fut = client.insert("issue", issue(50, status="canceled", description="d" * text))
            # Synchronously, before any answer: the write's bytes are counted, room was made.
            assert budget.pending_bytes > text
            assert budget.bytes_held + budget.pending_bytes <= budget.budget_bytes
            assert low_id not in client.local.desired
            assert high_id in client.local.desired
            record = app.state.sync.engine.records[client.client_id]
            await until(lambda: low_id not in record.desired, "the server to drop it")
            assert (await asyncio.wait_for(fut, 10)).status == "applied"
            await until(lambda: budget.pending_bytes == 0, "the pending layer to settle")
            await client.close()

    run(body)
