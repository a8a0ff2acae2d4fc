"""The client against a real sync server on 127.0.0.1 (server.testing.run_server)."""

from __future__ import annotations

from pathlib import Path

from cache import ConnectionState
from cache.store import LocalStore
from queryplanner import Schema, bind, col, table
from server import create_app
from server.testing import Api, issue, run_server, serve_app

from ._live import Recorder, client_for, ids, locked, online, run, seed, until


def test_covered_query_answered_and_kept_live_with_the_server_stopped(
    demo_schema: Schema, tmp_path: Path
) -> None:
    """A query covered by a complete one is answered from the store with no server at all."""
    proj = table("issue").where(col("project_id") == 1).build()
    sub = (
        table("issue")
        .where(col("project_id") == 1, col("priority") >= 2)
        .order_by("sort_order", desc=True)
        .limit(2)
        .build()
    )

    async def body() -> None:
        with run_server(demo_schema, tmp_path / "db.duckdb", anonymous=True) as url:
            seed(url).close()
            client = client_for(url, demo_schema)
            await client.start()
            whole = Recorder(client.subscribe(proj))
            snap = await whole.complete()
            assert sorted(ids(snap)) == [1, 2, 3, 4, 5, 6]
        # The server is gone (its block closed every stream and stopped uvicorn).
        await until(
            lambda: client.connection_state.value is not ConnectionState.ONLINE,
            "the client to notice the server stopped",
        )
        assert client.explain(sub).startswith("Answered locally")
        local = Recorder(client.subscribe(sub))
        first = local.last  # emitted at once, synchronously
        assert first.complete and first.source == "local"
        assert ids(first) == [6, 3]  # priority = id % 4 >= 2, sort_order desc
        # Kept live locally: an offline write reaches the covered query at once.
        client.update("issue", [6], {"priority": 0})
        snap = await local.matching(lambda s: ids(s) == [3, 2], "the offline write")
        assert snap.complete and snap.source == "local"
        assert snap.changes.added == ((2,),) and snap.changes.removed == ((6,),)
        await client.close()

    run(body)


def test_sync_query_hydrates_and_follows_live_changes(demo_schema: Schema) -> None:
    q = table("issue").where(col("status") == "open").order_by("id").build()

    async def body() -> None:
        with run_server(demo_schema, anonymous=True) as url:
            api = seed(url)
            client = client_for(url, demo_schema)
            await client.start()
            rec = Recorder(client.subscribe(q))
            assert rec.snaps and not rec.snaps[0].complete  # the local partial answer first
            snap = await rec.complete()
            assert ids(snap) == [1, 2, 3, 4, 5, 6] and snap.source == "local"
            api.mutate({"op": "update", "table": "issue", "key": [2], "set": {"status": "done"}})
            snap = await rec.matching(lambda s: ids(s) == [1, 3, 4, 5, 6], "the live change")
            assert snap.changes.removed == ((2,),)
            await client.close()
            api.close()

    run(body)


def test_reconnect_after_a_server_restart_resumes_with_no_gap(
    demo_schema: Schema, tmp_path: Path
) -> None:
    """The server restarts on the same port and database; the client resumes and misses nothing."""
    q = table("issue").where(col("status") == "open").order_by("id").build()
    db = tmp_path / "server.duckdb"

    async def body() -> None:
        with run_server(demo_schema, db, anonymous=True) as url:
            seed(url).close()
            client = client_for(url, demo_schema)
            await client.start()
            rec = Recorder(client.subscribe(q))
            await rec.complete()
        port = int(url.rsplit(":", 1)[1])
        await until(
            lambda: client.connection_state.value is not ConnectionState.ONLINE,
            "the client to go offline",
        )
        with run_server(demo_schema, db, port=port, anonymous=True) as url2:
            api = Api(url2, "writer-client")
            # Written while the client may still be reconnecting: it must arrive either way.
            api.mutate({"op": "update", "table": "issue", "key": [1], "set": {"status": "done"}})
            api.mutate({"op": "insert", "table": "issue", "row": issue(7)})
            await online(client)
            api.mutate({"op": "delete", "table": "issue", "key": [4]})
            snap = await rec.matching(
                lambda s: ids(s) == [2, 3, 5, 6, 7], "every change made across the restart"
            )
            assert snap.complete
            assert client.reconnects >= 1
            # The local store equals the server's state for the query (no gap, no leftovers).
            local = sorted(
                r["id"]
                for r in locked(
                    client, client.store.select, "SELECT id FROM issue WHERE status = 'open'"
                )
            )
            assert local == [2, 3, 5, 6, 7]
            api.close()
            await client.close()

    run(body)


def test_an_inactive_query_is_dropped_when_its_ttl_ends(demo_schema: Schema) -> None:
    """The TTL runs on the injected clock; the query leaves the store and the server's set."""
    now = [1000.0]
    q = bind(table("issue").where(col("status") == "open").build(), demo_schema)

    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            seed(srv.url).close()
            client = client_for(srv.url, demo_schema, clock=lambda: now[0], expiry_interval=0.02)
            await client.start()
            rec = Recorder(client.subscribe(q, ttl=60))
            await rec.complete()
            records = srv.sync.engine.records
            assert q.id in records[client.client_id].desired
            rec.dispose()  # inactive: still cached, still desired
            now[0] += 30
            assert client.expire() == []
            assert q.id in client.local.desired and locked(client, client.store.count, "issue") == 6
            now[0] += 31
            await until(lambda: q.id not in client.local.desired, "the TTL to end")
            assert locked(client, client.store.count, "issue") == 0
            await until(
                lambda: q.id not in records[client.client_id].desired,
                "the server to drop the query",
            )
            await client.close()

    run(body)


def test_fresh_hello_drops_rows_held_without_a_cursor(demo_schema: Schema, tmp_path: Path) -> None:
    """Regression: a client that reconnected without a cursor kept rows the server had deleted
    meanwhile (a ``fresh`` hello means the server assumes the client holds nothing)."""
    q = table("issue").where(col("status") == "open").order_by("id").build()
    path = str(tmp_path / "client.duckdb")

    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            api = seed(srv.url)
            first = client_for(srv.url, demo_schema, path=path)
            await first.start()
            await Recorder(first.subscribe(q)).complete()
            await first.close()
            api.mutate({"op": "delete", "table": "issue", "key": [4]})
            store = LocalStore(demo_schema, path)
            store.set_meta("cursor", None)  # the cursor is lost; the rows are not
            store.close()
            again = client_for(srv.url, demo_schema, path=path)
            rec = Recorder(again.subscribe(q))
            assert 4 in ids(rec.last)  # what the store held
            await again.start()
            await rec.matching(
                lambda s: s.complete and ids(s) == [1, 2, 3, 5, 6], "the deleted row to go"
            )
            await again.close()
            api.close()

    run(body)
