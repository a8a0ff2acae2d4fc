"""The planner's routes and explain() sentences, over a real index and in-memory store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from queryplanner import Query, Schema, bind, col, table
from queryplanner.compile_cache import CompileCache
from queryplanner.coverage import CompleteQuery
from queryplanner.coverage_index import CoverageIndex
from queryplanner.coverage_rows import RowsInMemory
from queryplanner.describe import describe
from queryplanner.planner import Route, plan
from queryplanner.predicate import Row


class State:
    """A CacheState: what a client's cache tells the planner."""

    def __init__(self, schema: Schema, rows: Mapping[str, Sequence[Row]], online: bool) -> None:
        self.index = CoverageIndex(schema)
        self.online = online
        self._rows = RowsInMemory(schema, rows)
        self._tables = {t for t, rs in rows.items() if rs}

    def count_matching(self, complete: CompleteQuery, query: Query) -> int:
        return self._rows.count_matching(complete, query)

    def has_rows(self, table: str) -> bool:
        return table in self._tables


def _issue(schema: Schema, i: int, project: int) -> Row:
    row: dict[str, object] = dict.fromkeys(schema.table("issue").column_names)
    row.update(id=i, project_id=project, status="todo", priority=i % 4)
    return row


@pytest.fixture
def state(demo_schema: Schema) -> State:
    rows = {"issue": [_issue(demo_schema, i, 3) for i in range(1, 6)]}
    s = State(demo_schema, rows, online=True)
    s.index.add(CompleteQuery(bind(table("issue").where(col("project_id") == 3).build(),
                                   demo_schema), 812))
    return s


def test_covered_is_local_and_says_by_what(state: State, demo_schema: Schema) -> None:
    q = bind(table("issue").where(col("project_id") == 3, col("priority") >= 2).build(),
             demo_schema)
    p = plan(q, state)
    assert p.route is Route.LOCAL
    assert [c.version for c in p.relies_on] == [812]
    assert p.explain() == (
        "Answered locally: covered by issue[project_id = 3] (complete at version 812)."
    )


def test_covered_stays_local_offline(state: State, demo_schema: Schema) -> None:
    state.online = False
    q = bind(table("issue").where(col("project_id") == 3).build(), demo_schema)
    assert plan(q, state).route is Route.LOCAL


def test_union_explains_every_query(state: State, demo_schema: Schema) -> None:
    state.index.add(CompleteQuery(bind(table("issue").where(col("project_id") == 4).build(),
                                       demo_schema), 815))
    q = bind(table("issue").where(col("project_id").in_([3, 4])).build(), demo_schema)
    assert plan(q, state).explain() == (
        "Answered locally: covered by issue[project_id = 3] (complete at version 812) "
        "and issue[project_id = 4] (complete at version 815)."
    )


def test_partly_cached_rows_show_then_server(state: State, demo_schema: Schema) -> None:
    q = bind(table("issue").where(col("priority") >= 2).order_by("modified", desc=True)
             .limit(50).build(), demo_schema)
    p = plan(q, state)
    assert p.route is Route.LOCAL_THEN_SERVER
    assert p.relies_on == ()
    assert p.explain().startswith(
        "Showing the cached rows of issue[priority >= 2] order by modified desc limit 50 now; "
        "the server completes it ("
    )
    state.online = False
    assert plan(q, state).explain().startswith("Offline: showing the cached rows of issue[")


def test_nothing_cached_goes_to_server(state: State, demo_schema: Schema) -> None:
    q = bind(table("comment").where(col("issue_id") == 1).build(), demo_schema)
    p = plan(q, state)
    assert p.route is Route.SERVER
    assert p.explain() == "Sent to the server: nothing of comment[issue_id = 1] is cached yet."
    state.online = False
    assert plan(q, state).explain() == (
        "Waiting for the server: offline and nothing of comment[issue_id = 1] is cached yet."
    )


def test_uncovered_aggregate_is_offloaded(state: State, demo_schema: Schema) -> None:
    q = bind(table("issue").aggregate(["status"], n=("count", None)).build(), demo_schema)
    p = plan(q, state)
    assert p.route is Route.SERVER
    assert p.explain().startswith(
        "Offloaded to the server: the rows of issue count(*) as n group by status are not all "
        "cached ("
    )


def test_covered_aggregate_is_local(state: State, demo_schema: Schema) -> None:
    q = bind(table("issue").where(col("project_id") == 3)
             .aggregate(["status"], n=("count", None)).build(), demo_schema)
    assert plan(q, state).route is Route.LOCAL


def test_empty_condition_is_local_without_complete_queries(
    state: State, demo_schema: Schema
) -> None:
    q = bind(table("issue").where(col("priority") > 3, col("priority") < 2).build(), demo_schema)
    p = plan(q, state)
    assert (p.route, p.relies_on) == (Route.LOCAL, ())
    assert p.explain() == ("Answered locally: issue[priority < 2 AND priority > 3] is empty "
                           "whatever the data, so it needs no cached rows.")


def test_describe_drops_only_the_primary_key_tiebreaker(demo_schema: Schema) -> None:
    q = bind(table("issue").where(col("status").in_(["todo", "done"]), col("priority") >= 2)
             .order_by("modified", desc=True).limit(50)
             .related("comments", table("comment").order_by("created").limit(3)).build(),
             demo_schema)
    assert describe(q, demo_schema) == (
        "issue[priority >= 2 AND status IN ('done', 'todo')] order by modified desc limit 50 "
        "with comments order by created limit 3"
    )
    by_id_desc = bind(table("issue").order_by("id", desc=True).build(), demo_schema)
    assert describe(by_id_desc, demo_schema) == "issue order by id desc"


def test_compile_cache_returns_the_same_compiled_query(demo_schema: Schema) -> None:
    cache = CompileCache(demo_schema, maxsize=2)
    q1, q2, q3 = (bind(table("issue").where(col("priority") == n).build(), demo_schema)
                  for n in (1, 2, 3))
    first = cache.get(q1, q1.id)
    assert cache.get(q1, q1.id) is first
    assert first.predicate(_issue(demo_schema, 1, 3)) is True
    cache.get(q2)
    cache.get(q3)  # evicts q1, the least recently used
    assert len(cache) == 2
    assert cache.get(q1, q1.id) is not first
