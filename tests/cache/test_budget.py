"""The byte budget, on the real local store: never over budget, pinned intact, LRU, no orphans.

The pokes come from a source DuckDB table the way the server builds them: after each step the
union of the desired queries' results is computed on the source and the difference with what the
client holds is sent as puts and deletes (rows shared by queries are sent once).
"""

from __future__ import annotations

import duckdb
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from cache.budget import Budget
from cache.local import LocalState
from cache.store import LocalStore
from queryplanner import Query, Schema, bind, col, table
from queryplanner.protocol import Poke
from queryplanner.sql import compile_row_sets, create_table_sql
from queryplanner.wire import encode_row, row_bytes
from tests.conftest import DEMO_SCHEMA_PATH

SCHEMA = Schema.load(DEMO_SCHEMA_PATH)
ISSUE = SCHEMA.table("issue")
N_ROWS = 60


def _issue(i: int, project: int, status: str, text: int) -> dict[str, object]:
    return {
        "id": i,
        "project_id": project,
        "title": f"issue {i}",
        "description": "x" * text,
        "status": status,
        "priority": i % 4,
        "assignee_id": None,
        "creator_id": 1,
        "visibility": "public",
        "estimate": None,
        "sort_order": float(i),
        "created": "2024-01-01T00:00:00",
        "modified": f"2024-01-02T00:{i // 60:02d}:{i % 60:02d}",
    }


def _queries() -> list[Query]:
    out = []
    for p in range(3):
        out.append(table("issue").where(col("project_id") == p).build())
        out.append(
            table("issue").where(col("project_id") == p).order_by("modified").limit(5).build()
        )
    out.append(table("issue").where(col("status") == "todo").build())
    # A timestamp condition: the incremental path compares decoded wire timestamps.
    out.append(table("issue").where(col("modified") >= "2024-01-02T00:00:30").build())
    out.append(
        table("issue")
        .where(col("priority") >= 2)
        .order_by("sort_order", desc=True)
        .limit(8)
        .build()
    )
    return [bind(q, SCHEMA) for q in out]


QUERIES = _queries()


def test_make_room_is_lru_and_counts_shared_rows_once() -> None:
    b = Budget(300)
    a, c = ("issue", (1,)), ("issue", (2,))
    b.put_rows({a: 100, c: 100})
    b.add_query("q1", pinned=False)
    b.add_query("q2", pinned=False)
    b.set_members("q1", {a, c})
    b.set_members("q2", {a})
    b.touch("q1")  # q2 is now the least recently used
    assert b.lru_order() == ["q2", "q1"]
    # Evicting q2 frees nothing (a is shared), so q1 must go too.
    assert b.make_room(150) == ["q2", "q1"]
    assert b.remove_query("q2") == []
    assert sorted(b.remove_query("q1")) == [a, c]


class BudgetMachine(RuleBasedStateMachine):
    @initialize(
        sizes=st.lists(st.integers(0, 400), min_size=N_ROWS, max_size=N_ROWS),
        budget=st.integers(1500, 12000),
    )
    def setup(self, sizes: list[int], budget: int) -> None:
        self.source = duckdb.connect()
        for stmt in create_table_sql(SCHEMA, version_column="_v"):
            self.source.execute(stmt)
        statuses = ["todo", "done", "backlog"]
        for i, size in enumerate(sizes):
            row = _issue(i, i % 3, statuses[i % 3], size)
            self.source.execute(
                f"INSERT INTO issue ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
        self.budget = Budget(budget)
        self.local = LocalState(SCHEMA, LocalStore(SCHEMA), self.budget)
        self.version = 1
        self.active: set[str] = set()
        self.demoted: set[str] = set()
        self.lru: list[str] = []  # the model's inactive order, least recent first
        self.sent: dict[tuple[object, ...], dict[str, object]] = {}

    def _result(self, q: Query) -> dict[tuple[object, ...], dict[str, object]]:
        out = {}
        for rs in compile_row_sets(q, SCHEMA):
            cur = self.source.execute(rs.sql, rs.params)
            names = [d[0] for d in cur.description]
            for values in cur.fetchall():
                row = encode_row(ISSUE, dict(zip(names, values, strict=True)))
                out[(row["id"],)] = row
        return out

    def _sync(self, complete: list[str]) -> None:
        """Send what changed for the client's desired set, like the server does."""
        self.version += 1
        want: dict[tuple[object, ...], dict[str, object]] = {}
        for d in self.local.desired.values():
            want.update(self._result(d.query))
        puts = [{**r, "_v": self.version} for k, r in want.items() if self.sent.get(k) != r]
        dels = [list(k) for k in self.sent if k not in want]
        self.sent = want
        poke = Poke(
            self.version, {"issue": puts}, {"issue": dels}, {q: self.version for q in complete}
        )
        out = self.local.apply_poke(poke, f"{self.version}.1.t")
        for qid in out.evicted:
            assert qid not in self.active, "an active query was evicted"
            assert self.lru and self.lru[0] == qid, f"evicted {qid}, LRU order was {self.lru}"
            self.lru.pop(0)
        for qid in out.demoted:
            assert qid in self.active
            self.demoted.add(qid)
        # Rows the client dropped on its own are no longer "sent" (the server's record follows
        # the desired set, which no longer has the dropped queries).
        held = {k for (_, k) in self.budget.rows()}
        self.sent = {k: r for k, r in self.sent.items() if k in held}

    @rule(i=st.integers(0, len(QUERIES) - 1))
    def subscribe(self, i: int) -> None:
        q = QUERIES[i]
        if q.id in self.active or q.id in self.demoted:
            return
        if q.id in self.lru:
            self.lru.remove(q.id)
        self.active.add(q.id)
        self.local.add_desired(q, q.id, pinned=True, ttl=None)
        self._sync([q.id])

    @rule(i=st.integers(0, len(QUERIES) - 1))
    def unsubscribe(self, i: int) -> None:
        q = QUERIES[i]
        if q.id not in self.active:
            return
        self.active.discard(q.id)
        if q.id in self.demoted:
            self.demoted.discard(q.id)
            return
        self.budget.unpin(q.id)
        self.lru.append(q.id)

    @rule(
        row=st.integers(0, N_ROWS - 1),
        project=st.integers(0, 2),
        status=st.sampled_from(["todo", "done"]),
        text=st.integers(0, 600),
    )
    def write(self, row: int, project: int, status: str, text: int) -> None:
        self.source.execute(
            "UPDATE issue SET project_id = ?, status = ?, description = ? WHERE id = ?",
            [project, status, "y" * text, row],
        )
        self._sync([])

    @rule(text=st.integers(0, 3000))
    def optimistic_insert(self, text: int) -> None:
        """A pending write (never sent here) in a project no query reads: its bytes count
        against the budget, so inactive queries are evicted (then pinned ones demoted) to
        make room, as the client does after each write."""
        self.next_pending = getattr(self, "next_pending", 0) + 1
        row = {**_issue(1000 + self.next_pending, 99, "canceled", text),
               "priority": 0, "modified": "2023-01-01T00:00:00"}
        self.local.add_pending({"id": self.next_pending, "op": "insert", "table": "issue",
                                "row": row})
        with self.local.transaction():
            evicted, demoted = self.local._enforce_budget()
        for qid in evicted:
            assert qid not in self.active, "an active query was evicted"
            assert self.lru and self.lru[0] == qid, f"evicted {qid}, LRU order was {self.lru}"
            self.lru.pop(0)
        for qid in demoted:
            assert qid in self.active
            self.demoted.add(qid)
        held = {k for (_, k) in self.budget.rows()}
        self.sent = {k: r for k, r in self.sent.items() if k in held}

    @invariant()
    def within_budget(self) -> None:
        """The server's rows and the pending layer together (unless the pending writes alone
        outgrow the budget: then no server row is left)."""
        if hasattr(self, "budget"):
            b = self.budget
            assert b.bytes_held + b.pending_bytes <= b.budget_bytes or b.bytes_held == 0

    @invariant()
    def the_count_is_the_store(self) -> None:
        """bytes_held + pending_bytes is the byte estimate of exactly what the store holds."""
        if not hasattr(self, "budget"):
            return
        cur = self.local.store.con.execute('SELECT * FROM "issue"')
        names = [d[0] for d in cur.description]
        total = 0
        for values in cur.fetchall():
            stored = dict(zip(names, values, strict=True))
            total += row_bytes({**encode_row(ISSUE, stored), "_v": stored["_v"]})
        assert total == self.budget.bytes_held + self.budget.pending_bytes

    @invariant()
    def pinned_queries_intact(self) -> None:
        if not hasattr(self, "budget"):
            return
        for qid in self.active - self.demoted:
            d = self.local.desired[qid]
            assert self.budget.is_pinned(qid)
            expected = list(self._result(d.query).values())
            got = self.local.run(d.query)
            assert got == expected

    @invariant()
    def every_row_held_is_referenced(self) -> None:
        if not hasattr(self, "budget"):
            return
        assert self.budget.unreferenced() == []
        pending_rows = getattr(self, "next_pending", 0)  # inserts of new keys, all still laid
        assert self.local.store.count("issue") == sum(1 for _ in self.budget.rows()) + pending_rows


    @invariant()
    def incremental_membership_equals_a_full_recompute(self) -> None:
        if not hasattr(self, "budget"):
            return
        for d in self.local.desired.values():
            assert self.budget.members(d.qid) == frozenset(self.local.members(d.query)), d.qid


BudgetMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
TestBudgetMachine = BudgetMachine.TestCase
