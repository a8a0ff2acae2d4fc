"""A client that takes hydrations as Arrow (the default) ends in the state of one that takes
JSON rows: the same answers, the same member sets and the same bytes counted, and both stay
live; DuckDB over the server's data is the oracle."""

from __future__ import annotations

import asyncio

from cache import Client, Snapshot
from queryplanner import Schema, bind, col, table
from server import create_app
from server.testing import db_rows, issue, serve_app

from ._live import Recorder, client_for, locked, online, run, seed

ALL = table("issue").build()
OPEN = table("issue").where(col("status") == "open").order_by("modified", desc=True).build()


def test_arrow_and_json_clients_hold_the_same_rows(demo_schema: Schema) -> None:
    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            api = seed(srv.url, n_issues=6)
            api.mutate(*[{"op": "insert", "table": "issue", "row": issue(
                i, status="open" if i % 3 else "done", description="d" * (i % 7),
                modified=f"2024-02-{1 + i % 20:02d}T08:00:00.{i:06d}")} for i in range(10, 400)])
            by_arrow = client_for(srv.url, demo_schema)
            by_json = client_for(srv.url, demo_schema, arrow=False)
            writer = client_for(srv.url, demo_schema)
            for c in (by_arrow, by_json, writer):
                await c.start()
                await online(c)
            recs = {}
            for name, c in (("arrow", by_arrow), ("json", by_json)):
                recs[name] = [Recorder(c.subscribe(q)) for q in (ALL, OPEN)]
                for rec in recs[name]:
                    await rec.matching(lambda s: s.complete, "the complete answer")
            want = sorted(i for (i,) in db_rows(srv, "SELECT id FROM issue"))

            # Bound (ordered by the primary key): the store's own order depends on which
            # hydration's rows arrived first.
            bound = [bind(q, demo_schema) for q in (ALL, OPEN)]

            def state(c: Client) -> tuple[object, ...]:
                local = c.local
                return (
                    [r["id"] for r in local.run(bound[0])],
                    local.run(bound[1]),
                    local.budget.bytes_held,
                    [sorted(local.budget.members(q.id)) for q in bound],
                )

            records = app.state.sync.engine.records
            assert records[by_arrow.client_id].arrow and not records[by_json.client_id].arrow
            a, j = locked(by_arrow, state, by_arrow), locked(by_json, state, by_json)
            assert sorted(a[0]) == want  # type: ignore[arg-type]
            assert a == j

            # Live after a columnar hydration: a write reaches both.
            await asyncio.wait_for(writer.update("issue", [11], {"status": "done"}), 10)
            for name in ("arrow", "json"):
                snap: Snapshot = await recs[name][1].matching(
                    lambda s: 11 not in [r["id"] for r in s.rows], "issue 11 leaving OPEN")
                assert snap.complete
            a, j = locked(by_arrow, state, by_arrow), locked(by_json, state, by_json)
            assert a == j
            for name in recs:
                for rec in recs[name]:
                    rec.dispose()
            for c in (by_arrow, by_json, writer):
                await c.close()
            api.close()

    run(body)
