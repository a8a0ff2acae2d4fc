"""A user never receives another user's private rows, whatever query they send: sync,
EXISTS, related children, resume and offload all go through the read rules."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from queryplanner import Schema
from server import create_app, make_token
from server.testing import Api, StreamReader, issue, seed_mutations, serve_app

SECRET = "permissions-test-secret-0123456789abcdef"
VISIBLE = {
    "or": [
        {"column": "visibility", "op": "=", "value": "public"},
        {"column": "creator_id", "op": "=", "value": {"auth": "user_id"}},
    ]
}
RULES = {
    "read": {"issue": VISIBLE, "comment": {"exists": "issue", "where": VISIBLE}},
    "write": {"issue": {"column": "creator_id", "op": "=", "value": {"auth": "user_id"}}},
}
QUERIES: list[dict[str, Any]] = [
    {"table": "issue"},
    {"table": "issue", "where": {"column": "visibility", "op": "=", "value": "private"}},
    {"table": "issue", "where": {"exists": "comments"}, "related": {"comments": {}}},
    {"table": "comment", "related": {"issue": {}}},
    {
        "table": "comment",
        "where": {
            "exists": "issue",
            "where": {"column": "visibility", "op": "=", "value": "private"},
        },
    },
    {"table": "user", "related": {"assigned": {}}},
    {"table": "label", "related": {"issues": {"related": {"comments": {}}}}},
    {
        "table": "project",
        "where": {"exists": "issues", "where": {"column": "creator_id", "op": "=", "value": 2}},
        "related": {"issues": {}},
    },
]


def _private_ids(user: int) -> tuple[set[int], set[int]]:
    """(issue ids, comment ids) user must not see: private issues of the other user."""
    other = 2 if user == 1 else 1
    issues = {100 + other * 10 + k for k in range(3)}
    comments = {1000 + i for i in issues}
    return issues, comments


def _leaks(rows_by_table: dict[str, list[dict[str, Any]]], user: int) -> list[Any]:
    bad_issues, bad_comments = _private_ids(user)
    out = [r for r in rows_by_table.get("issue", []) if r["id"] in bad_issues]
    out += [r for r in rows_by_table.get("comment", []) if r["id"] in bad_comments]
    return out


def _walk(row: Any, table: str, out: dict[str, list[Any]], schema: Schema) -> None:
    t = schema.table(table)
    out.setdefault(table, []).append(row)
    for rel in t.relationships:
        v = row.get(rel.name)
        for child in v if isinstance(v, list) else [v] if v else []:
            _walk(child, rel.target, out, schema)


@pytest.mark.parametrize("arrow", [False, True], ids=["json", "arrow"])
def test_no_private_rows_through_sync_resume_or_offload(demo_schema: Schema, arrow: bool) -> None:
    app = create_app(demo_schema, rules=RULES, secret=SECRET)
    tokens = {u: make_token(SECRET, u) for u in (1, 2)}
    with serve_app(app) as server:
        # user 2 creates its own private issues; user 1 its own (write rule: creator = user).
        _seed_as_each_user(server.url, tokens)
        for user in (1, 2):
            api = Api(server.url, f"client-user-{user}", token=tokens[user])
            reader = StreamReader(
                server.url,
                f"client-user-{user}",
                token=tokens[user],
                keys={"issue_label": ("issue_id", "label_id")},
                arrow_schema=demo_schema if arrow else None,  # one-table queries as Arrow
            )
            try:
                qids = [api.add_query(demo_schema, q) for q in QUERIES]
                reader.wait_for(
                    lambda evs, qids=qids: (
                        {q for e in evs if e.name == "poke" for q in e.data["complete"]}
                        >= set(qids)
                    )
                )
                rows = {t: list(v.values()) for t, v in reader.state.items()}
                assert not _leaks(rows, user)
                assert rows["issue"], "the user sees its own and public issues"
                blocks = [e for e in reader.events if e.name == "poke" and e.data.get("arrow")]
                assert bool(blocks) == arrow
                own_private = {r["id"] for r in rows["issue"] if r["visibility"] == "private"}
                assert own_private >= {100 + user * 10 + k for k in range(3)}
                # Resume: the other user writes private rows while this stream is down.
                reader.close()
                other = 2 if user == 1 else 1
                w = Api(server.url, f"writer-{other}-{user}", token=tokens[other])
                w.mutate(
                    {
                        "op": "insert",
                        "table": "issue",
                        "row": issue(300 + user, creator_id=other, visibility="private"),
                    }
                )
                w.mutate(
                    {
                        "op": "update",
                        "table": "issue",
                        "key": [200 + other],
                        "set": {"visibility": "private"},
                    }
                )
                w.close()
                again = StreamReader(
                    server.url,
                    f"client-user-{user}",
                    token=tokens[user],
                    last_event_id=reader.last_id,
                    state=reader.state,
                    arrow_schema=demo_schema if arrow else None,
                )
                again.wait_for(lambda evs: sum(e.name == "poke" for e in evs) >= 1)
                rows = {t: list(v.values()) for t, v in again.state.items()}
                ids = {r["id"] for r in rows["issue"]}
                assert 300 + user not in ids and 200 + other not in ids
                assert not _leaks(rows, user)
                private_now = sum(r["visibility"] == "private" for r in rows["issue"])
                again.close()
                # Offload: one-shot, nested, aggregate.
                for q in QUERIES:
                    r = api.http.post("/query", json={"schemaVersion": 1, "query": q})
                    assert r.status_code == 200, r.text
                    out: dict[str, list[Any]] = {}
                    for line in r.text.splitlines():
                        if line.startswith("data:") and '"rows"' in line:
                            for row in orjson.loads(line[5:])["rows"]:
                                _walk(row, q["table"], out, demo_schema)
                    assert not _leaks(out, user)
                agg = {
                    "table": "issue",
                    "aggregate": {"groupBy": ["visibility"], "measures": {"n": {"fn": "count"}}},
                }
                r = api.http.post("/query", json={"schemaVersion": 1, "query": agg})
                assert f'"visibility":"private","n":{private_now}' in r.text
            finally:
                api.close()


def _seed_as_each_user(url: str, tokens: dict[int, str]) -> None:
    admin = Api(url, "seed-base", token=tokens[1])
    _seed_shared(admin)
    admin.close()
    for user in (1, 2):
        api = Api(url, f"seed-user-{user}", token=tokens[user])
        muts = []
        for k in range(3):
            i = 100 + user * 10 + k
            muts.append(
                {
                    "op": "insert",
                    "table": "issue",
                    "row": issue(i, creator_id=user, visibility="private", assignee_id=user),
                }
            )
            muts.append(
                {
                    "op": "insert",
                    "table": "comment",
                    "row": {
                        "id": 1000 + i,
                        "issue_id": i,
                        "creator_id": user,
                        "body": "secret",
                        "created": "2026-01-01T00:00:00",
                    },
                }
            )
            muts.append(
                {"op": "insert", "table": "issue_label", "row": {"issue_id": i, "label_id": 1}}
            )
        muts.append({"op": "insert", "table": "issue", "row": issue(200 + user, creator_id=user)})
        out = api.mutate(*muts)
        assert all(x["status"] == "applied" for x in out["results"]), out
        api.close()


def _seed_shared(api: Api) -> None:
    base = [m for m in seed_mutations() if m["table"] not in ("issue", "comment", "issue_label")]
    out = api.mutate(*base)
    assert all(x["status"] == "applied" for x in out["results"])


def test_write_rules_check_old_and_new_rows(demo_schema: Schema) -> None:
    app = create_app(demo_schema, rules=RULES, secret=SECRET)
    with serve_app(app) as server:
        _seed_as_each_user(server.url, {u: make_token(SECRET, u) for u in (1, 2)})
        api = Api(server.url, "client-writes", token=make_token(SECRET, 1))
        out = api.mutate(
            {"op": "update", "table": "issue", "key": [120], "set": {"title": "mine now"}},
            {"op": "update", "table": "issue", "key": [110], "set": {"creator_id": 2}},
            {"op": "insert", "table": "issue", "row": issue(400, creator_id=2)},
            {"op": "update", "table": "issue", "key": [111], "set": {"title": "fine"}},
        )
        status = [r["status"] for r in out["results"]]
        assert status == ["rejected", "rejected", "rejected", "applied"]
        assert "Permission denied" in out["results"][0]["reason"]
        # Without a token: 401 with a JSON body naming the way out.
        anon = Api(server.url, "anon-client-1")
        r = anon.http.post("/queries", json={"clientId": "anon-client-1", "schemaVersion": 1})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = anon.http.get(
            "/sync", params={"clientId": "anon-client-1", "schemaVersion": 1, "token": "x.y.z"}
        )
        assert r.status_code == 401 and "not valid" in r.json()["error"]["message"]
        api.close()
        anon.close()


JUNCTION_RULES = {
    "read": {**RULES["read"], "issue_label": {"column": "label_id", "op": "=", "value": 1}},
    "write": RULES["write"],
}


def _private_puts(events: list[Any], private: set[int]) -> list[Any]:
    """Every issue or comment row of ``private`` issues that any poke ever put."""
    out = []
    for e in events:
        if e.name != "poke":
            continue
        out += [r for r in e.data["put"].get("issue", []) if r["id"] in private]
        out += [r for r in e.data["put"].get("comment", []) if r["issue_id"] in private]
    return out


def test_live_changes_never_put_private_rows(demo_schema: Schema) -> None:
    """The incremental engine with read rules: rows that turn private leave the other user's
    client, private rows written later never reach it (through related children, EXISTS and
    many-to-many labels), and rows that turn public arrive."""
    for rules in (RULES, JUNCTION_RULES):
        app = create_app(demo_schema, rules=rules, secret=SECRET)
        tokens = {u: make_token(SECRET, u) for u in (1, 2)}
        with serve_app(app) as server:
            _seed_as_each_user(server.url, tokens)
            api = Api(server.url, "live-user-1", token=tokens[1])
            reader = StreamReader(server.url, "live-user-1", token=tokens[1],
                                  keys={"issue_label": ("issue_id", "label_id")})
            writer = Api(server.url, "live-writer-2", token=tokens[2])
            try:
                qids = [api.add_query(demo_schema, q) for q in QUERIES]
                reader.wait_for(lambda evs, qids=qids: (
                    {q for e in evs if e.name == "poke" for q in e.data["complete"]} >= set(qids)))
                assert 202 in {k[0] for k in reader.state["issue"]}
                # User 2's public issue 202 turns private; a new private issue gets a comment
                # and a label; a private issue of user 2 gets a new label and comment.
                out = writer.mutate(
                    {"op": "update", "table": "issue", "key": [202],
                     "set": {"visibility": "private"}},
                    {"op": "insert", "table": "issue",
                     "row": issue(250, creator_id=2, visibility="private", assignee_id=1)},
                    {"op": "insert", "table": "comment", "row": {
                        "id": 2500, "issue_id": 250, "creator_id": 2, "body": "hidden",
                        "created": "2026-01-01T00:00:00"}},
                    {"op": "insert", "table": "issue_label",
                     "row": {"issue_id": 250, "label_id": 1}},
                    {"op": "insert", "table": "comment", "row": {
                        "id": 2501, "issue_id": 120, "creator_id": 2, "body": "hidden",
                        "created": "2026-01-01T00:00:00"}},
                )
                assert all(r["status"] == "applied" for r in out["results"]), out
                reader.wait_version(out["version"])
                ids = {k[0] for k in reader.state["issue"]}
                assert 202 not in ids and 250 not in ids
                private = {120, 121, 122, 202, 250}
                assert not _private_puts(reader.events, private - {202})
                assert not _leaks({t: list(v.values()) for t, v in reader.state.items()}, 1)
                # Turning 250 public brings it (and its comment) to user 1.
                out = writer.mutate({"op": "update", "table": "issue", "key": [250],
                                     "set": {"visibility": "public"}})
                reader.wait_version(out["version"])
                assert 250 in {k[0] for k in reader.state["issue"]}
                assert 2500 in {k[0] for k in reader.state.get("comment", {})}
                assert not _private_puts(reader.events, {120, 121, 122})
            finally:
                reader.close()
                api.close()
                writer.close()


EXISTS_RULES = {
    "write": {
        "issue": {"column": "creator_id", "op": "=", "value": {"auth": "user_id"}},
        # A user comments as themselves, on issues they can see.
        "comment": {"and": [
            {"column": "creator_id", "op": "=", "value": {"auth": "user_id"}},
            {"exists": "issue", "where": VISIBLE},
        ]},
    },
}


def test_write_rules_with_exists_see_the_batch_so_far(demo_schema: Schema) -> None:
    """EXISTS in a write rule reads the related rows as the batch has left them: committed
    rows, with the batch's own earlier inserts and deletes on top."""
    from server.testing import db_rows

    app = create_app(demo_schema, rules=EXISTS_RULES, secret=SECRET)
    with serve_app(app) as server:
        ann = Api(server.url, "exists-writer-1", token=make_token(SECRET, 1))
        bob = Api(server.url, "exists-writer-2", token=make_token(SECRET, 2))
        base = [m for m in seed_mutations() if m["table"] in ("user", "team", "project")]
        assert all(r["status"] == "applied" for r in ann.mutate(*base)["results"])
        assert all(r["status"] == "applied" for r in ann.mutate(
            {"op": "insert", "table": "issue", "row": issue(10)},
            {"op": "insert", "table": "issue", "row": issue(11, visibility="private")},
        )["results"])
        assert bob.mutate({"op": "insert", "table": "issue",
                           "row": issue(20, creator_id=2, visibility="private")}
                          )["results"][0]["status"] == "applied"

        def comment(cid: int, issue_id: int, creator: int = 1) -> dict[str, Any]:
            return {"op": "insert", "table": "comment", "row": {
                "id": cid, "issue_id": issue_id, "creator_id": creator, "body": f"c{cid}",
                "created": "2026-01-01T00:00:00"}}

        out = ann.mutate(
            comment(1, 10),  # a public issue
            comment(2, 20),  # bob's private issue: not visible to ann
            comment(3, 11),  # her own private issue
            {"op": "insert", "table": "issue", "row": issue(12, visibility="private")},
            comment(4, 12),  # an issue only this batch has inserted
            {"op": "delete", "table": "issue", "key": [11]},
            comment(5, 11),  # an issue this batch has deleted
            comment(6, 10, creator=2),  # as someone else
        )
        status = [r["status"] for r in out["results"]]
        assert status == ["applied", "rejected", "applied", "applied", "applied", "applied",
                          "rejected", "rejected"], out
        assert "Permission denied" in out["results"][1]["reason"]
        assert db_rows(server, "SELECT id FROM comment ORDER BY id") == [(1,), (3,), (4,)]
        ann.close()
        bob.close()
