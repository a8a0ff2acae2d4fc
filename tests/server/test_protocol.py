"""queryplanner.protocol: requests and events round-trip; malformed ones raise ProtocolError."""

from __future__ import annotations

from typing import Any

import pytest

from queryplanner.protocol import (
    Cursor,
    ErrorBody,
    Hello,
    MutateRequest,
    MutateResponse,
    Mutation,
    MutationResult,
    Poke,
    ProtocolError,
    QueriesRequest,
    QueryAdd,
    encode_event,
    parse_cursor,
    parse_event,
    parse_mutate_request,
    parse_queries_request,
    parse_query_request,
)


def test_requests_round_trip() -> None:
    q = QueriesRequest(
        "client-0001",
        1,
        (QueryAdd("0123456789abcdef", {"table": "issue"}, 60.0),),
        ("fedcba9876543210",),
    )
    assert parse_queries_request(q.to_json()) == q
    m = MutateRequest(
        "client-0001",
        2,
        (
            Mutation(1, "insert", "user", row={"id": 1, "name": "a"}),
            Mutation(2, "update", "user", key=[1], set={"name": "b"}, if_version=4),
            Mutation(3, "delete", "user", key={"id": 1}),
        ),
    )
    assert parse_mutate_request(m.to_json()) == m
    resp = MutateResponse(
        5, 3, (MutationResult(1, "applied", None, 5), MutationResult(2, "rejected", "no"))
    )
    assert MutateResponse.from_json(resp.to_json()) == resp
    assert parse_query_request({"schemaVersion": 1, "query": {"table": "t"}, "live": True}).live


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], ""),
        ({"clientId": "short", "schemaVersion": 1}, "clientId"),
        ({"clientId": "client-0001", "schemaVersion": 0}, "schemaVersion"),
        (
            {"clientId": "client-0001", "schemaVersion": 1, "add": [{"id": "xyz", "query": {}}]},
            "add[0].id",
        ),
        (
            {"clientId": "client-0001", "schemaVersion": 1, "add": [{"id": "0" * 16}]},
            "add[0].query",
        ),
        (
            {
                "clientId": "client-0001",
                "schemaVersion": 1,
                "add": [{"id": "0" * 16, "query": {}, "ttl": -1}],
            },
            "add[0].ttl",
        ),
        ({"clientId": "client-0001", "schemaVersion": 1, "remove": "all"}, "remove"),
        ({"clientId": "client-0001", "schemaVersion": 1, "bogus": 1}, "bogus"),
    ],
)
def test_malformed_queries_requests_name_the_field(doc: Any, field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_queries_request(doc)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("muts", "field"),
    [
        ([], "mutations"),
        ([{"id": 0, "op": "insert", "table": "t", "row": {}}], "mutations[0].id"),
        ([{"id": 1, "op": "merge", "table": "t"}], "mutations[0].op"),
        ([{"id": 1, "op": "insert", "table": 3, "row": {}}], "mutations[0].table"),
        ([{"id": 1, "op": "update", "table": "t", "key": [1]}], "mutations[0].set"),
        ([{"id": 1, "op": "delete", "table": "t", "key": []}], "mutations[0].key"),
        (
            [{"id": 1, "op": "insert", "table": "t", "row": {}, "ifVersion": 3}],
            "mutations[0].ifVersion",
        ),
        (
            [
                {"id": 1, "op": "delete", "table": "t", "key": [1]},
                {"id": 3, "op": "delete", "table": "t", "key": [2]},
            ],
            "mutations",
        ),
    ],
)
def test_malformed_mutations_name_the_field(muts: list[Any], field: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_mutate_request({"clientId": "client-0001", "schemaVersion": 1, "mutations": muts})
    assert info.value.field == field


def test_events_round_trip_and_cursor() -> None:
    hello = Hello("client-0001", "7", 12, 1, 1, "abcd", "resumed", 4)
    poke = Poke(
        12,
        {"user": [{"id": 1, "_v": 12}]},
        {"user": [[2]]},
        {"0123456789abcdef": 12},
        (MutationResult(4, "applied", None, 12),),
    )
    for event in (hello, poke):
        name, data = encode_event(event)
        assert parse_event(name, data) == event
    body = ErrorBody("schema_version", "old", {"clientVersion": 1})
    assert ErrorBody.from_json(body.to_json()) == body and body.status == 409
    c = Cursor(12, 3, "ab12cd34")
    assert parse_cursor(str(c)) == c
    assert parse_cursor("12") is None and parse_cursor("") is None and parse_cursor("a.b.c") is None
    with pytest.raises(ProtocolError):
        parse_event("nonsense", "{}")


def test_arrow_blocks_round_trip_and_bad_ones_name_the_field(demo_schema: Any) -> None:
    import base64

    import pyarrow as pa

    from queryplanner.protocol import Poke, encode_event, parse_event
    from queryplanner.wire_arrow import arrow_schema, from_ipc, to_ipc

    t = demo_schema.table("label")
    block = pa.table({"id": [1, 2], "name": ["bug", None], "color": ["red", "blue"],
                      "_v": [3, 4]}, schema=arrow_schema(t))
    data = to_ipc(t, block.to_batches())
    name, raw = encode_event(Poke(7, arrow={"label": (data, data)}))
    back = parse_event(name, raw)
    assert isinstance(back, Poke) and back.arrow == {"label": (data, data)}
    assert from_ipc(t, back.arrow["label"][0]).equals(block)

    def bad(arrow: Any) -> str:
        with pytest.raises(ProtocolError) as exc:
            parse_event("poke", {"version": 1, "arrow": arrow})
        return exc.value.field

    assert bad(["x"]) == "poke.arrow"
    assert bad({"label": "AAAA"}) == "poke.arrow.label"  # not a list
    assert bad({"label": ["not base64!"]}) == "poke.arrow.label"
    with pytest.raises(ProtocolError, match="Not an Arrow IPC stream") as exc:
        from_ipc(t, base64.b64decode("AAAA"))
    assert exc.value.field == "poke.arrow.label"
    other = to_ipc(demo_schema.table("team"), [])
    with pytest.raises(ProtocolError, match="table 'label' has") as exc:
        from_ipc(t, other)
    wrong = pa.table({"id": ["1"], "name": ["x"], "color": ["y"], "_v": [1]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, wrong.schema) as w:
        w.write_table(wrong)
    with pytest.raises(ProtocolError, match="Column 'id' is string"):
        from_ipc(t, bytes(sink.getvalue()))
