"""POST /mutate in process (httpx ASGITransport, lifespan run by hand): outcomes and reasons."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from queryplanner import Schema
from server import create_app
from server.testing import issue, seed_mutations

Body = dict[str, Any]


def run(schema: Schema, test: Callable[[httpx.AsyncClient], Awaitable[None]], **opts: Any) -> None:
    async def main() -> None:
        app = create_app(schema, anonymous=True, **opts)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                await test(c)

    asyncio.run(main())


async def mutate(c: httpx.AsyncClient, client: str, muts: list[Body]) -> httpx.Response:
    return await c.post("/mutate", json={"clientId": client, "schemaVersion": 1, "mutations": muts})


def _ids(muts: list[Body], start: int) -> list[Body]:
    return [{**m, "id": start + i} for i, m in enumerate(muts)]


def test_outcomes_reasons_and_idempotence(demo_schema: Schema) -> None:
    async def test(c: httpx.AsyncClient) -> None:
        r = await mutate(c, "seeder-01", seed_mutations())
        assert r.status_code == 200
        assert all(x["status"] == "applied" for x in r.json()["results"])
        v0 = r.json()["version"]
        batch = _ids(
            [
                {"op": "insert", "table": "issue", "row": issue(1)},  # duplicate key
                {"op": "update", "table": "issue", "key": [2], "set": {"priority": "high"}},
                {"op": "update", "table": "issue", "key": [2], "set": {"title": "ok"}},
                {"op": "update", "table": "issue", "key": [99], "set": {"title": "x"}},
                {
                    "op": "update",
                    "table": "issue",
                    "key": [3],
                    "set": {"title": "c"},
                    "ifVersion": v0 - 1,
                },
                {"op": "update", "table": "issue", "key": [4], "set": {"id": 40}},
                {"op": "upsert", "table": "user", "row": {"id": 1, "name": "ann2"}},
                {"op": "upsert", "table": "user", "row": {"id": 3, "name": "cy"}},
                {"op": "delete", "table": "issue", "key": [5], "ifVersion": v0},
                {"op": "insert", "table": "nope", "row": {}},
                {"op": "insert", "table": "user", "row": {"id": 4}},
            ],
            1,
        )
        r = await mutate(c, "writer-01", batch)
        assert r.status_code == 200, r.text
        body = r.json()
        res = {x["id"]: x for x in body["results"]}
        assert "already exists" in res[1]["reason"]
        assert "priority" in res[2]["reason"] and "integer" in res[2]["reason"]
        assert res[3]["status"] == "applied" and res[3]["version"] == body["version"]
        assert "No row with key [99]" in res[4]["reason"]
        assert res[5]["reason"].startswith("Conflict")
        assert "primary key" in res[6]["reason"]
        assert [res[i]["status"] for i in (7, 8, 9)] == ["applied"] * 3
        assert "Unknown table 'nope'" in res[10]["reason"]
        assert "user.name" in res[11]["reason"]
        assert body["lastMutationId"] == 11
        # A replay of the whole batch returns the recorded outcomes and changes nothing.
        again = await mutate(c, "writer-01", batch)
        assert again.json() == body
        # A gap is refused, naming the expected id.
        gap = await mutate(
            c, "writer-01", _ids([{"op": "delete", "table": "user", "key": [3]}], 13)
        )
        assert gap.status_code == 409
        assert gap.json()["error"]["expected"] == 12
        # Field-level last-writer-wins: two clients change different columns of one row.
        await mutate(
            c,
            "writer-02",
            _ids([{"op": "update", "table": "issue", "key": [6], "set": {"title": "A"}}], 1),
        )
        await mutate(
            c,
            "writer-03",
            _ids([{"op": "update", "table": "issue", "key": [6], "set": {"status": "done"}}], 1),
        )
        q = await c.post(
            "/query",
            json={
                "schemaVersion": 1,
                "query": {"table": "issue", "where": {"column": "id", "op": "=", "value": 6}},
            },
        )
        assert '"title":"A"' in q.text and '"status":"done"' in q.text

    run(demo_schema, test)


def test_insert_then_update_in_one_batch_writes_the_net_row(demo_schema: Schema) -> None:
    async def test(c: httpx.AsyncClient) -> None:
        r = await mutate(
            c,
            "writer-04",
            _ids(
                [
                    {"op": "insert", "table": "user", "row": {"id": 5, "name": "a"}},
                    {"op": "update", "table": "user", "key": [5], "set": {"email": "a@x"}},
                    {"op": "insert", "table": "user", "row": {"id": 6, "name": "b"}},
                    {"op": "delete", "table": "user", "key": [6]},
                ],
                1,
            ),
        )
        assert [x["status"] for x in r.json()["results"]] == ["applied"] * 4
        q = await c.post("/query", json={"schemaVersion": 1, "query": {"table": "user"}})
        assert '"email":"a@x"' in q.text and '"id":6' not in q.text

    run(demo_schema, test)


def test_concurrent_batches_commit_together_and_a_refused_one_alone(demo_schema: Schema) -> None:
    """Batches waiting for the writer are applied in one transaction (group commit), in arrival
    order; when DuckDB refuses one of them (here a unique index our checks do not know), only
    that batch is rejected and the others still apply."""
    from queryplanner.protocol import parse_mutation
    from server.db import Database
    from server.store import Store

    db = Database(":memory:")
    store = Store(demo_schema, db)
    db.write_sync(lambda: db.cursor().execute("CREATE UNIQUE INDEX label_name ON label(name)"))

    def batch(docs: list[Body]) -> list[Any]:
        return [parse_mutation({"id": i + 1, **d}, "m") for i, d in enumerate(docs)]

    async def main() -> list[Any]:
        await store.mutate("seeder-01", batch(seed_mutations()))
        calls = [
            store.mutate(f"writer-{k:02d}", batch([
                {"op": "update", "table": "issue", "key": [1], "set": {"title": f"t{k}"}},
                {"op": "insert", "table": "label",
                 "row": {"id": 10 + k, "name": "bug" if k == 3 else f"l{k}", "color": None}},
            ]))
            for k in range(6)
        ]
        return await asyncio.gather(*calls)

    try:
        outcomes = asyncio.run(main())
        for k, out in enumerate(outcomes):
            statuses = {r.status for r in out.results}
            assert statuses == ({"rejected"} if k == 3 else {"applied"}), (k, out)
        assert "database rejected" in outcomes[3].results[0].reason
        cur = db.cursor()
        title, v = cur.execute("SELECT title, _v FROM issue WHERE id = 1").fetchone()
        assert title == "t5" and v == outcomes[5].version
        labels = cur.execute("SELECT id FROM label ORDER BY id").fetchall()
        assert [r[0] for r in labels] == [1, 10, 11, 12, 14, 15]
        recorded = cur.execute("SELECT count(*) FROM _qs_mutation WHERE client_id LIKE 'writer-%'")
        assert recorded.fetchone()[0] == 12
        # Replays answer the recorded outcomes, whatever transaction they committed in.
        again = asyncio.run(store.mutate("writer-03", batch([{"op": "delete", "table": "issue",
                                                              "key": [1]}])))
        assert again.results[0].status == "rejected"
    finally:
        db.close()
