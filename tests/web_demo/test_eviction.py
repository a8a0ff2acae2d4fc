"""Eviction in the browser under a small byte budget (``?budget=BYTES``, no preload).

Visiting filtered views one after another leaves their queries inactive in the JS store; the
store must stay within the budget after every step, evict inactive queries least recently used
first (whole), never evict the visible view's query, and show its usage in the cache panel.
The bytes are checked against the store's own bookkeeping and recomputed here from the rows it
holds with ``queryplanner.wire.row_bytes``, the estimate both clients share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from queryplanner.schema import Schema
from queryplanner.wire import decode_row, row_bytes
from server.demo.process import DemoProcess
from server.demo.seed import SCHEMA_PATH

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

# The unfiltered 500-row view of the 1,500-issue seed holds about 200 KB, a one-priority view
# about 80 KB and the lookups about 60 KB: this budget keeps the
# lookups, the visible view and a few inactive views, so the later visits must evict.
BUDGET = 400_000
VIEW_COMPLETE = """() => {
  const r = window.demo && window.demo.renders.at(-1);
  return Boolean(r && r.complete && r.id === window.demo.viewId);
}"""
# Each step ends when the view's query is complete and every poke has been applied.
SETTLED = """() => {
  const c = window.demo.client;
  return !c.draining && c.inbox.length === 0 &&
    c.usage().queries.every((q) => q.complete);
}"""
STORE_STATE = """() => {
  const s = window.demo.client.store;
  const rows = {};
  for (const [table, m] of s.base) rows[table] = [...m.values()];
  return {
    bytes: s.bytes,
    budget: s.budgetBytes,
    viewId: window.demo.viewId,
    queries: [...s.queries.values()]
      .map((e) => ({ id: e.id, active: e.active, lastUsed: e.lastUsed })),
    evicted: window.demo.client.evictions.map((e) => e.id),
    rows,
  };
}"""

# (control, value) pairs, each a view no other view covers (disjoint priorities and statuses),
# with a revisit of an earlier view: LRU, not first-in first-out.
STEPS: list[tuple[str, str]] = [
    ("priority", "1"), ("priority", "2"), ("priority", "3"), ("priority", "1"),
    ("priority", "4"), ("priority", "0"), ("status", "done"), ("status", "canceled"),
]


def recomputed_bytes(schema: Schema, rows: dict[str, list[dict[str, Any]]]) -> int:
    return sum(
        row_bytes(decode_row(schema.table(name), r)) for name, rs in rows.items() for r in rs
    )


def set_view(page: Any, control: str, value: str) -> list[str]:
    """Switch to one view; returns the ids of the views shown on the way, in order (clearing
    the other control shows the unfiltered view for a moment)."""
    shown: list[str] = []

    def settle() -> None:
        page.wait_for_function(VIEW_COMPLETE)
        page.wait_for_function(SETTLED)
        shown.append(page.evaluate("window.demo.viewId"))

    checked = page.locator("#f-status input:checked")
    if control == "priority":
        if checked.count():
            checked.first.uncheck()
            settle()
        page.select_option("#f-priority", value)
    else:
        if page.input_value("#f-priority") != "":
            page.select_option("#f-priority", "")
            settle()
        if checked.count():
            checked.first.uncheck()
            settle()
        page.check(f'#f-status input[value="{value}"]')
    settle()
    return shown


def test_inactive_queries_are_evicted_lru_within_a_small_budget(
    context: Any, demo: DemoProcess, artifacts: Path
) -> None:
    schema = Schema.load(SCHEMA_PATH)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{demo.url}?budget={BUDGET}&preload=off")
    page.wait_for_selector("#list .row")
    page.wait_for_function(VIEW_COMPLETE)
    page.wait_for_function(SETTLED)
    page.click("#toggle-cache")

    n_evicted = 0
    recency: dict[str, int] = {}  # view query id -> step it was last visible at
    first: dict[str, Any] = page.evaluate(STORE_STATE)
    clock = 0
    recency[first["viewId"]] = clock
    # The lookups (users, labels, projects) stay subscribed: always active, never evicted.
    lookups = {q["id"] for q in first["queries"] if q["id"] != first["viewId"]}
    for step, (control, value) in enumerate(STEPS, start=1):
        for shown in set_view(page, control, value):
            clock += 1
            recency[shown] = clock
        st: dict[str, Any] = page.evaluate(STORE_STATE)
        view = st["viewId"]
        where = f"step {step} ({control}={value})"

        # Within the budget, by the store's bookkeeping and recomputed from the rows it holds.
        assert st["budget"] == BUDGET
        assert st["bytes"] <= BUDGET, where
        assert recomputed_bytes(schema, st["rows"]) == st["bytes"], where

        # The visible view is held, complete and active; it was never evicted.
        held = {q["id"]: q for q in st["queries"]}
        assert view in held and held[view]["active"] > 0, where
        new_evictions = st["evicted"][n_evicted:]
        n_evicted = len(st["evicted"])
        assert view not in new_evictions, where
        assert lookups <= held.keys(), where

        # LRU: every view left and evicted was last used before every view left and kept.
        inactive = [v for v in recency if v != view]
        kept = [v for v in inactive if v in held]
        gone = [v for v in inactive if v not in held]
        assert all(held[v]["active"] == 0 for v in kept), where
        if kept and gone:
            assert max(recency[v] for v in gone) < min(recency[v] for v in kept), where
        # The store's own recency agrees with the order of the visits.
        order = sorted([*kept, view], key=lambda v: held[v]["lastUsed"])
        assert order == sorted([*kept, view], key=lambda v: recency[v]), where

        # The cache panel shows the usage and the cached queries.
        usage = page.text_content("#cache .usage")
        assert usage is not None and usage.endswith(" evicted"), usage
        shown_kb = float(usage.split(" KB of ")[0])
        assert abs(shown_kb - st["bytes"] / 1024) <= 0.05, (usage, st["bytes"])
        assert f" of {round(BUDGET / 1024, 1):g} KB used" in usage, usage
        assert page.locator("#cache .query").count() == len(st["queries"]), where

    final: dict[str, Any] = page.evaluate(STORE_STATE)
    # The budget forced evictions, the first (unfiltered, least recently used) view first.
    evicted = final["evicted"]
    assert len(evicted) >= 3, evicted
    assert evicted[0] == first["viewId"]
    assert set(evicted).isdisjoint(lookups)
    page.screenshot(path=artifacts / "cache-eviction.png")
    assert errors == []
