"""Live local subscriptions maintained by the incremental engine equal re-running them in DuckDB.

A client (not connected: the pokes are applied as the stream would apply them) holds complete
queries over every table, so the subscriptions below are answered locally and watched by
``queryplanner.ivm`` (``cache.live_engine``). Random steps: server pokes (puts and deletes on
issues, comments, labels of issues; several changes in one version, ties on the sort key,
NULLs), optimistic writes (update, insert, delete), their rollback on rejection and their
acknowledgement by a later poke. After every step each subscription's last snapshot must equal
the query run on the local DuckDB store (``LocalState._run``: no memo, no engine), row for row
and in order, related children nested, aggregates within a float tolerance.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache import Client, MutationRejected, Snapshot
from queryplanner import Query, Schema, bind, col, exists, measure, table
from queryplanner.protocol import MutationResult, Poke

from ._live import Recorder

STATUSES = ["todo", "done", "in_progress"]
TIMES = ["2024-01-01T00:00:00", "2024-01-02T00:00:00", "2024-01-03T12:30:00"]
ISSUES, COMMENTS, USERS, LABELS = range(1, 11), range(1, 13), range(1, 4), range(1, 4)


def issue(i: int, status: str, prio: int, assignee: int | None, t: int, est: float | None,
          v: int) -> dict[str, Any]:
    return {
        "id": i, "project_id": 1 + i % 2, "title": f"issue {i}", "description": None,
        "status": status, "priority": prio, "assignee_id": assignee, "creator_id": 1,
        "visibility": "public", "estimate": est, "sort_order": float(i % 3),
        "created": TIMES[i % 3], "modified": TIMES[t], "_v": v,
    }


def comment(i: int, issue_id: int, t: int, v: int) -> dict[str, Any]:
    return {"id": i, "issue_id": issue_id, "creator_id": 1, "body": f"c{i}",
            "created": TIMES[t], "_v": v}


statuses = st.sampled_from(STATUSES)
issue_rows = st.builds(
    issue, st.sampled_from(ISSUES), statuses, st.integers(0, 3),
    st.none() | st.sampled_from(USERS), st.integers(0, 2),
    st.none() | st.sampled_from([0.5, 1.0, 2.25]), st.just(0),
)
comment_rows = st.builds(
    comment, st.sampled_from(COMMENTS), st.sampled_from(ISSUES), st.integers(0, 2), st.just(0)
)
poke_steps = st.tuples(
    st.just("poke"),
    # A poke holds each key once (the server sends one image per row and version).
    st.lists(issue_rows, max_size=3, unique_by=lambda r: r["id"]),
    st.lists(st.sampled_from(ISSUES), max_size=2, unique=True),
    st.lists(comment_rows, max_size=3, unique_by=lambda r: r["id"]),
    st.lists(st.sampled_from(COMMENTS), max_size=2, unique=True),
    st.lists(st.tuples(st.sampled_from(ISSUES), st.sampled_from(LABELS)), max_size=2, unique=True),
)
write_steps = st.one_of(
    st.tuples(st.just("update"), st.sampled_from(ISSUES),
              st.fixed_dictionaries({}, optional={
                  "status": statuses, "priority": st.integers(0, 3),
                  "modified": st.sampled_from(TIMES),
                  "assignee_id": st.none() | st.sampled_from(USERS)})),
    st.tuples(st.just("insert"), issue_rows),
    st.tuples(st.just("delete"), st.sampled_from(ISSUES)),
    st.tuples(st.just("comment"), comment_rows),
)
settle_steps = st.tuples(
    st.sampled_from(["reject", "ack"]),
    st.lists(issue_rows, max_size=2, unique_by=lambda r: r["id"]),
)
steps = st.lists(st.one_of(poke_steps, write_steps, settle_steps), min_size=1, max_size=8)


def subscriptions(schema: Schema) -> list[Query]:
    qs = [
        table("issue").where(col("status") == "todo").order_by("modified", desc=True).limit(3),
        table("issue").where(col("project_id").in_([1]), col("priority") >= 1)
        .order_by("sort_order").order_by("modified", desc=True).limit(2),
        table("issue").where(col("assignee_id").is_null()).order_by("created"),
        table("issue").where(col("status") != "done").order_by("modified").limit(3)
        .related("comments", table("").order_by("created", desc=True).limit(2))
        .related("assignee"),
        table("issue").order_by("priority", desc=True).limit(4).related("labels"),
        table("issue").where(exists("comments")).order_by("id").limit(3),
        table("comment").where(col("issue_id") <= 5).order_by("created").limit(4)
        .related("issue"),
        table("issue").aggregate(["status"], n=measure("count"), p=measure("sum", "priority"),
                                 e=measure("avg", "estimate"), hi=measure("max", "priority")),
    ]
    return [bind(q.build(), schema) for q in qs]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class Harness:
    """A client fed pokes and writes directly, as its stream and flush loop would."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.client = Client("http://127.0.0.1:9", schema, budget_bytes=2**30)
        self.version = 1
        self.futures: list[asyncio.Future[Any]] = []
        seed: dict[str, list[dict[str, Any]]] = {
            "user": [{"id": u, "name": f"u{u}", "email": None, "_v": 1} for u in USERS],
            "label": [{"id": i, "name": f"l{i}", "color": None, "_v": 1} for i in LABELS],
            "issue": [issue(i, STATUSES[i % 3], i % 4, None if i % 3 else 1, i % 3,
                            None, 1) for i in ISSUES if i % 4],
            "comment": [comment(i, 1 + i % 4, i % 3, 1) for i in COMMENTS if i % 2],
            "issue_label": [{"issue_id": i, "label_id": 1 + i % 3, "_v": 1}
                            for i in ISSUES if i % 2],
        }
        complete = {}
        # Every table complete, and the shapes the planner does not derive from whole tables
        # (related children, EXISTS) complete themselves: all are answered locally.
        wholes = [bind(table(n).build(), schema) for n in schema.table_names]
        for q in wholes + subscriptions(schema):
            self.client.local.add_desired(q, q.id, pinned=True, ttl=None)
            complete[q.id] = 1
        self.poke(Poke(1, seed, {}, complete))

    def poke(self, poke: Poke) -> None:
        outcome = self.client._apply_poke(poke, None)
        self.client._after_poke(poke, outcome)

    def step(self, s: tuple[Any, ...]) -> None:
        kind = s[0]
        c = self.client
        if kind == "poke":
            self.version += 1
            _, issues, del_issues, comments, del_comments, links = s
            v = self.version
            put = {
                "issue": [{**r, "_v": v} for r in issues],
                "comment": [{**r, "_v": v} for r in comments],
                "issue_label": [{"issue_id": i, "label_id": lb, "_v": v} for i, lb in links],
            }
            delete = {"issue": [[i] for i in del_issues], "comment": [[i] for i in del_comments]}
            self.poke(Poke(v, put, delete))
        elif kind == "update":
            self.futures.append(c.update("issue", [s[1]], s[2]))
        elif kind == "insert":
            row = {k: v for k, v in s[1].items() if k != "_v"}
            self.futures.append(c.insert("issue", row))
        elif kind == "delete":
            self.futures.append(c.delete("issue", [s[1]]))
        elif kind == "comment":
            self.futures.append(c.insert("comment", {k: v for k, v in s[1].items() if k != "_v"}))
        else:
            self.settle(kind, s[1])

    def settle(self, kind: str, rows: list[dict[str, Any]]) -> None:
        c = self.client
        with c.local.lock:
            batch = c.store.outbox()
        if not batch:
            return
        first = batch[0]
        if kind == "reject":
            c._settle([first], [MutationResult(first["id"], "rejected", "no")], {})
            return
        self.version += 1
        v = self.version
        # The server applied it (perhaps differently): its rows arrive with the outcome.
        res = MutationResult(first["id"], "applied", version=v)
        c._settle([first], [res], {"version": v})
        self.poke(Poke(v, {"issue": [{**r, "_v": v} for r in rows]}, {}, {}, (res,)))

    def check(self, recorders: list[tuple[Query, Recorder]]) -> None:
        local = self.client.local
        with local.lock:
            for query, rec in recorders:
                assert query.id in local.live, f"{query.id} is not maintained by the engine"
                snap: Snapshot = rec.last
                expected = local._run(query)
                assert _same(list(snap.rows), expected), (query.to_json(), snap.rows, expected)


@pytest.mark.timeout(120)
@settings(deadline=None, max_examples=15)
@given(steps=steps)
def test_engine_snapshots_equal_duckdb(demo_schema: Schema, steps: list[tuple[Any, ...]]) -> None:
    async def body() -> None:
        h = Harness(demo_schema)
        try:
            recorders = [(q, Recorder(h.client.subscribe(q))) for q in subscriptions(demo_schema)]
            for q, _ in recorders:
                assert h.client._lives[q.id].mode != "server", h.client.explain(q)
            h.check(recorders)
            for s in steps:
                h.step(s)
                h.check(recorders)
            for _, rec in recorders:
                assert not rec.errors
                rec.dispose()
        finally:
            for fut in h.futures:
                if fut.done() and not fut.cancelled():
                    assert fut.exception() is None or isinstance(fut.exception(), MutationRejected)
                fut.cancel()
            await h.client.close()

    asyncio.run(body())


def test_bulk_writes_rehydrate_watched_queries(demo_schema: Schema) -> None:
    """A table written in bulk (more rows than the journal records, here 1) is not pushed row
    by row: the watched queries reading it are re-hydrated, and still equal DuckDB."""

    async def body() -> None:
        h = Harness(demo_schema)
        h.client.store.journal.bulk_rows = 1
        try:
            recorders = [(q, Recorder(h.client.subscribe(q))) for q in subscriptions(demo_schema)]
            reader = h.client.local.live.reader
            before = reader.statements
            h.step(("poke", [issue(i, "todo", 3, None, 2, 1.0, 0) for i in (2, 4, 8)], [1],
                    [comment(2, 4, 2, 0)], [1, 3], [(4, 2)]))
            assert reader.statements - before >= len(recorders)  # each one re-hydrated
            h.check(recorders)
            h.step(("update", 4, {"status": "done"}))  # one row: recorded, pushed through
            h.check(recorders)
            assert h.client.store.journal.bulk == set()
            for _, rec in recorders:
                rec.dispose()
        finally:
            await h.client.close()

    asyncio.run(body())


def test_large_results_stay_on_the_rerun_path(demo_schema: Schema) -> None:
    """A result larger than ``LiveEngine.max_rows`` is not held by the engine (it would keep
    every row in Python); it is re-run in DuckDB as before and still live."""

    async def body() -> None:
        h = Harness(demo_schema)
        h.client.local.live.max_rows = 2
        try:
            q = bind(table("issue").order_by("modified").build(), demo_schema)
            small = bind(table("issue").order_by("modified").limit(2).build(), demo_schema)
            rec, rec_small = Recorder(h.client.subscribe(q)), Recorder(h.client.subscribe(small))
            assert q.id not in h.client.local.live and small.id in h.client.local.live
            h.step(("update", 3, {"modified": TIMES[0]}))
            h.step(("delete", 5))
            assert q.id not in h.client.local.live
            with h.client.local.lock:
                assert list(rec.last.rows) == h.client.local._run(q)
                assert list(rec_small.last.rows) == h.client.local._run(small)
            rec.dispose()
            rec_small.dispose()
        finally:
            await h.client.close()

    asyncio.run(body())
