"""Resume after a dropped connection: exactly the missed changes, or an explicit reset."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from queryplanner import Schema
from server import create_app
from server.testing import (
    Api,
    RunningServer,
    StreamReader,
    db_rows,
    issue,
    seed_mutations,
    serve_app,
)

OPEN = {"table": "issue", "where": {"column": "status", "op": "=", "value": "open"}}


def _hello(reader: StreamReader) -> dict[str, Any]:
    evs = reader.wait_for(lambda evs: any(e.name == "hello" for e in evs))
    return next(e for e in evs if e.name == "hello").data


def _oracle(server: RunningServer) -> set[tuple[Any, ...]]:
    return set(db_rows(server, "SELECT id, title, _v FROM issue WHERE status = 'open'"))


def _state(reader: StreamReader) -> set[tuple[Any, ...]]:
    return {(k[0], r["title"], r["_v"]) for k, r in reader.state.get("issue", {}).items()}


def _writes(api: Api, base: int) -> int:
    api.mutate({"op": "insert", "table": "issue", "row": issue(base)})
    api.mutate({"op": "update", "table": "issue", "key": [1], "set": {"status": "done"}})
    api.mutate({"op": "update", "table": "issue", "key": [2], "set": {"title": f"t{base}"}})
    return int(api.mutate({"op": "delete", "table": "issue", "key": [3]})["version"])


def test_resume_has_no_gap_and_no_duplicate(server: RunningServer, demo_schema: Schema) -> None:
    api = Api(server.url, "client-resume")
    other = Api(server.url, "client-writer")
    first = StreamReader(server.url, "client-resume")
    try:
        qid = api.add_query(demo_schema, OPEN)
        first.wait_for(lambda evs: any(e.name == "poke" and qid in e.data["complete"] for e in evs))
        # The state and id after hydration: what a client has if later pokes get lost.
        early_id, early_state = first.last_id, copy.deepcopy(first.state)
        v = _writes(other, 20)
        first.wait_version(v)
    finally:
        first.close()
    # Writes while disconnected, including this client's own mutations.
    v = _writes(other, 30)
    own = api.mutate({"op": "update", "table": "issue", "key": [5], "set": {"title": "mine"}})
    second = StreamReader(
        server.url, "client-resume", last_event_id=first.last_id, state=first.state
    )
    try:
        assert _hello(second)["resume"] == "resumed"
        second.wait_version(own["version"])
        assert _state(second) == _oracle(server)
        seen = [e for e in first.events + second.events if e.name == "poke"]
        assert len({e.id for e in seen}) == len(seen)  # no poke delivered twice
        outcomes = [m["id"] for e in seen for m in e.data["mutations"]]
        assert outcomes == [1]  # this client's one mutation, reported once
    finally:
        second.close()
    # A client that lost every poke after hydration resumes from its older id, exactly.
    third = StreamReader(server.url, "client-resume", last_event_id=early_id, state=early_state)
    try:
        assert _hello(third)["resume"] == "resumed"
        third.wait_version(own["version"])
        assert _state(third) == _oracle(server)
    finally:
        third.close()
        api.close()
        other.close()
    assert v > 0


def test_resume_beyond_the_change_log_resets_and_rehydrates(demo_schema: Schema) -> None:
    app = create_app(demo_schema, anonymous=True, log_versions=2)
    with serve_app(app) as server:
        api = Api(server.url, "client-short")
        api.mutate(*seed_mutations())
        first = StreamReader(server.url, "client-short")
        qid = api.add_query(demo_schema, OPEN)
        first.wait_for(lambda evs: any(e.name == "poke" and qid in e.data["complete"] for e in evs))
        first.close()
        for i in range(3):
            _writes(api, 40 + i)
        second = StreamReader(
            server.url, "client-short", last_event_id=first.last_id, state=first.state
        )
        try:
            assert _hello(second)["resume"] == "reset"
            evs = second.wait_for(
                lambda evs: any(e.name == "poke" and qid in e.data["complete"] for e in evs)
            )
            names = [e.name for e in evs]
            assert names.index("reset") < names.index("poke")
            assert _state(second) == _oracle(server)
        finally:
            second.close()
            api.close()


def test_restart_resets_streams_and_never_reapplies_mutations(
    demo_schema: Schema, tmp_path: Path
) -> None:
    db = str(tmp_path / "restart.duckdb")
    batch = {
        "clientId": "client-restart",
        "schemaVersion": 1,
        "mutations": [
            {"id": 1, "op": "insert", "table": "user", "row": {"id": 7, "name": "x"}},
            {"id": 2, "op": "update", "table": "user", "key": [7], "set": {"name": "y"}},
        ],
    }
    with serve_app(create_app(demo_schema, db_path=db, anonymous=True)) as server:
        api = Api(server.url, "client-restart")
        first = api.http.post("/mutate", json=batch).json()
        reader = StreamReader(server.url, "client-restart")
        reader.wait_version(first["version"])
        reader.close()
        api.close()
    with serve_app(create_app(demo_schema, db_path=db, anonymous=True)) as server:
        api = Api(server.url, "client-restart")
        replay = api.http.post("/mutate", json=batch)
        assert replay.status_code == 200
        assert replay.json() == first  # the recorded outcomes; nothing applied again
        assert db_rows(server, "SELECT name, _v FROM user WHERE id = 7") == [
            ("y", first["version"])
        ]
        gap = api.http.post(
            "/mutate",
            json={**batch, "mutations": [{"id": 4, "op": "delete", "table": "user", "key": [7]}]},
        )
        assert gap.status_code == 409
        assert gap.json()["error"]["code"] == "mutation_order"
        assert gap.json()["error"]["expected"] == 3
        again = StreamReader(server.url, "client-restart", last_event_id=reader.last_id)
        try:
            hello = _hello(again)
            assert hello["resume"] == "reset"
            assert hello["lastMutationId"] == 2
        finally:
            again.close()
            api.close()
