"""Rows on the wire: encoding, strict decoding and the byte estimate."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from queryplanner import Schema
from queryplanner.wire import (
    ROW_OVERHEAD_BYTES,
    VALUE_OVERHEAD_BYTES,
    WireError,
    decode_key,
    decode_row,
    encode_row,
    row_bytes,
)


def test_round_trip_of_a_full_row(demo_schema: Schema) -> None:
    issue = demo_schema.table("issue")
    row = {c: None for c in issue.column_names} | {
        "id": 7, "project_id": 1, "title": "Crash on ünïcode", "status": "todo",
        "priority": 2, "creator_id": 3, "visibility": "public", "sort_order": 1.5,
        "created": dt.datetime(2026, 1, 2, 3, 4, 5, 6), "modified": dt.datetime(2026, 1, 2),
    }
    wire = encode_row(issue, row)
    assert wire["created"] == "2026-01-02T03:04:05.000006"
    assert decode_row(issue, wire) == row


def test_timestamps_with_offsets_become_naive_utc(demo_schema: Schema) -> None:
    comment = demo_schema.table("comment")
    row = decode_row(comment, {"id": 1, "issue_id": 1, "creator_id": 1, "body": "",
                               "created": "2026-01-02T03:00:00+02:00"})
    assert row["created"] == dt.datetime(2026, 1, 2, 1, 0, 0)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"id": "1"}, "issue.id needs a 64-bit integer"),
        ({"id": True}, "issue.id needs a 64-bit integer"),
        ({"id": 2**63}, "issue.id needs a 64-bit integer"),
        ({"estimate": float("nan")}, "issue.estimate needs a finite number"),
        ({"title": None}, "issue.title cannot be null"),
        ({"stauts": "x"}, "Did you mean 'status'?"),
        ({"created": "yesterday"}, "issue.created needs an ISO 8601 timestamp"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_values_name_the_column(demo_schema: Schema, doc: object, message: str) -> None:
    with pytest.raises(WireError, match=message.replace("?", r"\?").replace(".", r"\.")):
        decode_row(demo_schema.table("issue"), doc, partial=True)


def test_missing_required_column_is_refused(demo_schema: Schema) -> None:
    with pytest.raises(WireError, match=r"Missing value for column comment\.body"):
        decode_row(demo_schema.table("comment"), {"id": 1, "issue_id": 1, "creator_id": 1,
                                                  "created": "2026-01-01T00:00:00"})


def test_older_clients_may_not_send_newer_columns(demo_schema: Schema) -> None:
    user = demo_schema.table("user")
    with pytest.raises(WireError, match="Unknown column 'email'"):
        decode_row(user, {"id": 1, "name": "a", "email": "x"}, known=frozenset({"id", "name"}))


def test_keys_as_lists_or_objects(demo_schema: Schema) -> None:
    link = demo_schema.table("issue_label")
    assert decode_key(link, [1, 2]) == (1, 2)
    assert decode_key(link, {"label_id": 2, "issue_id": 1}) == (1, 2)
    with pytest.raises(WireError, match="has 2 columns"):
        decode_key(link, [1])
    with pytest.raises(WireError, match="missing label_id"):
        decode_key(link, {"issue_id": 1})
    with pytest.raises(WireError, match="not part of the key"):
        decode_key(link, {"issue_id": 1, "label_id": 2, "x": 3})


def test_row_bytes_is_the_stated_estimate() -> None:
    row = {"a": 1, "b": "héllo", "c": None, "d": {"k": [1, 2]}}
    expected = ROW_OVERHEAD_BYTES + 4 * VALUE_OVERHEAD_BYTES + 8 + len("héllo".encode()) + 4
    expected += len(b'{"k":[1,2]}')
    assert row_bytes(row) == expected


@settings(deadline=None, max_examples=200)
@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
))
def test_decoding_arbitrary_json_raises_only_wire_errors(doc: object) -> None:
    schema = Schema.from_dict({"tables": {"t": {"columns": {
        "id": "integer", "f": "float", "s": "text", "b": "boolean", "ts": "timestamp",
        "j": "json"}}}})
    table = schema.table("t")
    for partial in (True, False):
        with contextlib.suppress(WireError):
            decode_row(table, doc, partial=partial)
        with contextlib.suppress(WireError):
            decode_row(table, {"id": 1, "s": doc, "ts": doc, "f": doc}, partial=partial)
    with contextlib.suppress(WireError):
        decode_key(table, doc)
