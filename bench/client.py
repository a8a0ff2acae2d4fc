"""Client benchmark: covered query latency, hydration rate, and a 300 MB load under a 100 MB budget.

    python bench/client.py [--rows 100000] [--load-mb 300] [--budget-mb 100]

1. A covered query (filter + order + limit 50) over a 100k-row local cache, p50, with DuckDB's
   bare ``SELECT 1`` on the same connection as the floor.
2. Hydration into the local store: pokes of ~1 KB rows (React issues from
   ../shared/data/react-issues.json.gz mapped onto the demo's issue table, generated when absent)
   encoded as the server sends them, then parsed and applied (JSON decode + batch apply + budget),
   rows/s. NOTE: measured in-process (no server socket): the sync server's app was not available
   when this was written; the figure excludes loopback HTTP.
3. Loading --load-mb of rows as many queries under --budget-mb: store bytes after every poke, max
   reported, and the process RSS.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import Metric, percentile, report, time_each

from cache.budget import Budget
from cache.local import LocalState
from cache.store import LocalStore
from queryplanner import Schema, bind, col, table
from queryplanner.protocol import parse_event

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Schema.load(ROOT / "server" / "demo" / "schema.json")
REACT = ROOT.parent / "shared" / "data" / "react-issues.json.gz"
STATUSES = ["backlog", "todo", "in_progress", "done", "canceled"]


def source_texts() -> list[tuple[str, str]]:
    if REACT.exists():
        with gzip.open(REACT, "rt") as f:
            doc = json.load(f)
        items = doc if isinstance(doc, list) else doc.get("issues", [])
        return [(str(i.get("title") or ""), str(i.get("body") or "")[:900]) for i in items]
    return [(f"generated issue {i}", "lorem ipsum " * 75) for i in range(10_000)]


def make_row(i: int, texts: list[tuple[str, str]], project: int) -> dict[str, object]:
    title, body = texts[i % len(texts)]
    return {
        "id": i, "project_id": project, "title": title, "description": body,
        "status": STATUSES[i % 5], "priority": i % 4, "assignee_id": i % 50, "creator_id": i % 40,
        "visibility": "public", "estimate": None, "sort_order": float(i),
        "created": "2024-01-01T00:00:00", "modified": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}T"
        f"{i % 24:02d}:{i % 60:02d}:00", "_v": 1,
    }


def poke_bytes(version: int, rows: list[dict[str, object]], complete: dict[str, int]) -> bytes:
    return orjson.dumps({"version": version, "put": {"issue": rows}, "del": {},
                         "complete": complete, "mutations": []})


def hydrate(local: LocalState, qid: str, rows: list[dict[str, object]], version: int,
            batch: int = 2000) -> float:
    """Send a query's rows as the server would (batched pokes, the last marks it complete)."""
    encoded = [
        poke_bytes(version, rows[i:i + batch], {qid: version} if i + batch >= len(rows) else {})
        for i in range(0, len(rows), batch)
    ]
    t0 = time.perf_counter()
    for data in encoded:
        local.apply_poke(parse_event("poke", data), f"{version}.1.bench")  # type: ignore[arg-type]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--load-mb", type=int, default=300)
    ap.add_argument("--budget-mb", type=int, default=100)
    args = ap.parse_args()
    texts = source_texts()

    # 1 + 2: hydrate one whole-project query of --rows rows, then query it locally.
    big = Budget(10 * 2**30)
    local = LocalState(SCHEMA, LocalStore(SCHEMA), big)
    q_all = bind(table("issue").where(col("project_id") == 1).build(), SCHEMA)
    local.add_desired(q_all, q_all.id, pinned=True, ttl=None)
    rows = [make_row(i, texts, 1) for i in range(args.rows)]
    avg_row = big.bytes_held
    seconds = hydrate(local, q_all.id, rows, 2)
    avg_row = (big.bytes_held - avg_row) / args.rows
    hydration_rate = args.rows / seconds

    covered = bind(table("issue").where(col("project_id") == 1, col("status") == "todo",
                                        col("priority") >= 2)
                   .order_by("modified", desc=True).limit(50).build(), SCHEMA)
    assert local.index.covers(covered, local.rows).covered
    covered_us = time_each(lambda: local.run(covered), repeat=200)
    con = local.store.con
    select1_us = time_each(lambda: con.execute("SELECT 1").fetchall(), repeat=200)

    # 3: --load-mb of rows as 100 queries under --budget-mb.
    budget = Budget(args.budget_mb * 2**20)
    lim = LocalState(SCHEMA, LocalStore(SCHEMA), budget)
    per_query = 3000
    n_queries = max(1, int(args.load_mb * 2**20 / (avg_row * per_query)))
    max_store = 0
    next_id = 0
    for qn in range(n_queries):
        q = bind(table("issue").where(col("project_id") == 1000 + qn).build(), SCHEMA)
        lim.add_desired(q, q.id, pinned=True, ttl=None)
        qrows = [make_row(next_id + i, texts, 1000 + qn) for i in range(per_query)]
        next_id += per_query
        hydrate(lim, q.id, qrows, 3 + qn)
        budget.unpin(q.id)  # the app moved on: the query stays cached but inactive
        max_store = max(max_store, budget.bytes_held)
        assert budget.bytes_held <= budget.budget_bytes
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    report(
        "client",
        scenario="local store: covered query over a 100k-row cache, poke hydration, "
        f"{args.load_mb} MB of rows under a {args.budget_mb} MB budget",
        parameters={"rows": args.rows, "load_mb": args.load_mb, "budget_mb": args.budget_mb,
                    "avg_row_bytes": round(avg_row), "queries_loaded": n_queries,
                    "hydration_path": "in-process pokes (JSON decode + Arrow batch apply)",
                    "react_issues": REACT.exists()},
        metrics={
            "covered_query_p50_ms": Metric(percentile(covered_us, 50) / 1000, "ms"),
            "covered_query_p99_ms": Metric(percentile(covered_us, 99) / 1000, "ms"),
            "hydration_rows_per_s": Metric(hydration_rate, "rows/s"),
            "max_store_bytes": Metric(max_store, "bytes"),
            "budget_bytes": Metric(budget.budget_bytes, "bytes"),
            "loaded_bytes": Metric(n_queries * per_query * avg_row, "bytes"),
            "rss_mb": Metric(rss_mb, "MB"),
        },
        baseline={"select1_p50_ms": Metric(percentile(select1_us, 50) / 1000, "ms")},
    )
    # The harness keeps baselines apart; the issue wants the floor among the metrics too.
    path = ROOT / "bench" / "results" / "client.json"
    doc = json.loads(path.read_text())
    doc["metrics"]["select1_p50_ms"] = doc["baseline"]["select1_p50_ms"]
    path.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
