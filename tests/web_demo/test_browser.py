"""The demo app in a real browser (Debian's Chromium, headless) against a real demo server.

Each test starts the server as a process on a free port with a small seeded database; DuckDB
on the untouched seed file is the oracle. Screenshots of the main views go to test-artifacts/.
Every wait is bounded (Playwright timeouts, 15 s by default in the context fixture).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from cache import SyncClient
from queryplanner import Schema
from server.demo.process import DemoProcess
from server.demo.seed import SCHEMA_PATH

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

VIEW_COMPLETE = """() => {
  const r = window.demo && window.demo.renders.at(-1);
  return Boolean(r && r.complete && r.id === window.demo.viewId);
}"""
ALL_COMPLETE = """() => window.demo && window.demo.client &&
  window.demo.client.usage().queries.every((q) => q.complete)"""


def open_app(context: Any, demo: DemoProcess) -> Any:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    page.goto(demo.url)
    page.wait_for_selector("#list .row")
    page.wait_for_function(VIEW_COMPLETE)
    return page


def view_ids(page: Any) -> list[int]:
    ids: list[int] = page.evaluate("window.demo.state.rows.map((r) => r.id)")
    return ids


def visible_titles(page: Any) -> list[str]:
    return texts(page, "#list .row .title")


def texts(page: Any, selector: str) -> list[str]:
    found: list[str] = page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")
    return found


def column(oracle: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> list[Any]:
    return [r[0] for r in oracle.execute(sql, list(params)).fetchall()]


def edit_title(page: Any, issue_id: int, title: str) -> None:
    """Opens the issue and edits its title the way a user does (type, then leave the field)."""
    page.click(f'#list .row[data-id="{issue_id}"]')
    field = page.locator('#detail input[data-field="title"]')
    field.wait_for()
    field.fill(title)
    field.press("Tab")  # the change event


def wait_title(page: Any, issue_id: int, title: str, timeout: float) -> None:
    page.wait_for_function(
        """([id, title]) => {
          const el = document.querySelector(`#list .row[data-id="${id}"] .title`);
          return el !== null && el.textContent === title;
        }""",
        arg=[issue_id, title],
        timeout=timeout,
    )


def test_load_filter_sort_open_and_views(
    context: Any, demo: DemoProcess, oracle: duckdb.DuckDBPyConnection, artifacts: Path
) -> None:
    page = open_app(context, demo)
    expected = column(oracle, 'SELECT id FROM "issue" ORDER BY modified DESC, id LIMIT 500')
    assert view_ids(page) == expected
    page.wait_for_function(ALL_COMPLETE)
    page.screenshot(path=artifacts / "list.png")

    # Filter: status done and priority High; the count and every visible row agree.
    page.check('#f-status input[value="done"]')
    page.select_option("#f-priority", "2")
    page.wait_for_function(VIEW_COMPLETE)
    want = column(oracle, """SELECT id FROM "issue" WHERE status = 'done' AND priority = 2
                             ORDER BY modified DESC, id""")
    assert view_ids(page) == want[:500]
    assert set(texts(page, "#list .row .pill")) == {"Done"}
    assert page.text_content("#status-line").startswith(f"{len(want):,} issues")

    # Sort by created, then a text filter.
    page.select_option("#f-sort", "created")
    page.wait_for_function(VIEW_COMPLETE)
    want = column(oracle, """SELECT id FROM "issue" WHERE status = 'done' AND priority = 2
                             ORDER BY created DESC, id""")
    assert view_ids(page) == want[:500]
    page.fill("#f-text", "PAGE")
    page.wait_for_function(VIEW_COMPLETE)
    want = column(oracle, """SELECT id FROM "issue" WHERE status = 'done' AND priority = 2
                             AND title ILIKE '%page%' ORDER BY created DESC, id""")
    assert want and view_ids(page) == want[:500]
    assert all("page" in t.lower() for t in visible_titles(page))
    page.screenshot(path=artifacts / "list-filtered.png")

    # Keyboard: down twice and Enter opens the third issue with its comments.
    page.click("#status-line")
    page.keyboard.press("j")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    third = want[2]
    title = oracle.execute('SELECT title FROM "issue" WHERE id = ?', [third]).fetchone()
    assert title is not None
    page.wait_for_function("t => document.querySelector('#detail input.title')?.value === t",
                           arg=title[0])
    n_comments = column(oracle, 'SELECT count(*) FROM "comment" WHERE issue_id = ?', third)[0]
    page.wait_for_function(
        "n => document.querySelector('#detail h2')?.textContent === `Comments (${n})`",
        arg=n_comments,
    )
    assert page.text_content("#detail .id") == f"ISS-{third}"
    page.screenshot(path=artifacts / "detail.png")

    # Board and cache panel.
    page.keyboard.press("Escape")
    page.fill("#f-text", "")
    page.uncheck('#f-status input[value="done"]')
    page.select_option("#f-priority", "")
    page.click("#view-board")
    page.wait_for_function(VIEW_COMPLETE)
    assert page.locator("#board .column").count() == 5
    assert page.locator("#board .card").count() > 0
    page.screenshot(path=artifacts / "board.png")
    page.click("#toggle-cache")
    page.wait_for_selector("#cache .query")
    assert " of 100 MB used" in page.text_content("#cache .usage")
    page.screenshot(path=artifacts / "cache.png")
    assert page.errors == []


def test_an_edit_in_one_tab_shows_in_another_within_a_second(
    context: Any, demo: DemoProcess
) -> None:
    a = open_app(context, demo)
    b = open_app(context, demo)
    a.wait_for_function(ALL_COMPLETE)
    b.wait_for_function(ALL_COMPLETE)
    # Two tabs of one browser are two clients (their own ids and stores).
    assert a.evaluate("window.demo.client.clientId") != b.evaluate("window.demo.client.clientId")
    issue_id = view_ids(a)[3]
    edit_title(a, issue_id, "Edited in tab A")
    wait_title(b, issue_id, "Edited in tab A", timeout=1_000)
    # A script writing through the server's API shows up too.
    target = view_ids(b)[10]
    done = httpx.post(f"{demo.url}mutate", json={
        "clientId": "script-1", "schemaVersion": 1,
        "mutations": [{"id": 1, "op": "update", "table": "issue", "key": [target],
                       "set": {"title": "Edited by a script", "modified": "2030-01-01T00:00:00"}}],
    }, timeout=10)
    assert done.status_code == 200 and done.json()["results"][0]["status"] == "applied", done.text
    wait_title(b, target, "Edited by a script", timeout=1_000)
    wait_title(a, target, "Edited by a script", timeout=1_000)
    assert view_ids(b)[0] == target  # newest modified first
    # And one through the Python client (its synchronous facade, as a script would use it).
    other = view_ids(b)[12]
    with SyncClient(demo.url.rstrip("/"), Schema.load(SCHEMA_PATH)) as py:
        result = py.update("issue", [other], {"title": "Edited from Python"}).result(timeout=10)
        assert result.status == "applied"
    wait_title(b, other, "Edited from Python", timeout=1_000)
    wait_title(a, other, "Edited from Python", timeout=1_000)
    assert a.errors == [] and b.errors == []


def test_offline_filters_from_cache_and_offline_edits_sync_after_restart(
    context: Any, demo: DemoProcess, oracle: duckdb.DuckDBPyConnection, artifacts: Path
) -> None:
    a = open_app(context, demo)
    b = open_app(context, demo)
    a.wait_for_function(ALL_COMPLETE)
    b.wait_for_function(ALL_COMPLETE)
    demo.stop()
    a.wait_for_function("() => document.querySelector('#conn').textContent === 'offline'")

    # Filtering keeps working on the cached issues, answered locally.
    a.check('#f-status input[value="todo"]')
    a.fill("#f-text", "page")
    a.wait_for_function(VIEW_COMPLETE)
    want = column(oracle, """SELECT id FROM "issue" WHERE status = 'todo' AND title ILIKE '%page%'
                             ORDER BY modified DESC, id""")
    assert want and view_ids(a) == want[:500]
    assert "answered locally" in a.text_content("#status-line")
    a.screenshot(path=artifacts / "offline.png")

    # Edit offline: applied at once in tab A, queued in its outbox.
    issue_id = want[0]
    edit_title(a, issue_id, "Page edited while offline")
    wait_title(a, issue_id, "Page edited while offline", timeout=1_000)
    a.fill('#detail textarea[name="body"]', "An offline comment")
    a.click('#detail button[type="submit"]')
    a.wait_for_function("() => window.demo.client.usage().pending === 2")

    demo.start()
    wait_title(b, issue_id, "Page edited while offline", timeout=20_000)
    a.wait_for_function("() => window.demo.client.usage().pending === 0", timeout=20_000)
    b.click(f'#list .row[data-id="{issue_id}"]')
    b.wait_for_function("() => [...document.querySelectorAll('#detail .comment')]"
                        ".some((c) => c.textContent.includes('An offline comment'))")
    # Replayed exactly once: one comment on the server.
    rows = query_rows(demo, {"table": "comment",
                             "where": {"column": "issue_id", "op": "=", "value": issue_id}})
    assert [r["body"] for r in rows].count("An offline comment") == 1
    assert a.errors == [] and b.errors == []


def test_a_rejected_write_is_rolled_back(context: Any, demo: DemoProcess) -> None:
    page = open_app(context, demo)
    page.wait_for_function(ALL_COMPLETE)
    first = view_ids(page)[0]
    original = page.evaluate(f"window.demo.client.store.get('issue', '[{first}]').title")
    # An insert with an existing key: applied optimistically, rejected by the server.
    outcome = page.evaluate(
        """async (id) => {
          const key = JSON.stringify([id]);
          const row = { ...window.demo.client.store.get('issue', key), title: 'Duplicate' };
          delete row._v;
          const p = window.demo.client.mutate([{ op: 'insert', table: 'issue', row }]);
          const optimistic = window.demo.client.store.get('issue', JSON.stringify([id])).title;
          try { await p; return { optimistic, error: null }; }
          catch (err) { return { optimistic, error: err.name + ': ' + err.message }; }
        }""",
        first,
    )
    assert outcome["optimistic"] == "Duplicate"
    assert outcome["error"] is not None and "rejected" in outcome["error"]
    page.wait_for_function(
        "([id, t]) => window.demo.client.store.get('issue', JSON.stringify([id])).title === t",
        arg=[first, original],
    )
    wait_title(page, first, original, timeout=2_000)
    assert page.evaluate("window.demo.client.usage().pending") == 0


def test_a_newer_server_schema_shows_update_needed(
    context: Any, demo: DemoProcess, tmp_path: Path, artifacts: Path
) -> None:
    page = open_app(context, demo)
    demo.stop()
    doc = json.loads(SCHEMA_PATH.read_text())
    doc["version"] = doc["minClientVersion"] = doc["version"] + 1
    bumped = tmp_path / "schema-v2.json"
    bumped.write_text(json.dumps(doc))
    demo.start(schema=bumped)
    page.wait_for_function("() => document.querySelector('#conn').textContent === 'update needed'",
                           timeout=20_000)
    assert "out of date" in page.text_content(".banner")
    # The cached view stays readable.
    assert len(view_ids(page)) == 500
    page.screenshot(path=artifacts / "update-needed.png")


def query_rows(demo: DemoProcess, query: dict[str, Any]) -> list[dict[str, Any]]:
    """A one-shot query through the server's ``POST /query`` (an SSE body of ``rows`` events)."""
    res = httpx.post(f"{demo.url}query", json={"schemaVersion": 1, "query": query}, timeout=10)
    assert res.status_code == 200, res.text
    rows: list[dict[str, Any]] = []
    for block in res.text.replace("\r\n", "\n").split("\n\n"):
        lines = block.split("\n")
        if "event: rows" in lines:
            data = "".join(line[5:].strip() for line in lines if line.startswith("data:"))
            rows.extend(json.loads(data)["rows"])
    return rows


def test_a_reload_shows_the_saved_list_before_the_server_answers(
    context: Any, demo: DemoProcess, oracle: duckdb.DuckDBPyConnection
) -> None:
    page = open_app(context, demo)
    page.wait_for_function(ALL_COMPLETE)
    page.wait_for_function(
        "() => !window.demo.client.persistTimer && !window.demo.client.persisting"
        " && !window.demo.client.restoring")
    expected = column(oracle, 'SELECT id FROM "issue" ORDER BY modified DESC, id LIMIT 500')
    page.reload()
    page.wait_for_function("() => window.demo?.renders.some((r) => r.count > 0)")
    page.wait_for_function(VIEW_COMPLETE)
    page.wait_for_function("() => performance.getEntriesByName('client:hello').length > 0")
    first = page.evaluate("window.demo.renders.find((r) => r.count > 0)")
    hello = page.evaluate("performance.getEntriesByName('client:hello')[0].startTime")
    # The saved rows painted first, complete for the view (the first 500 by modified).
    assert first["count"] == 500 and first["t"] < hello, (first, hello)
    assert view_ids(page) == expected
    assert page.errors == []
