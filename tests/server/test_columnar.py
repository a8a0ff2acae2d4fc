"""Columnar hydration (``GET /sync?rows=arrow``): a one-table query's first hydration comes as
Arrow blocks read from DuckDB; every stream ends with exactly the rows a JSON stream gets and
DuckDB holds, under the read rules, across drops."""

from __future__ import annotations

import copy
import time
from typing import Any

import httpx
import pyarrow as pa
import pytest

from queryplanner import Schema
from server import create_app, make_token
from server.testing import (
    Api,
    RunningServer,
    StreamReader,
    completed,
    db_rows,
    issue,
    seed_mutations,
    serve_app,
)

KEYS = {"issue_label": ("issue_id", "label_id")}

QUERIES: list[dict[str, Any]] = [
    {"table": "issue"},
    {"table": "issue", "where": {"column": "status", "op": "=", "value": "done"}},
    {"table": "issue", "orderBy": [["modified", "desc"]], "limit": 7},
    {"table": "issue", "where": {"column": "estimate", "op": "is null"}},
    {"table": "comment", "where": {"column": "created", "op": ">=",
                                   "value": "2024-01-02T00:00:00"}},
    {"table": "issue", "related": {"labels": {}}},  # related children: rows as JSON
]


def _varied_issue(i: int) -> dict[str, Any]:
    """Values that differ in their encodings: microseconds or none, NULLs, unicode, floats."""
    return issue(
        i,
        title=f"issue {i} — ünïcödé ✓" if i % 3 else f"issue {i}",
        description=None if i % 4 == 0 else "line\nbreak \"quoted\" " * (i % 5),
        status="done" if i % 2 else "open",
        estimate=None if i % 5 == 0 else i / 7,
        modified=f"2024-01-{1 + i % 27:02d}T10:{i % 60:02d}:00" + (".123456" if i % 2 else ""),
    )


def _seeded(running: RunningServer) -> None:
    api = Api(running.url)
    api.mutate(*seed_mutations())
    api.mutate(*[{"op": "insert", "table": "issue", "row": _varied_issue(i)}
                 for i in range(10, 90)])
    api.mutate(*[{"op": "insert", "table": "comment", "row": {
        "id": 500 + i, "issue_id": 10 + i, "creator_id": 1, "body": f"c{i}",
        "created": f"2024-01-0{1 + i % 3}T00:00:00.{i:06d}"}} for i in range(20)])
    api.close()


def _hydrate(url: str, schema: Schema, cid: str, query: dict[str, Any], *, arrow: bool,
             token: str | None = None) -> StreamReader:
    reader = StreamReader(url, cid, keys=KEYS, token=token,
                          arrow_schema=schema if arrow else None)
    reader.wait_for(lambda evs: any(e.name == "hello" for e in evs))
    api = Api(url, cid, token=token)
    qid = api.add_query(schema, query)
    api.close()
    reader.wait_for(lambda evs: qid in completed(evs), timeout=30)
    return reader


def test_arrow_and_json_streams_end_with_the_same_rows_as_duckdb(demo_schema: Schema) -> None:
    app = create_app(demo_schema, anonymous=True)
    with serve_app(app) as running:
        _seeded(running)
        columnar_pokes = 0
        for n, query in enumerate(QUERIES):
            by_json = _hydrate(running.url, demo_schema, f"json-client-{n}", query, arrow=False)
            by_arrow = _hydrate(running.url, demo_schema, f"arrow-client-{n}", query, arrow=True)
            try:
                assert by_arrow.state == by_json.state, query
                blocks = [e for e in by_arrow.events if e.name == "poke" and e.data.get("arrow")]
                assert not any(e.data.get("arrow") for e in by_json.events)
                if "related" in query:
                    assert not blocks  # nested results keep the row form
                else:
                    assert blocks, f"no Arrow block for {query}"
                    columnar_pokes += len(blocks)
                    # Blocks go ahead of the poke that completes the query, nothing else in them.
                    for e in blocks:
                        assert not (e.data["put"] or e.data["del"] or e.data["complete"])
                table = query["table"]
                got = by_arrow.state[table]
                if "limit" not in query and "where" not in query:
                    want = db_rows(running, f'SELECT id, _v FROM "{table}"')
                    assert {(k[0], r["_v"]) for k, r in got.items()} == set(map(tuple, want))
            finally:
                by_json.close()
                by_arrow.close()
        assert columnar_pokes >= 5


def test_rows_the_client_holds_are_not_sent_again(demo_schema: Schema) -> None:
    app = create_app(demo_schema, anonymous=True)
    with serve_app(app) as running:
        _seeded(running)
        reader = _hydrate(running.url, demo_schema, "holder-client", {"table": "issue", "where": {
            "column": "id", "op": "<", "value": 20}}, arrow=True)
        try:
            before = len(reader.events)
            api = Api(running.url, "holder-client")
            qid = api.add_query(demo_schema, {"table": "issue"})
            api.close()
            reader.wait_for(lambda evs: qid in completed(evs), timeout=30)
            later = [e for e in reader.events[before:] if e.name == "poke"]
            sent = [
                row["id"]
                for e in later
                for block in e.data.get("arrow", {}).get("issue", [])
                for row in _block_rows(demo_schema, block)
            ]
            assert sent and not {i for i in sent if i < 20}  # held rows only counted
            assert sorted(sent) == sorted(i for (i,) in reader.state["issue"] if i >= 20)
            want = {(i,) for (i,) in db_rows(running, "SELECT id FROM issue")}
            assert set(reader.state["issue"]) == want
            # The server counts both queries' holds: dropping the wide one deletes only its
            # own rows.
            api = Api(running.url, "holder-client")
            api.http.post("/queries", json={"schemaVersion": 1, "clientId": "holder-client",
                                            "add": [], "remove": [qid]}).raise_for_status()
            api.close()
            reader.wait_for(lambda evs: set(reader.state["issue"]) == {
                (i,) for (i,) in db_rows(running, "SELECT id FROM issue WHERE id < 20")},
                timeout=10)
        finally:
            reader.close()


def _block_rows(schema: Schema, block: str) -> list[dict[str, Any]]:
    import base64

    from queryplanner.wire_arrow import from_ipc
    from server.columnar import wire_rows

    t = schema.table("issue")
    return wire_rows(t, from_ipc(t, base64.b64decode(block)))


def test_a_dropped_arrow_stream_recovers(demo_schema: Schema) -> None:
    """The stream drops after some Arrow blocks: back with its last id (a resume or a reset)
    or without one, the client ends with exactly the query's rows."""
    n = 30_000
    app = create_app(demo_schema, anonymous=True)
    with serve_app(app) as running:
        api = Api(running.url)
        api.mutate(*seed_mutations())
        rows = [issue(i, title="t" * 300) for i in range(1000, 1000 + n)]
        app.state.sync.store.bulk_load("issue", pa.Table.from_pylist(rows))
        expected = {(i,) for i in range(1, 7)} | {(i,) for i in range(1000, 1000 + n)}
        for resume in (True, False):
            cid = f"arrow-dropped-{int(resume)}"
            first = StreamReader(running.url, cid, keys=KEYS, arrow_schema=demo_schema)
            first.wait_for(lambda evs: any(e.name == "hello" for e in evs))
            adder = Api(running.url, cid)
            qid = adder.add_query(demo_schema, {"table": "issue"})
            adder.close()
            evs = first.wait_for(
                lambda evs: any(e.name == "poke" and e.data.get("arrow") for e in evs), 30
            )
            assert qid not in completed(evs)
            first.close()
            state = copy.deepcopy(first.state)
            second = StreamReader(
                running.url, cid, keys=KEYS, arrow_schema=demo_schema,
                last_event_id=first.last_id if resume else None,
                state=state if resume else None,
            )
            try:
                second.wait_for(lambda evs, q=qid: q in completed(evs), timeout=60)
                deadline = time.monotonic() + 30
                while set(second.state["issue"]) != expected and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert set(second.state["issue"]) == expected
            finally:
                second.close()
        api.close()


def test_read_rules_apply_to_arrow_blocks(demo_schema: Schema) -> None:
    secret = "columnar-test-secret-0123456789abcdef"
    visible = {"or": [{"column": "visibility", "op": "=", "value": "public"},
                      {"column": "creator_id", "op": "=", "value": {"auth": "user_id"}}]}
    app = create_app(demo_schema, secret=secret, rules={"read": {"issue": visible}})
    with serve_app(app) as running:
        admin = make_token(secret, "1")
        api = Api(running.url, "rules-seed", token=admin)
        api.mutate(*seed_mutations())
        api.mutate(*[{"op": "insert", "table": "issue", "row": issue(
            100 + i, creator_id=1, visibility="private" if i % 2 else "public")}
            for i in range(20)])
        api.close()
        reader = _hydrate(running.url, demo_schema, "rules-reader", {"table": "issue"},
                          arrow=True, token=make_token(secret, "2"))
        try:
            assert any(e.data.get("arrow") for e in reader.events if e.name == "poke")
            ids = {i for (i,) in reader.state["issue"]}
            assert ids == {i for (i,) in db_rows(
                running, "SELECT id FROM issue WHERE visibility = 'public' OR creator_id = 2")}
            assert not {100 + i for i in range(20) if i % 2} & ids
        finally:
            reader.close()


@pytest.mark.parametrize("value", ["parquet", "ARROW", ""])
def test_an_unknown_row_encoding_is_refused(server: RunningServer, value: str) -> None:
    r = httpx.get(f"{server.url}/sync", params={
        "clientId": "enc-client-1", "schemaVersion": "1", "rows": value}, timeout=5)
    assert r.status_code == 400
    body = r.json()["error"]
    assert body["field"] == "rows" and repr(value) in body["message"]


def test_rows_that_may_not_go_ahead_come_back_as_the_json_rows(demo_schema: Schema) -> None:
    """``ArrowHydration``: the rows its ``ahead`` test refuses are returned as wire rows, equal
    to the JSON path's (``Subscription.run``); the others are in the Arrow pokes, once each."""
    import base64

    import duckdb

    from queryplanner import bind, parse_query
    from queryplanner.protocol import encode_event
    from queryplanner.sql import create_table_sql
    from server.columnar import ArrowHydration
    from server.subscriptions import Subscription

    con = duckdb.connect()
    for sql in create_table_sql(demo_schema, version_column="_v"):
        con.execute(sql)
    for i in range(1, 200):
        r = _varied_issue(i)
        con.execute(
            "INSERT INTO issue (id, project_id, title, description, status, priority, "
            "assignee_id, creator_id, visibility, estimate, sort_order, created, modified, _v) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [r["id"], r["project_id"], r["title"], r["description"], r["status"],
             r["priority"], r["assignee_id"], r["creator_id"], r["visibility"], r["estimate"],
             r["sort_order"], r["created"], r["modified"], i % 7 + 1])
    query = bind(parse_query({"table": "issue", "where": {
        "column": "status", "op": "=", "value": "done"}}, demo_schema), demo_schema)
    sub = Subscription((query.id, ""), query, demo_schema, {})
    want = sub.run(con)
    hydration = ArrowHydration(sub, demo_schema, lambda k: k[1][0] % 3 != 0, max_bytes=2000)
    sent = list(hydration.pokes(con, 9))
    assert sent
    ahead: dict[Any, Any] = {}
    for s in sent:
        assert s.poke.version == 9 and not s.poke.put and not s.poke.complete
        (block,) = s.poke.arrow["issue"]
        rows = _block_rows(demo_schema, base64.b64encode(block).decode())
        assert [("issue", (r["id"],)) for r in rows] == s.keys
        assert [r["_v"] for r in rows] == s.versions
        ahead.update({("issue", (r["id"],)): r for r in rows})
        encode_event(s.poke)  # encodable as sent
    assert set(ahead) == {k for k in want if k[1][0] % 3 != 0}
    assert set(hydration.later) == {k for k in want if k[1][0] % 3 == 0}
    assert {**ahead, **hydration.later} == want


def test_a_build_that_fails_after_the_rows_went_out_resets_the_client(
    demo_schema: Schema,
) -> None:
    """Fault injection: the incremental state of one query cannot be built after its Arrow
    blocks were sent. Its client is told (``queryError``), starts over (``reset``) with its
    other queries, ends with exactly their rows, and stays live."""
    from queryplanner import parse_query, query_id

    failing = {"table": "issue", "where": {"column": "status", "op": "=", "value": "done"}}
    bad_qid = query_id(parse_query(failing, demo_schema))
    app = create_app(demo_schema, anonymous=True)
    with serve_app(app) as running:
        _seeded(running)
        maintainer = app.state.sync.engine.maintainer
        real_add = maintainer.add

        def add(cur: Any, sub: Any) -> None:
            if sub.key[0] == bad_qid:
                raise RuntimeError("injected: the state of this query cannot be built")
            real_add(cur, sub)

        maintainer.add = add
        small = {"table": "issue", "where": {"column": "id", "op": "<", "value": 15}}
        reader = _hydrate(running.url, demo_schema, "fail-build-client", small, arrow=True)
        try:
            api = Api(running.url, "fail-build-client")
            assert api.add_query(demo_schema, failing) == bad_qid
            evs = reader.wait_for(lambda evs: any(e.name == "reset" for e in evs), 30)
            names = [e.name for e in evs]
            errors = [e for e in evs if e.name == "queryError"]
            assert [e.data["queryId"] for e in errors] == [bad_qid]
            assert names.index("queryError") < names.index("reset")
            blocks = [e for e in evs if e.name == "poke" and e.data.get("arrow")]
            assert blocks, "the failing query's rows went out before its build"
            assert names.index("poke", names.index("reset")) > names.index("reset")
            want = {(i,) for (i,) in db_rows(running, "SELECT id FROM issue WHERE id < 15")}
            reader.wait_for(lambda evs: set(reader.state.get("issue", {})) == want, 10)
            assert bad_qid not in {k[0] for k in app.state.sync.engine.subs}
            # Still live for the query that remains.
            api.mutate({"op": "update", "table": "issue", "key": [3], "set": {"title": "live"}})
            reader.wait_for(lambda evs: reader.state["issue"][(3,)]["title"] == "live", 10)
            api.close()
        finally:
            reader.close()


def test_a_hello_does_not_wait_for_a_deferred_build(demo_schema: Schema) -> None:
    """After an Arrow hydration of 100k issues completes, the server builds the subscription's
    state (about a second of engine work here): a stream opened meanwhile gets its hello while
    that build still runs (it pauses every 5,000 loaded rows to serve new streams; the DuckDB
    fetch before the first pause is the wait that remains)."""
    n = 100_000
    app = create_app(demo_schema, anonymous=True)
    with serve_app(app) as running:
        api = Api(running.url)
        api.mutate(*seed_mutations())
        rows = [issue(i) for i in range(1000, 1000 + n)]
        app.state.sync.store.bulk_load("issue", pa.Table.from_pylist(rows))
        engine = app.state.sync.engine
        first = StreamReader(running.url, "deferred-first", keys=KEYS, arrow_schema=demo_schema)
        second: StreamReader | None = None
        try:
            first.wait_for(lambda evs: any(e.name == "hello" for e in evs))
            adder = Api(running.url, "deferred-first")
            qid = adder.add_query(demo_schema, {"table": "issue"})
            adder.close()
            first.wait_for(lambda evs: qid in completed(evs), timeout=60)
            t0 = time.monotonic()
            assert engine._deferred, "the build had already ended: nothing to measure"
            second = StreamReader(running.url, "deferred-second")
            second.wait_for(lambda evs: any(e.name == "hello" for e in evs), timeout=30)
            building = bool(engine._deferred)
            hello = time.monotonic() - t0
            deadline = time.monotonic() + 60
            while engine._deferred and time.monotonic() < deadline:
                time.sleep(0.01)
            built = time.monotonic() - t0
            assert not engine._deferred
            assert building, f"the hello came after the build ({hello:.2f}s, built {built:.2f}s)"
            assert len(first.state["issue"]) == n + 6
        finally:
            first.close()
            if second is not None:
                second.close()
            api.close()
