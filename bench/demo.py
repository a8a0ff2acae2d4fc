"""The demo app in Chromium against the demo server with the default data set (50k issues).

    python bench/demo.py [--issues 50000] [--repeat 5]

Measured in the page with ``performance.now`` (Debian's Chromium, headless, loopback):

- ``first_list_ms``: navigation start to the first rendered rows, fresh browser profile.
- ``reload_first_list_ms``: a returning user: a reload of the page once the preloaded store is
  saved to IndexedDB, navigation start to the first rendered rows (from the saved rows).
- ``covered_filter_ms``: a filter change (status, priority, text) to the re-rendered list, with
  the issues preloaded, so the view is answered locally (the event handler's whole synchronous
  work: the local query, the list, the per-status counts).
- ``server_filter_partial_ms`` / ``server_filter_complete_ms``: a filter change the cache cannot
  answer (only the newest 2,000 issues preloaded; an assignee filter): the local partial answer,
  then the complete answer from the server.
- baseline: the same changes in ``web-demo/baseline.html``, a plain page that fetches the
  server's one-shot ``POST /query`` on every change (no cache), in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _harness import Metric, percentile, report
from playwright.sync_api import sync_playwright

from server.demo.process import CHROMIUM, CHROMIUM_ARGS, DemoProcess
from server.demo.seed import DEFAULT_ISSUES, seed

ALL_COMPLETE = """() => window.demo && window.demo.client &&
  window.demo.client.usage().queries.every((q) => q.complete)"""
# The preload (the whole issue table, or the newest window) is in the store and complete.
PRELOADED = "() => window.demo?.preloaded === true"
# Every saved row read back (after a reload) and nothing waiting to be written to IndexedDB.
PERSISTED = """() => !window.demo.client.restoring && !window.demo.client.persistTimer &&
  !window.demo.client.persisting"""

# One filter change in the page, timed from just before the event to the render of the new view.
MEASURE = """async ([sel, kind, value, timeout]) => {
  const page = window.demo ?? window.baseline;
  const el = document.querySelector(sel);
  const t0 = performance.now();
  if (kind === "check") { el.checked = !el.checked; el.dispatchEvent(new Event("change")); }
  else if (kind === "text") { el.value = value; el.dispatchEvent(new Event("input")); }
  else { el.value = value; el.dispatchEvent(new Event("change")); }
  const tSync = performance.now();
  while (performance.now() - t0 < timeout) {
    const mine = page.renders.filter((r) => r.t >= t0 && r.id === page.viewId);
    const done = mine.find((r) => r.complete);
    if (done) {
      return { first: mine[0].t - t0, complete: Math.max(done.t, tSync) - t0, sync: tSync - t0,
               source: done.source, count: done.count };
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  return null;
}"""

# Single-control changes: each one is one filter change for the user.
LOCAL_STEPS = [
    ("#f-status input[value=todo]", "check", ""),
    ("#f-priority", "select", "2"),
    ("#f-status input[value=in_progress]", "check", ""),
    ("#f-text", "text", "page"),
    ("#f-priority", "select", ""),
    ("#f-status input[value=todo]", "check", ""),
    ("#f-text", "text", "pa"),
    ("#f-text", "text", ""),
    ("#f-status input[value=done]", "check", ""),
    ("#f-priority", "select", "1"),
    ("#f-status input[value=in_progress]", "check", ""),
    ("#f-status input[value=done]", "check", ""),
    ("#f-text", "text", "offline"),
    ("#f-priority", "select", ""),
    ("#f-text", "text", ""),
]
SERVER_STEPS = [("#f-assignee", "select", str(u)) for u in range(1, 21)]


def launch(p: Any) -> Any:
    return p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), timeout=60_000)


# Main-thread tasks over 50 ms (the page cannot respond to input meanwhile), from navigation.
LONG_TASKS = """window.longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.longTasks.push({ t: e.startTime, ms: e.duration });
}).observe({ type: "longtask", buffered: true });"""


def new_page(browser: Any, url: str) -> tuple[Any, Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.add_init_script(LONG_TASKS)
    ctx.set_default_timeout(120_000)
    page = ctx.new_page()
    page.goto(url)
    return ctx, page


def first_list(browser: Any, url: str, renders: str) -> float:
    ctx, page = new_page(browser, url)
    try:
        return first_rows_at(page, renders)
    finally:
        ctx.close()


def first_rows_at(page: Any, renders: str) -> float:
    page.wait_for_function(f"() => {renders}?.some((r) => r.count > 0)")
    t: float = page.evaluate(f"{renders}.find((r) => r.count > 0).t")
    return t


def reload_first_list(page: Any) -> dict[str, Any]:
    """Reload once everything is saved; the first rows' time and whether they beat the stream."""
    page.wait_for_function(PERSISTED)
    page.reload()
    t = first_rows_at(page, "window.demo?.renders")
    hello = page.evaluate("performance.getEntriesByName('client:hello')[0]?.startTime ?? null")
    return {"t": t, "before_hello": hello is None or t < hello}


Step = tuple[str, str, str]
ASSIGNEES_LOADED = "() => document.querySelectorAll('#f-assignee option').length > 20"


def run_steps(page: Any, steps: list[Step], wait: str | None) -> list[dict[str, Any]]:
    out = []
    for sel, kind, value in steps:
        got = page.evaluate(MEASURE, [sel, kind, value, 10_000])
        if got is None:
            raise RuntimeError(f"no complete render within 10 s after {kind} {sel} {value!r}")
        out.append(got)
        if wait:
            page.wait_for_function(wait)
        time.sleep(0.25)  # a user's pace: the counts and the persistence run in between
    return out


def p50(samples: list[dict[str, Any]], key: str) -> float:
    return percentile([s[key] for s in samples], 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--issues", type=int, default=DEFAULT_ISSUES)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "demo.duckdb"
        t = time.perf_counter()
        seed(db, issues=args.issues, progress=False)
        seed_s = time.perf_counter() - t
        with DemoProcess(db, issues=args.issues) as demo, sync_playwright() as p:
            browser = launch(p)
            app_first = [first_list(browser, demo.url, "window.demo?.renders")
                         for _ in range(args.repeat)]
            base_url = f"{demo.url}baseline.html"
            base_first = [first_list(browser, base_url, "window.baseline?.renders")
                          for _ in range(args.repeat)]

            ctx, page = new_page(browser, demo.url)
            t = time.perf_counter()
            page.wait_for_function(PRELOADED)
            page.wait_for_function(ALL_COMPLETE)
            preload_s = time.perf_counter() - t
            preload_pokes = page.evaluate("window.demo.client.pokes.filter((p) => p.rows > 5000)")
            time.sleep(3)  # the preload's rows are written to IndexedDB in the background
            long_tasks = page.evaluate("window.longTasks.map((x) => x.ms)")
            usage = page.evaluate("window.demo.client.usage().bytes")
            local = run_steps(page, LOCAL_STEPS, ALL_COMPLETE)
            reloads = [reload_first_list(page) for _ in range(args.repeat)]
            ctx.close()

            ctx, page = new_page(browser, f"{demo.url}?preload=2000")
            page.wait_for_function(PRELOADED)
            page.wait_for_function(ALL_COMPLETE)
            page.wait_for_function(ASSIGNEES_LOADED)
            remote = run_steps(page, SERVER_STEPS, None)
            ctx.close()

            ctx, page = new_page(browser, base_url)
            page.wait_for_function("() => window.baseline?.renders.length > 0")
            page.wait_for_function(ASSIGNEES_LOADED)
            base_local = run_steps(page, LOCAL_STEPS, None)
            base_remote = run_steps(page, SERVER_STEPS, None)
            ctx.close()
            browser.close()

    sources = sorted({s["source"] for s in local})
    report(
        "demo",
        scenario=f"Linear-style demo in headless Chromium, {args.issues:,} issues on loopback",
        parameters={"issues": args.issues, "repeat": args.repeat, "local_steps": len(LOCAL_STEPS),
                    "server_steps": len(SERVER_STEPS), "server_preload": 2000},
        metrics={
            "first_list_ms": Metric(statistics.median(app_first), "ms"),
            "reload_first_list_ms": Metric(statistics.median(r["t"] for r in reloads), "ms"),
            "covered_filter_ms": Metric(p50(local, "complete"), "ms"),
            "covered_filter_p90_ms": Metric(percentile([s["complete"] for s in local], 90), "ms"),
            "server_filter_partial_ms": Metric(p50(remote, "first"), "ms"),
            "server_filter_complete_ms": Metric(p50(remote, "complete"), "ms"),
            "server_filter_complete_p90_ms": Metric(
                percentile([s["complete"] for s in remote], 90), "ms"),
        },
        baseline={
            "baseline_first_list_ms": Metric(statistics.median(base_first), "ms"),
            "baseline_filter_ms": Metric(p50(base_local, "complete"), "ms"),
            "baseline_server_filter_ms": Metric(p50(base_remote, "complete"), "ms"),
        },
        extra={"seed_s": round(seed_s, 2), "preload_all_s": round(preload_s, 2),
               "preload_longest_task_ms": round(max(long_tasks, default=0.0), 1),
               "preload_long_tasks": len(long_tasks),
               "preload_pokes": [
                   {"rows": p["rows"], "busy_ms": round(p["ms"], 1), "chunks": p["chunks"],
                    "span_ms": round(p["spanMs"], 1)} for p in preload_pokes],
               "reload_samples_ms": [round(r["t"], 1) for r in reloads],
               "reload_rows_before_hello": sum(r["before_hello"] for r in reloads),
               "store_bytes": usage, "covered_sources": sources,
               "covered_samples_ms": [round(s["complete"], 1) for s in local],
               "server_samples_ms": [round(s["complete"], 1) for s in remote],
               "baseline_samples_ms": [round(s["complete"], 1) for s in base_local]},
    )


if __name__ == "__main__":
    main()
