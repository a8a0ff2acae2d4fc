"""Hydration and live changes over a real uvicorn socket with a real SSE client (httpx-sse)."""

from __future__ import annotations

from typing import Any

from queryplanner import Schema
from server.testing import Api, RunningServer, StreamReader, db_rows, iso, issue

KEYS = {"issue_label": ("issue_id", "label_id")}


def _complete(qid: str) -> Any:
    return lambda evs: any(e.name == "poke" and qid in e.data["complete"] for e in evs)


def test_hydration_equals_duckdb(server: RunningServer, demo_schema: Schema) -> None:
    api = Api(server.url, "client-hydrate")
    doc = {
        "table": "issue",
        "where": {"column": "priority", "op": ">=", "value": 1},
        "orderBy": [["sort_order", "desc"]],
        "limit": 3,
        "related": {"comments": {}, "labels": {}},
    }
    reader = StreamReader(server.url, "client-hydrate", keys=KEYS)
    try:
        reader.wait_for(lambda evs: any(e.name == "hello" for e in evs))
        qid = api.add_query(demo_schema, doc)
        reader.wait_for(_complete(qid))
        expected = db_rows(
            server,
            "SELECT id, title, _v FROM issue WHERE priority >= 1 ORDER BY sort_order DESC, id "
            "LIMIT 3",
        )
        got = sorted((k[0], r["title"], r["_v"]) for k, r in reader.state["issue"].items())
        assert got == sorted(expected)
        ids = [e[0] for e in expected]
        comments = db_rows(
            server, f"SELECT id FROM comment WHERE issue_id IN ({','.join('?' * len(ids))})", ids
        )
        assert sorted(reader.state.get("comment", {})) == sorted(comments)
        junction = db_rows(
            server,
            "SELECT issue_id, label_id FROM issue_label WHERE issue_id IN "
            f"({','.join('?' * len(ids))})",
            ids,
        )
        assert sorted(reader.state.get("issue_label", {})) == sorted(junction)
        # Every row carries the wire form: timestamps as ISO strings.
        row = next(iter(reader.state["issue"].values()))
        assert row["created"] == "2026-01-01T00:00:00"
    finally:
        reader.close()
        api.close()


def test_live_insert_update_in_out_delete(server: RunningServer, demo_schema: Schema) -> None:
    api = Api(server.url, "client-live")
    reader = StreamReader(server.url, "client-live")
    try:
        qid = api.add_query(
            demo_schema,
            {"table": "issue", "where": {"column": "status", "op": "=", "value": "open"}},
        )
        reader.wait_for(_complete(qid))
        assert set(reader.state["issue"]) == {(i,) for i in range(1, 7)}

        v = api.mutate({"op": "insert", "table": "issue", "row": issue(10)})["version"]
        reader.wait_version(v)
        assert (10,) in reader.state["issue"]

        v = api.mutate({"op": "update", "table": "issue", "key": [2], "set": {"status": "done"}})[
            "version"
        ]
        reader.wait_version(v)
        assert (2,) not in reader.state["issue"]  # moved out of the query

        v = api.mutate(
            {
                "op": "update",
                "table": "issue",
                "key": [2],
                "set": {"status": "open", "title": "back"},
            }
        )["version"]
        reader.wait_version(v)
        assert reader.state["issue"][(2,)]["title"] == "back"  # moved back in, new values

        v = api.mutate({"op": "update", "table": "issue", "key": [3], "set": {"title": "renamed"}})[
            "version"
        ]
        reader.wait_version(v)
        assert reader.state["issue"][(3,)]["title"] == "renamed"
        assert reader.state["issue"][(3,)]["_v"] == v

        v = api.mutate({"op": "delete", "table": "issue", "key": [4]})["version"]
        reader.wait_version(v)
        assert (4,) not in reader.state["issue"]

        expected = db_rows(server, "SELECT id, title, _v FROM issue WHERE status = 'open'")
        got = {(k[0], r["title"], r["_v"]) for k, r in reader.state["issue"].items()}
        assert got == set(expected)
        pokes = [e for e in reader.events if e.name == "poke"]
        versions = [p.data["version"] for p in pokes]
        assert versions == sorted(versions)
        # The outcomes of this client's mutations reach its stream, each once.
        outcome_ids = [m["id"] for p in pokes for m in p.data["mutations"]]
        assert outcome_ids == list(range(1, 6))
    finally:
        reader.close()
        api.close()


def test_shared_rows_are_sent_once_and_refcounted(
    server: RunningServer, demo_schema: Schema
) -> None:
    api = Api(server.url, "client-shared")
    reader = StreamReader(server.url, "client-shared")
    try:
        q1 = api.add_query(
            demo_schema, {"table": "issue", "where": {"column": "id", "op": "<=", "value": 3}}
        )
        reader.wait_for(_complete(q1))
        q2 = api.add_query(
            demo_schema, {"table": "issue", "where": {"column": "id", "op": "<=", "value": 2}}
        )
        evs = reader.wait_for(_complete(q2))
        hydration = next(e for e in evs if e.name == "poke" and q2 in e.data["complete"])
        assert hydration.data["put"] == {}  # rows 1 and 2 are already held
        r = api.http.post(
            "/queries", json={"clientId": "client-shared", "schemaVersion": 1, "remove": [q1]}
        )
        assert r.status_code == 200
        evs = reader.wait_for(lambda evs: any(e.name == "poke" and e.data["del"] for e in evs))
        removal = next(e for e in evs if e.name == "poke" and e.data["del"])
        assert removal.data["del"] == {"issue": [[3]]}  # 1 and 2 are still held by q2
        assert set(reader.state["issue"]) == {(1,), (2,)}
        assert iso(reader.state["issue"][(1,)]["created"]) == "2026-01-01T00:00:00"
    finally:
        reader.close()
        api.close()


def test_graceful_shutdown_sends_final_event(demo_schema: Schema) -> None:
    from server import create_app
    from server.testing import serve_app

    with serve_app(create_app(demo_schema, anonymous=True)) as running:
        reader = StreamReader(running.url, "client-shutdown")
        reader.wait_for(lambda evs: any(e.name == "hello" for e in evs))
    try:
        evs = reader.wait_for(lambda evs: any(e.name == "error" for e in evs))
        assert evs[-1].data["code"] == "shutdown"
    finally:
        reader.close()
