"""Online additive migrations: ``SyncServer.update_schema`` adds tables and nullable columns
while streams stay open; open streams get a ``schema`` event saying whether their client must
update; old clients keep receiving only the columns they know; anything but an addition is
refused with a message naming it."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from queryplanner import Schema
from queryplanner.errors import SchemaError
from server import create_app
from server.migration import check_additive
from server.testing import Api, StreamReader, db_rows, seed_mutations, serve_app


def _evolve(schema: Schema, version: int, min_client: int) -> Schema:
    """The demo schema plus issue.due (nullable) and a new table, both since ``version``."""
    doc: dict[str, Any] = copy.deepcopy(schema.to_dict())
    doc["version"], doc["minClientVersion"] = version, min_client
    doc["tables"]["issue"]["columns"]["due"] = {"type": "text", "nullable": True,
                                                "since": 2}
    doc["tables"]["reaction"] = {
        "columns": {"id": {"type": "integer", "nullable": False},
                    "emoji": {"type": "text", "nullable": False}},
        "primaryKey": ["id"], "since": 2,
    }
    return Schema.from_dict(doc)


def _schema_events(reader: StreamReader) -> list[dict[str, Any]]:
    return [e.data for e in reader.events if e.name == "schema"]


def test_update_schema_online(demo_schema: Schema) -> None:
    app = create_app(demo_schema, anonymous=True)
    with serve_app(app) as server:
        api = Api(server.url, "schema-seed")
        api.mutate(*seed_mutations())
        old = StreamReader(server.url, "client-v1")
        try:
            qid = api.add_query(demo_schema, {"table": "issue"}, client_id="client-v1")
            old.wait_for(lambda evs: any(e.name == "poke" and qid in e.data["complete"]
                                         for e in evs))
            v2 = _evolve(demo_schema, 2, 1)
            added = server.run(server.sync.update_schema(v2))
            assert added.columns == (("issue", "due"),) and added.tables == ("reaction",)
            old.wait_for(lambda evs: any(e.name == "schema" for e in evs))
            assert _schema_events(old) == [
                {"serverSchemaVersion": 2, "minClientVersion": 1, "updateNeeded": False}]
            assert db_rows(server, "SELECT count(due) FROM issue") == [(0,)]
            assert httpx.get(server.url + "/schema").json()["version"] == 2
            # A v2 client writes the new column and table; the v1 client keeps its columns.
            new_api = Api(server.url, "client-v2-writer")
            out = new_api.mutate(
                {"op": "update", "table": "issue", "key": [1], "set": {"due": "friday"}},
                {"op": "insert", "table": "reaction", "row": {"id": 1, "emoji": "+1"}},
                schema_version=2,
            )
            assert all(r["status"] == "applied" for r in out["results"]), out
            new = StreamReader(server.url, "client-v2", schema_version=2)
            try:
                q2 = new_api.add_query(v2, {"table": "issue"}, client_id="client-v2",
                                       schema_version=2)
                new.wait_for(lambda evs: any(e.name == "poke" and q2 in e.data["complete"]
                                             for e in evs))
                assert new.state["issue"][(1,)]["due"] == "friday"
                old.wait_version(out["version"])
                assert "due" not in old.state["issue"][(1,)]
                assert old.state["issue"][(1,)]["_v"] == out["version"]
                # Old clients may still write what they know.
                old_api = Api(server.url, "client-v1-writer")
                r = old_api.mutate(
                    {"op": "update", "table": "issue", "key": [2], "set": {"title": "old"}})
                old_api.close()
                assert r["results"][0]["status"] == "applied"
                # v3 drops v1 from the window: the v1 stream is told to update, v2's is not.
                v3 = _evolve(demo_schema, 3, 2)
                server.run(server.sync.update_schema(v3))
                old.wait_for(lambda evs: len([e for e in evs if e.name == "schema"]) == 2)
                new.wait_for(lambda evs: len([e for e in evs if e.name == "schema"]) == 1)
                assert _schema_events(old)[-1] == {"serverSchemaVersion": 3,
                                                   "minClientVersion": 2, "updateNeeded": True}
                assert _schema_events(new)[-1]["updateNeeded"] is False
                r2 = api.http.post("/queries", json={"clientId": "client-v1",
                                                     "schemaVersion": 1})
                assert r2.status_code == 409 and r2.json()["error"]["minClientVersion"] == 2
            finally:
                new.close()
                new_api.close()
        finally:
            old.close()
            api.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["tables"]["issue"]["columns"].pop("title"), "cannot be dropped"),
        (lambda d: d["tables"]["issue"]["columns"]["title"].update(type="integer"),
         "changed its type"),
        (lambda d: d["tables"]["issue"]["columns"].update(
            due={"type": "text", "nullable": False, "since": 2}), "must be nullable"),
        (lambda d: d["tables"]["issue"]["relationships"].pop("comments"), "cannot change"),
        (lambda d: d["tables"]["issue"].update(primaryKey=["id", "project_id"]),
         "primary key"),
        (lambda d: d.update(version=1), "must be above"),
    ],
)
def test_non_additive_changes_are_refused(demo_schema: Schema, change: Any,
                                          message: str) -> None:
    doc: dict[str, Any] = copy.deepcopy(demo_schema.to_dict())
    doc["version"] = 2
    change(doc)
    try:
        new = Schema.from_dict(doc)
    except SchemaError as exc:  # a document the schema loader refuses on its own
        pytest.fail(f"test case is not a valid schema: {exc}")
    with pytest.raises(SchemaError, match=message):
        check_additive(demo_schema, new)
