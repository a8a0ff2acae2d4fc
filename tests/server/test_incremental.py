"""The incremental maintainer against re-running in DuckDB: after every committed batch, each
subscription's rows (junction rows, related children and read rules included) equal what the
re-run path computes from the same snapshot, and the deltas applied to a copy reach the same."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queryplanner import Schema, parse_query
from queryplanner.protocol import parse_mutation
from queryplanner.rules import parse_rules
from server.db import Database
from server.incremental import IncrementalMaintainer
from server.store import Store
from server.subscriptions import RerunMaintainer, SubDelta, Subscription
from server.testing import issue

VISIBLE = {
    "or": [
        {"column": "visibility", "op": "=", "value": "public"},
        {"column": "creator_id", "op": "=", "value": {"auth": "user_id"}},
    ]
}
RULES = {
    "issue": VISIBLE,
    "comment": {"exists": "issue", "where": VISIBLE},
    "issue_label": {"exists": "issue", "where": VISIBLE},  # such subscriptions are re-run
}
# A junction rule on the junction row alone: the engine maintains these subscriptions.
PLAIN_JUNCTION = {**RULES, "issue_label": {"column": "label_id", "op": "=", "value": 1}}
QUERIES: list[dict[str, Any]] = [
    {"table": "issue", "where": {"column": "status", "op": "=", "value": "open"},
     "orderBy": [["priority", "desc"]], "limit": 3},
    {"table": "issue", "orderBy": [["sort_order", "asc"]], "limit": 4,
     "related": {"comments": {"related": {"creator": {}}}, "labels": {}, "assignee": {}}},
    {"table": "label", "related": {"issues": {"orderBy": [["id", "asc"]], "limit": 2}}},
    {"table": "issue", "where": {"exists": "labels"}, "related": {"labels": {}}},
    {"table": "comment", "related": {"issue": {"related": {"creator": {}}}}},
    {"table": "user", "related": {"assigned": {"where": {"column": "status", "op": "!=",
                                                         "value": "done"}}}},
    {"table": "project", "where": {"exists": "issues", "where": {
        "column": "visibility", "op": "=", "value": "private"}}},
]
USERS = (1, 2)
ISSUES = range(1, 9)

_update = st.fixed_dictionaries({
    "op": st.just("update"), "table": st.just("issue"),
    "key": st.sampled_from(ISSUES).map(lambda i: [i]),
    "set": st.fixed_dictionaries({}, optional={
        "status": st.sampled_from(["open", "done", "in_progress"]),
        "priority": st.integers(0, 3),
        "visibility": st.sampled_from(["public", "private"]),
        "creator_id": st.sampled_from(USERS),
        "assignee_id": st.sampled_from([None, 1, 2]),
        "sort_order": st.floats(0, 10, allow_nan=False),
        "title": st.sampled_from(["a", "b"]),
    }).filter(bool),
})
_comment = st.builds(
    lambda cid, iid, who: {"op": "upsert", "table": "comment", "row": {
        "id": cid, "issue_id": iid, "creator_id": who, "body": "x",
        "created": "2026-01-01T00:00:00"}},
    st.integers(1, 6), st.sampled_from(ISSUES), st.sampled_from(USERS))
_label = st.builds(
    lambda op, iid, lid: {"op": op, "table": "issue_label",
                          **({"row": {"issue_id": iid, "label_id": lid}} if op == "upsert"
                             else {"key": [iid, lid]})},
    st.sampled_from(["upsert", "delete"]), st.sampled_from(ISSUES), st.sampled_from([1, 2]))
_misc = st.sampled_from([
    {"op": "delete", "table": "comment", "key": [1]},
    {"op": "delete", "table": "issue", "key": [3]},
    {"op": "upsert", "table": "issue", "row": issue(3, creator_id=2, visibility="private")},
    {"op": "update", "table": "user", "key": [2], "set": {"name": "robert"}},
    {"op": "update", "table": "label", "key": [1], "set": {"color": "blue"}},
])
BATCHES = st.lists(st.lists(st.one_of(_update, _comment, _label, _misc), min_size=1, max_size=4),
                   min_size=1, max_size=6)


def _seed() -> list[dict[str, Any]]:
    rows: list[tuple[str, dict[str, Any]]] = [
        ("user", {"id": 1, "name": "ann", "email": None}),
        ("user", {"id": 2, "name": "bob", "email": None}),
        ("team", {"id": 1, "key": "ENG", "name": "Engineering"}),
        ("project", {"id": 1, "team_id": 1, "name": "sync"}),
        ("project", {"id": 2, "team_id": 1, "name": "ui"}),
        ("label", {"id": 1, "name": "bug", "color": "red"}),
        ("label", {"id": 2, "name": "ux", "color": "green"}),
    ]
    for i in ISSUES:
        rows.append(("issue", issue(i, project_id=1 + i % 2, creator_id=1 + i % 2,
                                    visibility="private" if i % 3 == 0 else "public",
                                    assignee_id=1 + i % 2, status="open")))
    rows += [("issue_label", {"issue_id": i, "label_id": 1 + i % 2}) for i in (1, 2, 3, 6)]
    rows += [("comment", {"id": c, "issue_id": c, "creator_id": 2, "body": "b",
                          "created": "2026-01-01T00:00:00"}) for c in (1, 2, 3)]
    return [{"op": "insert", "table": t, "row": r} for t, r in rows]


class _Pair:
    """One server store, maintained both ways for every (query, user)."""

    def __init__(self, schema: Schema, rules: dict[str, Any]) -> None:
        self.db = Database(":memory:")
        self.store = Store(schema, self.db)
        self.ivm = IncrementalMaintainer(schema, rehydrate_after=6)
        self.rerun = RerunMaintainer()
        ruleset = parse_rules(rules, schema)
        self.subs: list[tuple[Subscription, Subscription, dict[Any, Any]]] = []
        self.next_id = 1
        self.mutate(_seed())
        self.version = self.store.version
        cur = self._begin()
        for k, doc in enumerate(QUERIES):
            for user in USERS:
                rules = ruleset.bind({"user_id": user})
                query = parse_query(doc, schema)
                a = Subscription((f"q{k}", str(user)), query, schema, rules)
                b = Subscription((f"q{k}", str(user)), query, schema, rules)
                self.ivm.add(cur, a)
                self.rerun.add(cur, b)
                self.subs.append((a, b, dict(a.result)))
        cur.execute("COMMIT")

    def _begin(self) -> Any:
        cur = self.db.cursor()
        cur.execute("BEGIN")
        row = cur.execute("SELECT v FROM _qs_meta WHERE k = 'version'").fetchone()
        self.ivm.begin(cur, int(row[0]))
        return cur

    def mutate(self, docs: list[dict[str, Any]]) -> None:
        muts = []
        for d in docs:
            muts.append(parse_mutation({"id": self.next_id, **d}, "m"))
            self.next_id += 1
        self.db.write_sync(self.store._mutate, "writer", muts, None, None)

    def step(self) -> None:
        cur = self._begin()
        batches = self.store.log.since(self.version)
        self.version = self.store.version
        got: dict[int, list[SubDelta]] = {}
        for s, d in self.ivm.changes(cur, batches, [a for a, _, _ in self.subs]):
            got.setdefault(id(s), []).append(d)  # a subscription may get several in a step
        list(self.rerun.changes(cur, batches, [b for _, b, _ in self.subs]))
        for a, b, copy in self.subs:
            assert a.result == b.result, (a.key, a.query)
            for d in got.get(id(a), []):
                _apply(copy, d)
            assert copy == a.result, a.key
        cur.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def _apply(copy: dict[Any, Any], delta: SubDelta) -> None:
    for k in delta.removed:
        del copy[k]
    copy.update(delta.added)
    for k, row in delta.changed.items():
        assert k in copy
        copy[k] = row


@settings(deadline=None, max_examples=12, suppress_health_check=[HealthCheck.too_slow])
@given(batches=BATCHES, together=st.booleans(), rules=st.sampled_from([RULES, PLAIN_JUNCTION]))
def test_incremental_equals_rerun(demo_schema: Schema, batches: list[list[Any]],
                                  together: bool, rules: dict[str, Any]) -> None:
    pair = _Pair(demo_schema, rules)
    try:
        for batch in batches:
            pair.mutate(batch)
            if not together:  # one step per batch, or several batches in one step
                pair.step()
        pair.step()
    finally:
        pair.close()


def test_bulk_load_and_lost_log_rehydrate(demo_schema: Schema) -> None:
    """A bulk load records no row images, and a log that does not reach back has no batches:
    both re-hydrate the subscriptions they may touch from the snapshot."""
    import pyarrow as pa

    pair = _Pair(demo_schema, PLAIN_JUNCTION)
    try:
        before = pair.ivm.resets
        pair.store.bulk_load("comment", pa.table({
            "id": [50, 51], "issue_id": [1, 6], "creator_id": [1, 1], "body": ["l", "m"],
            "created": pa.array([0, 0], pa.timestamp("us"))}))
        pair.step()
        assert pair.ivm.resets > before
        cur = pair._begin()
        list(pair.ivm.changes(cur, None, [a for a, _, _ in pair.subs]))
        for a, b, _ in pair.subs:
            assert a.result == b.run(cur)
        cur.execute("COMMIT")
    finally:
        pair.close()
