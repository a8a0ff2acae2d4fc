"""A large hydration is split into pokes of bounded size: the earlier ones carry only rows that
the hydrating queries bring (no delete, no ``complete``, no mutation outcome, no row of a live
change); the last carries the rest and marks the query complete."""

from __future__ import annotations

from typing import Any

import orjson

from queryplanner import Schema
from queryplanner.protocol import MutationResult
from server import create_app
from server.clients import ClientRecord, PokeBuilder
from server.engine import EngineLimits
from server.subscriptions import SubDelta
from server.testing import Api, StreamReader, db_rows, issue, seed_mutations, serve_app


def _row(i: int, v: int = 1) -> dict[str, Any]:
    return {"id": i, "title": "x" * 100, "_v": v}


def test_split_keeps_live_changes_in_the_last_poke(demo_schema: Schema) -> None:
    rec = ClientRecord("c1", None, 1)
    rec.held[("issue", (1,))] = [1, 1]
    rec.held[("issue", (2,))] = [1, 1]
    b = PokeBuilder(rec, 7)
    # A live change of a complete query: issue 1 changed, issue 2 left, issue 3 entered.
    b.delta(SubDelta(added={("issue", (3,)): _row(3, 7)}, changed={("issue", (1,)): _row(1, 7)},
                     removed={("issue", (2,))}))
    b.mutations.append(MutationResult(4, "applied", None, 7))
    # A hydration of 50 rows, one of them (3) also brought by the live change.
    b.hydrate("q-big", {("issue", (i,)): _row(i, 7 if i == 3 else 1) for i in range(3, 53)})
    pokes = b.pokes(demo_schema, {}, max_bytes=1000)
    assert len(pokes) > 3
    *early, last = pokes
    for p in early:
        doc = orjson.loads(orjson.dumps(p.to_json()))
        assert not doc["del"] and not doc["complete"] and not doc["mutations"]
        ids = {r["id"] for r in doc["put"]["issue"]}
        assert not ids & {1, 2, 3}
        assert len(orjson.dumps(doc["put"])) < 1000 + 200
    doc = orjson.loads(orjson.dumps(last.to_json()))
    assert doc["complete"] == {"q-big": 7} and doc["del"] == {"issue": [[2]]}
    assert [m["id"] for m in doc["mutations"]] == [4]
    assert {1, 3} <= {r["id"] for r in doc["put"]["issue"]}
    sent = [r["id"] for p in pokes for r in orjson.loads(orjson.dumps(p.to_json()))["put"]["issue"]]
    assert sorted(sent) == [1, *range(3, 53)]  # every row once


def test_large_hydration_over_the_wire(demo_schema: Schema) -> None:
    app = create_app(demo_schema, anonymous=True, engine_limits=EngineLimits(poke_bytes=4096))
    with serve_app(app) as server:
        api = Api(server.url, "big-seed")
        api.mutate(*seed_mutations())
        api.mutate(*[{"op": "insert", "table": "issue", "row": issue(i, title="t" * 200)}
                     for i in range(10, 130)])
        reader = StreamReader(server.url, "big-client")
        try:
            small = api.add_query(demo_schema, {"table": "issue", "where": {
                "column": "id", "op": "<", "value": 3}}, client_id="big-client")
            reader.wait_for(lambda evs: any(e.name == "poke" and small in e.data["complete"]
                                            for e in evs))
            before = len(reader.events)
            big = api.add_query(demo_schema, {"table": "issue", "related": {"comments": {}}},
                                client_id="big-client")
            reader.wait_for(lambda evs: any(e.name == "poke" and big in e.data["complete"]
                                            for e in evs))
            parts = [e for e in reader.events[before:] if e.name == "poke"]
            assert len(parts) > 5
            assert len({p.data["version"] for p in parts}) == 1
            assert all(not p.data["complete"] for p in parts[:-1])
            assert len({p.id for p in parts}) == len(parts)  # each part has its own cursor
            want = db_rows(server, "SELECT id FROM issue")
            assert sorted(reader.state["issue"]) == sorted(want)
        finally:
            reader.close()
            api.close()


def test_blocks_fill_pokes_within_the_bound_and_are_shared(demo_schema: Schema) -> None:
    rows = {("issue", (i,)): _row(i) for i in range(1, 301)}
    fragments: dict[Any, Any] = {}
    sent: list[list[int]] = []
    first: list[Any] = []
    for cid in ("c1", "c2"):
        b = PokeBuilder(ClientRecord(cid, None, 1), 7)
        b.hydrate("q-big", rows)
        pokes = b.pokes(demo_schema, fragments, max_bytes=20_000)
        first.append(pokes[0].put["issue"][0])
        docs = [orjson.loads(orjson.dumps(p.to_json())) for p in pokes]
        assert len(docs) > 2 and docs[-1]["complete"] == {"q-big": 7}
        for doc in docs:
            assert len(orjson.dumps(doc["put"])) < 20_000 + 100
        sent.append([r["id"] for d in docs for r in d["put"]["issue"]])
    assert sent[0] == sent[1] and sorted(sent[0]) == list(range(1, 301))
    # The second client reused the first one's block encoding (one orjson call per block).
    assert first[0] is first[1]
    assert len({k for k in fragments if isinstance(k, tuple)}) == -(-300 // 64)
