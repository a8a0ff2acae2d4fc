"""Aggregates the local cache does not cover are offloaded to the server (``POST /query`` with
``live``) and stay live; DuckDB over the server's data is the oracle."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cache import Client, Snapshot
from queryplanner import Schema, col, table
from server import create_app
from server.testing import Api, RunningServer, db_rows, issue, serve_app

from ._live import Recorder, client_for, online, run, seed

BY_STATUS = (
    table("issue").aggregate(["status"], n=("count", None), total=("sum", "priority")).build()
)
ORACLE = "SELECT status, count(*), sum(priority) FROM issue GROUP BY status"


def oracle(srv: RunningServer) -> dict[str, tuple[int, int]]:
    return {s: (int(n), int(t)) for s, n, t in db_rows(srv, ORACLE)}


def groups(snap: Snapshot) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for r in snap.rows:
        assert r["status"] not in out, f"group {r['status']!r} twice in {snap.rows}"
        out[r["status"]] = (int(r["n"]), int(r["total"]))
    return out


def test_uncovered_aggregate_is_answered_by_the_server_and_stays_live(
    demo_schema: Schema,
) -> None:
    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            seed(srv.url, n_issues=12).close()
            client = client_for(srv.url, demo_schema)
            writer = client_for(srv.url, demo_schema)
            await client.start()
            await writer.start()
            await online(client)
            assert "server" in client.explain(BY_STATUS).lower()

            one_shot = await client.query(BY_STATUS)
            assert one_shot.source == "server" and one_shot.complete
            assert (
                groups(one_shot) == oracle(srv) == {"open": (12, sum(i % 4 for i in range(1, 13)))}
            )

            rec = Recorder(client.subscribe(BY_STATUS))
            first = await rec.matching(lambda s: s.source == "server", "the server's answer")
            assert first.complete and groups(first) == oracle(srv)

            # Writes through another client: the offloaded subscription follows the server.
            await asyncio.wait_for(writer.update("issue", [1], {"status": "done"}), 10)
            await asyncio.wait_for(writer.insert("issue", issue(50, priority=3)), 10)
            expected = oracle(srv)
            assert expected == {
                "open": (12, sum(i % 4 for i in range(2, 13)) + 3),
                "done": (1, 1),
            }
            snap = await rec.matching(lambda s: groups(s) == expected, "the new aggregate")
            assert snap.source == "server" and snap.complete
            assert snap.version >= first.version

            await asyncio.wait_for(writer.delete("issue", [50]), 10)
            snap = await rec.matching(lambda s: groups(s) == oracle(srv), "the aggregate again")
            assert snap.source == "server" and not rec.errors
            rec.dispose()
            await writer.close()
            await client.close()

    run(body)


def test_uncovered_aggregate_with_a_filter_matches_duckdb(demo_schema: Schema) -> None:
    """A filtered aggregate (a WHERE the cache does not cover) equals DuckDB's after writes."""
    query = (
        table("issue")
        .where(col("priority") >= 2)
        .aggregate(["status"], n=("count", None), total=("sum", "priority"))
        .build()
    )
    sql = "SELECT status, count(*), sum(priority) FROM issue WHERE priority >= 2 GROUP BY status"

    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            seed(srv.url, n_issues=9).close()
            client: Client = client_for(srv.url, demo_schema)
            writer = client_for(srv.url, demo_schema)
            await client.start()
            await writer.start()

            def want() -> dict[str, Any]:
                return {s: (int(n), int(t)) for s, n, t in db_rows(srv, sql)}

            rec = Recorder(client.subscribe(query))
            await rec.matching(lambda s: groups(s) == want(), "the first aggregate")
            await asyncio.wait_for(writer.update("issue", [3], {"status": "todo"}), 10)
            await asyncio.wait_for(writer.update("issue", [1], {"priority": 2}), 10)
            snap = await rec.matching(
                lambda s: "todo" in groups(s) and groups(s) == want(), "the updated aggregate"
            )
            assert snap.source == "server"
            rec.dispose()
            await writer.close()
            await client.close()

    run(body)


def test_offloaded_aggregate_resumes_after_the_server_restarts(
    demo_schema: Schema, tmp_path: Path
) -> None:
    """The live ``POST /query`` drops with the server; the client re-opens it (backoff) and
    the subscription follows writes made after the restart."""
    db = str(tmp_path / "server.duckdb")

    async def body() -> None:
        with serve_app(create_app(demo_schema, db_path=db, anonymous=True)) as first:
            seed(first.url).close()
            port = int(first.url.rsplit(":", 1)[1])
            client = client_for(first.url, demo_schema)
            await client.start()
            rec = Recorder(client.subscribe(BY_STATUS))
            await rec.matching(lambda s: groups(s) == oracle(first), "the first aggregate")
        with serve_app(create_app(demo_schema, db_path=db, anonymous=True), port=port) as srv:
            api = Api(srv.url, "restart-writer")
            api.mutate({"op": "update", "table": "issue", "key": [2], "set": {"status": "done"}})
            api.close()
            expected = oracle(srv)
            assert "done" in expected
            snap = await rec.matching(
                lambda s: groups(s) == expected, "the aggregate after restart"
            )
            assert snap.source == "server" and not rec.errors
            rec.dispose()
            await client.close()

    run(body)
