"""Unit tests of the IVM parts: the subscription index, batches, re-hydration and the store."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from queryplanner import Schema, evaluate, parse_query
from queryplanner.ivm import Engine, MemoryStore, RowChange, coalesce
from queryplanner.ivm.index import SubscriptionIndex

T0 = dt.datetime(2025, 3, 1)


def _issue(i: int, **kw: Any) -> dict[str, Any]:
    row = {"id": i, "project_id": i % 3, "title": f"t{i}", "description": None,
           "status": "todo", "priority": i % 4, "assignee_id": None, "creator_id": 1,
           "visibility": "public", "estimate": None, "sort_order": float(i),
           "created": T0, "modified": T0 + dt.timedelta(minutes=i % 7)}
    row.update(kw)
    return row


def _engine(schema: Schema, n: int = 30, **kw: Any) -> tuple[MemoryStore, Engine]:
    store = MemoryStore(schema)
    store.apply([RowChange.add("issue", _issue(i)) for i in range(1, n + 1)])
    return store, Engine(schema, store, **kw)


def _commit(store: MemoryStore, engine: Engine, batch: list[RowChange]) -> dict[str, Any]:
    store.apply(batch)
    return engine.apply(batch)


def _q(schema: Schema, **doc: Any) -> Any:
    return parse_query({"table": "issue", **doc}, schema)


def test_index_files_equality_in_range_and_scan(demo_schema: Schema) -> None:
    idx = SubscriptionIndex()
    eq = _q(demo_schema, where={"and": [{"column": "project_id", "op": "=", "value": 1},
                                        {"column": "status", "op": "in", "value": ["a", "b"]}]})
    rng = _q(demo_schema, where={"column": "priority", "op": ">=", "value": 2})
    scan = _q(demo_schema, where={"or": [{"column": "priority", "op": "=", "value": 1},
                                         {"column": "status", "op": "=", "value": "a"}]})
    for sub, q in (("eq", eq), ("rng", rng), ("scan", scan)):
        idx.add(sub, "issue", q.where)

    def hits(**row: Any) -> set[Any]:
        found: set[Any] = set()
        idx.candidates("issue", {"project_id": 0, "status": "z", "priority": 0, **row}, found)
        return found

    assert hits(project_id=1, status="b") == {"eq", "scan"}
    assert hits(project_id=1, status="c") == {"scan"}
    assert hits(priority=2) == {"rng", "scan"}
    assert hits(priority=1) == {"scan"}
    assert hits(priority=None) == {"scan"}
    idx.remove("eq")
    idx.remove("rng")
    assert hits(project_id=1, status="b", priority=5) == {"scan"}
    assert len(idx) == 1


def test_a_row_leaving_a_full_window_is_replaced_from_the_store(demo_schema: Schema) -> None:
    """Routed by its old image only (the new one no longer matches), then one refill."""
    store, engine = _engine(demo_schema)
    q = _q(demo_schema, where={"column": "project_id", "op": "=", "value": 1},
           orderBy=[["modified", "desc"]], limit=3)
    engine.subscribe("s", q)
    first = engine.rows("s")
    leaving = first[0]
    out = _commit(store, engine, [RowChange.edit("issue", leaving, dict(leaving, project_id=2))])
    want = evaluate(q, demo_schema, store.rows("issue"))
    assert engine.rows("s") == want
    change = out["s"]
    assert [r.key for r in change.removed] == [(leaving["id"],)]
    assert len(change.added) == 1 and change.added[0].row == want[-1]


def test_a_bulk_update_rehydrates_instead(demo_schema: Schema) -> None:
    store, engine = _engine(demo_schema, rehydrate_after=5)
    q = _q(demo_schema, where={"column": "status", "op": "=", "value": "todo"},
           orderBy=[["priority", "desc"]], limit=4)
    engine.subscribe("s", q)
    batch = [RowChange.edit("issue", r, dict(r, status="done"))
             for r in store.rows("issue") if r["id"] % 2 == 0]
    out = _commit(store, engine, batch)
    assert out["s"].reset
    want = evaluate(q, demo_schema, store.rows("issue"))
    assert [r.row for r in out["s"].added] == want == engine.rows("s")


def test_a_batch_nets_out_per_row(demo_schema: Schema) -> None:
    row = _issue(99)
    edited = dict(row, status="done")
    net = coalesce(demo_schema, [RowChange.add("issue", row), RowChange.edit("issue", row, edited),
                                 RowChange.remove("issue", edited)])
    assert net == {}
    net = coalesce(demo_schema, [RowChange.edit("issue", row, edited),
                                 RowChange.edit("issue", edited, row)])
    assert net == {}
    store, engine = _engine(demo_schema)
    engine.subscribe("s", _q(demo_schema, orderBy=[["id", "asc"]], limit=5))
    temp = _issue(0)
    out = _commit(store, engine, [RowChange.add("issue", temp), RowChange.remove("issue", temp)])
    assert out == {}


def test_ties_on_the_sort_key_are_broken_by_the_primary_key(demo_schema: Schema) -> None:
    store, engine = _engine(demo_schema, n=10)
    q = _q(demo_schema, orderBy=[["status", "asc"]], limit=4)
    engine.subscribe("s", q)
    assert [r["id"] for r in engine.rows("s")] == [1, 2, 3, 4]
    r7 = store.get("issue", (7,))
    assert r7 is not None
    _commit(store, engine, [RowChange.remove("issue", store.get("issue", (2,)) or {}),
                            RowChange.edit("issue", r7, dict(r7, title="x"))])
    assert [r["id"] for r in engine.rows("s")] == [1, 3, 4, 5]


def test_unsubscribed_queries_get_no_changes(demo_schema: Schema) -> None:
    store, engine = _engine(demo_schema)
    engine.subscribe("s", _q(demo_schema, orderBy=[["id", "asc"]]))
    engine.unsubscribe("s")
    assert "s" not in engine and len(engine) == 0
    assert _commit(store, engine, [RowChange.add("issue", _issue(500))]) == {}


STATUS = st.sampled_from(["todo", "done", "in_progress"])


@settings(deadline=None, max_examples=60)
@given(
    rows=st.lists(st.tuples(st.integers(0, 2), STATUS, st.one_of(st.none(), st.integers(0, 3)),
                            st.integers(0, 5)), max_size=30),
    where=st.sampled_from([None, {"column": "project_id", "op": "=", "value": 1},
                           {"and": [{"column": "project_id", "op": "=", "value": 2},
                                    {"column": "status", "op": "=", "value": "done"}]},
                           {"column": "assignee_id", "op": ">", "value": 1}]),
    order=st.sampled_from([[["assignee_id", "desc"]], [["modified", "asc"], ["status", "desc"]],
                           []]),
    limit=st.one_of(st.none(), st.integers(0, 6)),
    start=st.one_of(st.none(), st.integers(0, 30)),
)
def test_memory_store_scan_is_evaluate(demo_schema: Schema, rows: list[Any], where: Any,
                                       order: Any, limit: Any, start: Any) -> None:
    store = MemoryStore(demo_schema)
    for i, (p, s, a, m) in enumerate(rows):
        store.insert("issue", _issue(i, project_id=p, status=s, assignee_id=a,
                                     modified=T0 + dt.timedelta(hours=m)))
    doc: dict[str, Any] = {"orderBy": order}
    if where is not None:
        doc["where"] = where
    if limit is not None:
        doc["limit"] = limit
    q = _q(demo_schema, **doc)
    if start is not None and store.get("issue", (start,)) is not None:
        anchor = store.get("issue", (start,))
        assert anchor is not None
        doc["start"] = {"row": {o.column: (anchor[o.column].isoformat()
                                           if isinstance(anchor[o.column], dt.datetime)
                                           else anchor[o.column]) for o in q.order_by},
                        "inclusive": start % 2 == 0}
        q = _q(demo_schema, **doc)
    assert list(store.scan(q)) == evaluate(q, demo_schema, store.rows("issue"))


def test_an_edit_of_the_primary_key_is_a_delete_and_an_insert(demo_schema: Schema) -> None:
    store, engine = _engine(demo_schema, n=5)
    q = _q(demo_schema, orderBy=[["id", "desc"]], limit=2)
    engine.subscribe("s", q)
    r5 = store.get("issue", (5,))
    assert r5 is not None
    out = _commit(store, engine, [RowChange.edit("issue", r5, dict(r5, id=0))])
    assert engine.rows("s") == evaluate(q, demo_schema, store.rows("issue"))
    assert [r.key for r in out["s"].removed] == [(5,)]
    assert [r.key for r in out["s"].added] == [(3,)]


# -- a window with spare rows past its limit -----------------------------------------------

_OPS = st.lists(
    st.tuples(st.integers(0, 11), st.one_of(st.none(), st.integers(0, 5))), max_size=40
)


@settings(deadline=None, max_examples=300)
@given(
    start=st.dictionaries(st.integers(0, 11), st.integers(0, 5), max_size=12),
    limit=st.integers(1, 4),
    spare=st.integers(1, 3),
    ops=_OPS,
)
def test_window_with_spares_shows_the_first_limit_rows_and_emits_every_crossing(
    start: dict[int, int], limit: int, spare: int, ops: list[tuple[int, int | None]]
) -> None:
    """Against a plain model (the matching rows sorted, the first ``limit`` of them): after
    every change (and the refill the owner does when asked) the visible rows are those, and
    the emitted entries and leavings, replayed, give the same set."""
    from queryplanner.ivm.window import Window
    from queryplanner.predicate import compile_sort_key
    from queryplanner.query import OrderBy

    order = compile_sort_key((OrderBy("v", False), OrderBy("id", False)))
    matching = {k: {"id": k, "v": v} for k, v in start.items()}

    def ordered() -> list[dict[str, int]]:
        return sorted(matching.values(), key=order)

    window = Window(order, ("id",), limit, spare)
    window.load(ordered()[: limit + spare], None)
    seen = {(r["id"],): r for r in ordered()[:limit]}

    def emit(key: Any, before: Any, after: Any) -> None:
        assert (key in seen) == (before is not None), (key, before)
        if after is None:
            del seen[key]
        else:
            seen[key] = after

    for key, value in ops:
        if value is None:
            matching.pop(key, None)
            window.change((key,), None, emit)
        else:
            matching[key] = {"id": key, "v": value}
            window.change((key,), matching[key], emit)
        if window.needs_refill:
            last = window.last()
            after = [r for r in ordered() if last is None or order(r) > order(last)]
            asked = window.wanted()
            window.refill(after[:asked], asked, emit)
        expected = ordered()[:limit]
        assert [r["id"] for r in window.rows()] == [r["id"] for r in expected]
        assert seen == {(r["id"],): r for r in expected}
        assert all(((r["id"],) in window) for r in expected)
