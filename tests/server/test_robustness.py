"""Hostile and slow clients: malformed bodies, caps, schema windows, slow consumers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queryplanner import Schema
from server import EngineLimits, ServerOptions, create_app
from server.testing import Api, StreamReader, db_rows, issue, seed_mutations, serve_app

ENDPOINTS = ["/queries", "/mutate", "/query"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "clientId",
        "schemaVersion",
        "add",
        "remove",
        "mutations",
        "query",
        "live",
        "id",
        "op",
        "table",
        "row",
        "key",
        "set",
        "ifVersion",
        "ttl",
        "where",
    ]
)
shaped = st.fixed_dictionaries(
    {
        "clientId": st.sampled_from(["client-fuzz-1", "x", 5]),
        "schemaVersion": st.sampled_from([1, 0, "1", None]),
    },
    optional={
        "add": st.lists(st.dictionaries(field_names, json_values, max_size=3), max_size=2),
        "remove": json_values,
        "mutations": st.lists(st.dictionaries(field_names, json_values, max_size=6), max_size=3),
        "query": st.dictionaries(field_names, json_values, max_size=4),
        "live": json_values,
    },
)
bodies = st.one_of(
    st.binary(max_size=40),
    json_values.map(lambda v: json.dumps(v).encode()),
    shaped.map(lambda v: json.dumps(v).encode()),
)


@settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ENDPOINTS), bodies), min_size=10, max_size=10))
def test_malformed_bodies_get_json_errors_never_500(demo_schema: Schema, cases: list[Any]) -> None:
    async def main() -> None:
        app = create_app(demo_schema, anonymous=True)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                for path, body in cases:
                    r = await c.post(path, content=body)
                    assert r.status_code < 500, (path, body, r.text)
                    if r.status_code >= 400:
                        err = r.json()["error"]
                        assert err["code"] and err["message"]
                        assert "Traceback" not in r.text

    asyncio.run(main())


def _v2(schema: Schema) -> Schema:
    doc = schema.to_dict()
    doc["version"], doc["minClientVersion"] = 2, 1
    doc["tables"]["issue"]["columns"]["due"] = {"type": "timestamp", "nullable": True, "since": 2}
    return Schema.from_dict(doc)


def test_schema_window_and_old_clients(demo_schema: Schema) -> None:
    schema = _v2(demo_schema)
    opts = ServerOptions(max_body_bytes=10_000)
    with serve_app(create_app(schema, anonymous=True, options=opts)) as server:
        api = Api(server.url, "client-old-01")
        api.mutate(*seed_mutations(2))
        for path in ENDPOINTS:
            r = api.http.post(
                path,
                json={
                    "clientId": "client-old-01",
                    "schemaVersion": 3,
                    "query": {},
                    "mutations": [],
                    "add": [],
                },
            )
            assert r.status_code in (400, 409), r.text
        r = api.http.post("/queries", json={"clientId": "client-old-01", "schemaVersion": 3})
        assert r.status_code == 409
        err = r.json()["error"]
        assert (
            err["code"],
            err["clientVersion"],
            err["minClientVersion"],
            err["serverVersion"],
            err["action"],
        ) == ("schema_version", 3, 1, 2, "update")
        r = api.http.get("/sync", params={"clientId": "client-old-01", "schemaVersion": 3})
        assert r.status_code == 409
        r = api.http.post("/query", json={"schemaVersion": 3, "query": {"table": "issue"}})
        assert r.status_code == 409
        # An old client gets only the columns it knows, and cannot write the others.
        reader = StreamReader(server.url, "client-old-01", schema_version=1)
        try:
            qid = api.add_query(schema, {"table": "issue"})
            reader.wait_for(
                lambda evs: any(e.name == "poke" and qid in e.data["complete"] for e in evs)
            )
            row = reader.state["issue"][(1,)]
            assert "due" not in row and "title" in row
        finally:
            reader.close()
        out = api.mutate(
            {"op": "update", "table": "issue", "key": [1], "set": {"due": "2026-02-01T00:00:00"}}
        )
        assert "Unknown column 'due'" in out["results"][0]["reason"]
        big = api.http.post("/mutate", content=b"{" + b" " * 20_000 + b"}")
        assert big.status_code == 413 and big.json()["error"]["code"] == "too_large"
        bad = api.http.post(
            "/queries",
            json={
                "clientId": "client-old-01",
                "schemaVersion": 1,
                "add": [{"id": "0" * 16, "query": {"table": "isue"}}],
            },
        )
        rejected = bad.json()["rejected"][0]["error"]
        assert rejected["code"] == "invalid_query" and "Did you mean 'issue'" in rejected["message"]
        assert api.http.delete("/mutate").status_code == 405
        api.close()


def test_slow_consumer_is_cut_off_with_bounded_memory(demo_schema: Schema) -> None:
    limits = EngineLimits(outbox_bytes=64_000, resume_bytes=64_000)
    with serve_app(create_app(demo_schema, anonymous=True, engine_limits=limits)) as server:
        api = Api(server.url, "client-slow-01")
        api.mutate(*seed_mutations(2))
        api.add_query(demo_schema, {"table": "issue"})
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = server.url.removeprefix("http://").split(":")
        sock.connect((host, int(port)))
        sock.sendall(
            b"GET /sync?clientId=client-slow-01&schemaVersion=1 HTTP/1.1\r\n"
            + f"Host: {host}\r\n\r\n".encode()
        )
        engine = server.sync.engine
        big = "x" * 20_000
        deadline = time.monotonic() + 60
        i = 0
        cut = False
        while time.monotonic() < deadline and not cut:
            i += 1
            api.mutate(
                *[
                    {
                        "op": "insert",
                        "table": "issue",
                        "row": issue(1000 + i * 10 + k, description=big),
                    }
                    for k in range(5)
                ]
            )
            rec = engine.records.get("client-slow-01")
            assert rec is not None and rec.sent_bytes <= limits.resume_bytes
            if rec.outbox is not None:
                # Bounded: the limit plus at most one event (a poke of 5 rows of 20 kB).
                assert rec.outbox.bytes <= limits.outbox_bytes + 5 * 21_000
            cut = rec.outbox is None and i > 1
            time.sleep(0.05)
        assert cut, "the slow consumer was never cut off"
        # The client finally reads: the stream ends with the slow_consumer error.
        sock.settimeout(10)
        data = b""
        while b"slow_consumer" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        assert b"event: error" in data and b"slow_consumer" in data
        # It reconnects and converges to the database.
        reader = StreamReader(server.url, "client-slow-01")
        try:
            expected = {r[0] for r in db_rows(server, "SELECT id FROM issue")}
            reader.wait_for(
                lambda evs: {k[0] for k in reader.state.get("issue", {})} == expected, 20
            )
        finally:
            reader.close()
            api.close()
