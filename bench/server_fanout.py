"""Fan-out of live changes: 100 SSE clients x 10 live queries while 200 writes/s commit.

    python bench/server_fanout.py [--clients 100] [--seconds 20] [--writes-per-s 200] [--rerun]

The sync server runs in its own process (so its CPU can be read from /proc); the clients and the
writer run here on asyncio with httpx / httpx-sse. Each client desires 10 of 20 distinct live
queries (issues of one project that are open, by priority, limit 50), so subscriptions are
shared. Four writer clients in a third process commit 40 batches/s of 5 row updates in total
(status, priority, title of random issues) through ``POST /mutate``.

Write-to-client latency = for each poke and each write whose rows it puts (a row's ``_v`` newer
than the client's previous poke; rows refilled into a window keep their older ``_v``), the
poke's arrival minus the send time of that write's POST (the oldest, when several writers'
batches committed under one version). Baseline, same run, same clients:
a raw sse-starlette app that streams one pre-encoded event of the same size as an average poke
as fast as the connections take it — the fan-out ceiling. ``delivered_ratio`` is our delivered
events/s over that ceiling. At 200 writes/s the workload itself bounds it: a commit changes the
queries of ~60% of the clients (``pokes_per_client_version``), so at most ``versions/s x clients
x that`` events exist to deliver. A saturation phase follows (writers offer far more than the
server commits, closed loop): ``saturated_events_per_s`` is what the server can deliver.

``delivered_of_offered``: every poke the clients received over the run against every poke the
server handed to their outboxes (the server counts them): what share of the events the workload
offers reaches a client.

The server reports its share of the latency (``server_commit_to_send_*``: a step's oldest
commit to its pokes handed to the event loop) when it stops; the writers report their POST
round trips. ``--rerun`` serves with the re-run maintainer (``server_fanout_rerun.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
from httpx_sse import aconnect_sse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Metric, percentile, report

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = ROOT / "server" / "demo" / "schema.json"
PROJECTS = 20
ISSUES = 5000
STATUSES = ("open", "in_progress", "done")
WRITERS = 4  # concurrent writer clients (each one's mutation ids are sequential)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed(db: Path) -> None:
    from queryplanner import Schema
    from queryplanner.sql import create_table_sql

    schema = Schema.load(SCHEMA_PATH)
    con = duckdb.connect(str(db))
    for ddl in create_table_sql(schema, version_column="_v"):
        con.execute(ddl)
    con.execute("INSERT INTO team VALUES (1, 'ENG', 'Engineering', 0)")
    con.execute(
        f"INSERT INTO project SELECT i, 1, 'p' || i, 0 FROM range(1, {PROJECTS + 1}) t(i)"
    )
    con.execute("INSERT INTO \"user\" SELECT i, 'u' || i, NULL, 0 FROM range(1, 11) t(i)")
    con.execute(
        f"""INSERT INTO issue SELECT i, 1 + i % {PROJECTS}, 'issue ' || i, NULL,
            ['open', 'in_progress', 'done'][1 + i % 3], i % 4, NULL, 1 + i % 10, 'public', NULL,
            i::DOUBLE, TIMESTAMP '2026-01-01', TIMESTAMP '2026-01-01', 0
            FROM range(1, {ISSUES + 1}) t(i)"""
    )
    con.close()


# -- the server processes ------------------------------------------------------------------


def _serve_sync(port: int, db: str, out: str, incremental: bool) -> None:
    import uvicorn

    from queryplanner import Schema
    from server import create_app

    app = create_app(
        Schema.load(SCHEMA_PATH), db_path=db, anonymous=True, incremental=incremental
    )

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(0)

    # uvicorn re-raises the SIGTERM it caught once it has shut down gracefully; this handler
    # (restored by then) turns it into SystemExit, so the stats below are still written.
    signal.signal(signal.SIGTERM, stop)
    try:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    finally:
        # The server's share of the latency: commit to pokes handed to the event loop.
        engine = app.state.sync.engine
        Path(out).write_bytes(
            orjson.dumps({"send_ms": list(engine.send_ms), "steps": engine.steps,
                          "pokes_sent": engine.pokes_sent})
        )


def _serve_raw(port: int, size: int) -> None:
    import uvicorn
    from sse_starlette import EventSourceResponse, ServerSentEvent
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    payload = orjson.dumps({"version": 1, "put": {"issue": [{"x": "y" * max(size - 40, 1)}]}})
    data = payload.decode()

    async def sync(request: Request) -> EventSourceResponse:
        async def events() -> Any:
            n = 0
            while True:
                n += 1
                yield ServerSentEvent(data=data, event="poke", id=str(n))
                await asyncio.sleep(0)  # let other connections and disconnects run

        return EventSourceResponse(events(), ping=15)

    uvicorn.run(Starlette(routes=[Route("/sync", sync)]), host="127.0.0.1", port=port,
                log_level="warning")


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT)


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server process exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _log(msg: str) -> None:
    print(f"[server_fanout] {msg}", file=sys.stderr, flush=True)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- clients -------------------------------------------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0
        self.received = 0  # every poke, measuring or not (delivered / offered)
        self.seen: list[tuple[int, float]] = []  # (version of a write, arrival of its rows)
        self.measuring = False

    def latencies_ms(self, sent_at: dict[int, float]) -> list[float]:
        """Per poke and per write it delivers: arrival minus the write's POST send time."""
        return [(arrived - sent_at[v]) * 1000 for v, arrived in self.seen if v in sent_at]


async def _client(url: str, cid: str, stats: Stats, stop: asyncio.Event, ours: bool) -> None:
    last_version = None
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(None, connect=10)) as c:
        params = {"clientId": cid, "schemaVersion": "1"}
        async with aconnect_sse(c, "GET", "/sync", params=params) as es:
            async for sse in es.aiter_sse():
                if stop.is_set():
                    return
                if sse.event != "poke":
                    continue
                stats.received += 1
                now = time.monotonic()
                if not stats.measuring:
                    if ours:
                        last_version = orjson.loads(sse.data)["version"]
                    continue
                stats.events += 1
                stats.bytes += len(sse.data)
                if ours:
                    poke = orjson.loads(sse.data)
                    version = poke["version"]
                    # The writes this poke delivers: rows it puts that changed after the
                    # client's previous poke (rows refilled into a window keep an older _v).
                    fresh = {
                        row["_v"]
                        for rows in poke["put"].values()
                        for row in rows
                        if last_version is None or row["_v"] > last_version
                    }
                    stats.seen.extend((v, now) for v in fresh)
                    last_version = version


async def _add_queries(url: str, clients: int, schema: Any) -> None:
    from queryplanner import parse_query, query_id

    docs = [
        {"table": "issue", "where": {"and": [
            {"column": "project_id", "op": "=", "value": p},
            {"column": "status", "op": "=", "value": "open"}]},
         "orderBy": [["priority", "desc"]], "limit": 50}
        for p in range(1, PROJECTS + 1)
    ]
    ids = [query_id(parse_query(d, schema)) for d in docs]
    rng = random.Random(7)
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        for i in range(clients):
            pick = rng.sample(range(PROJECTS), 10)
            body = {"clientId": f"bench-client-{i:04d}", "schemaVersion": 1,
                    "add": [{"id": ids[k], "query": docs[k], "ttl": 600} for k in pick]}
            r = await c.post("/queries", json=body)
            r.raise_for_status()


async def _writer(
    url: str, rate: int, seconds: float, writer: int, sent_at: dict[int, float],
    rtt_ms: list[float],
) -> int:
    """One writer client: batches of 5 row updates at ``rate`` rows/s for ``seconds``."""
    rng = random.Random(11 + writer)
    per_batch = 5
    interval = per_batch / rate
    next_id = 1
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        start = time.monotonic()
        k = 0
        while time.monotonic() - start < seconds:
            muts = []
            for _ in range(per_batch):
                muts.append({"id": next_id, "op": "update", "table": "issue",
                             "key": [rng.randint(1, ISSUES)],
                             "set": {"status": rng.choice(STATUSES), "priority": rng.randint(0, 3),
                                     "title": f"t{writer}-{next_id}"}})
                next_id += 1
            t0 = time.monotonic()
            r = await c.post("/mutate", json={"clientId": f"bench-writer-{writer:04d}",
                                              "schemaVersion": 1, "mutations": muts})
            r.raise_for_status()
            rtt_ms.append((time.monotonic() - t0) * 1000)
            version = r.json()["version"]
            # Batches of several writers may commit under one version: keep the oldest send.
            sent_at[version] = min(t0, sent_at.get(version, t0))
            k += 1
            delay = start + k * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    return next_id - 1


def _write_process(url: str, rate: int, seconds: float, out: str) -> None:
    """The writers run in their own process, so the SSE clients do not slow the writes down."""
    sent_at: dict[int, float] = {}
    rtt_ms: list[float] = []

    async def run() -> list[int]:
        return await asyncio.gather(
            *(_writer(url, rate // WRITERS, seconds, w, sent_at, rtt_ms) for w in range(WRITERS))
        )

    t0 = time.monotonic()
    rows = sum(asyncio.run(run()))
    Path(out).write_bytes(orjson.dumps(
        {"sent_at": {str(k): v for k, v in sent_at.items()}, "rows": rows,
         "elapsed": time.monotonic() - t0, "rtt_ms": rtt_ms}
    ))


async def _run_ours(
    url: str, clients: int, seconds: float, rate: int, pid: int, saturate: int
) -> dict[str, Any]:
    from queryplanner import Schema

    await _add_queries(url, clients, Schema.load(SCHEMA_PATH))
    _log("queries added; connecting clients")
    stats = Stats()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_client(url, f"bench-client-{i:04d}", stats, stop, True))
             for i in range(clients)]
    await asyncio.sleep(3)  # connect and hydrate
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"qs-fanout-writes-{os.getpid()}.json"
    writer = _spawn(["--writer", url, str(rate), str(seconds + 2), str(out)])
    await asyncio.sleep(1)
    stats.measuring = True
    _log("measuring")
    cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    stats.measuring = False
    cpu1, t1 = _cpu_seconds(pid), time.perf_counter()
    await asyncio.to_thread(writer.wait, 60)
    events, seen = stats.events, list(stats.seen)
    # Saturation: the same clients while the writers offer far more than the server commits,
    # so every step touches most clients: the delivered events/s the server can sustain.
    sat_out = out.with_name(out.name + ".sat")
    writer = _spawn(["--writer", url, str(saturate), "10", str(sat_out)])
    await asyncio.sleep(2)
    stats.measuring = True
    cpu2, t2 = _cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(6)
    stats.measuring = False
    cpu3, t3 = _cpu_seconds(pid), time.perf_counter()
    await asyncio.to_thread(writer.wait, 60)
    sat_events = stats.events - events
    sat_out.unlink(missing_ok=True)
    stats.events, stats.seen = events, seen
    await asyncio.sleep(3)  # the last pokes drain before the count of received ones is final
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=10)
    written = orjson.loads(out.read_bytes())
    out.unlink(missing_ok=True)
    sent_at = {int(k): v for k, v in written["sent_at"].items()}
    return {"saturated_events_per_s": sat_events / (t3 - t2),
            "saturated_cpu": (cpu3 - cpu2) / (t3 - t2),
            "stats": stats, "elapsed": t1 - t0, "cpu": (cpu1 - cpu0) / (t1 - t0),
            "writes_per_s": written["rows"] / written["elapsed"],
            "versions": len(sent_at), "write_seconds": written["elapsed"],
            "rtt_ms": written["rtt_ms"], "latencies": stats.latencies_ms(sent_at)}


async def _run_raw(url: str, clients: int, seconds: float) -> Stats:
    stats = Stats()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_client(url, f"raw-client-{i:04d}", stats, stop, False))
             for i in range(clients)]
    await asyncio.sleep(2)
    stats.measuring = True
    await asyncio.sleep(seconds)
    stats.measuring = False
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=10)
    return stats


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--writes-per-s", type=int, default=200)
    p.add_argument("--saturate-writes-per-s", type=int, default=2000,
                   help="offered rate of the saturation phase (more than the server commits)")
    p.add_argument("--rerun", action="store_true",
                   help="serve with the re-run maintainer (the previous live-change path)")
    p.add_argument("--serve", nargs=4, metavar=("PORT", "DB", "OUT", "INCREMENTAL"))
    p.add_argument("--raw", nargs=2, metavar=("PORT", "SIZE"))
    p.add_argument("--writer", nargs=4, metavar=("URL", "RATE", "SECONDS", "OUT"))
    args = p.parse_args()
    if args.serve:
        _serve_sync(int(args.serve[0]), args.serve[1], args.serve[2], args.serve[3] == "1")
        return
    if args.writer:
        _write_process(args.writer[0], int(args.writer[1]), float(args.writer[2]), args.writer[3])
        return
    if args.raw:
        _serve_raw(int(args.raw[0]), int(args.raw[1]))
        return

    load_before = os.getloadavg()[0]
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"qs-fanout-{os.getpid()}.duckdb"
    tmp.unlink(missing_ok=True)
    _seed(tmp)
    port = _free_port()
    server_out = tmp.with_suffix(".json")
    proc = _spawn(["--serve", str(port), str(tmp), str(server_out), "0" if args.rerun else "1"])
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url + "/schema", proc)
        ours = asyncio.run(_run_ours(url, args.clients, args.seconds, args.writes_per_s,
                                     proc.pid, args.saturate_writes_per_s))
    finally:
        _stop(proc)
        tmp.unlink(missing_ok=True)
    served = orjson.loads(server_out.read_bytes()) if server_out.exists() else {}
    server_out.unlink(missing_ok=True)
    send_ms = served.get("send_ms") or [float("nan")]
    stats: Stats = ours["stats"]
    avg_size = int(stats.bytes / stats.events) if stats.events else 200
    _log(f"sync run done: {stats.events} events; raw ceiling next")
    raw_port = _free_port()
    raw = _spawn(["--raw", str(raw_port), str(avg_size)])
    try:
        _wait_up(f"http://127.0.0.1:{raw_port}/nothing", raw)
        raw_stats = asyncio.run(_run_raw(f"http://127.0.0.1:{raw_port}", args.clients, 8))
    finally:
        _stop(raw)
    events_per_s = stats.events / ours["elapsed"]
    ceiling = raw_stats.events / 8
    lat = ours["latencies"] or [float("nan")]
    rtt = ours["rtt_ms"] or [float("nan")]
    versions_per_s = ours["versions"] / ours["write_seconds"]
    report(
        "server_fanout_rerun" if args.rerun else "server_fanout",
        scenario=(
            f"{args.clients} SSE clients x 10 live queries (20 distinct, shared), "
            f"{args.writes_per_s} row updates/s in batches of 5, loopback, server in its own "
            "process"
        ),
        parameters={"clients": args.clients, "queries_per_client": 10,
                    "distinct_queries": PROJECTS, "writes_per_s": args.writes_per_s,
                    "seconds": args.seconds, "issues": ISSUES, "avg_poke_bytes": avg_size,
                    "maintainer": "rerun" if args.rerun else "incremental",
                    "saturate_writes_per_s": args.saturate_writes_per_s,
                    "load_avg_1m_before": round(load_before, 2),
                    "load_avg_1m_after": round(os.getloadavg()[0], 2)},
        metrics={
            "latency_p50_ms": Metric(percentile(lat, 50), "ms"),
            "latency_p99_ms": Metric(percentile(lat, 99), "ms"),
            "latency_mean_ms": Metric(statistics.fmean(lat), "ms"),
            "events_per_s": Metric(events_per_s, "events/s"),
            "raw_ceiling_events_per_s": Metric(ceiling, "events/s"),
            "delivered_ratio": Metric(events_per_s / ceiling if ceiling else 0.0, "ratio"),
            "writes_committed_per_s": Metric(ours["writes_per_s"], "rows/s"),
            "server_cpu_cores": Metric(ours["cpu"], "cores"),
            # The server's share: commit of a step's oldest batch -> pokes handed to the loop.
            "server_commit_to_send_p50_ms": Metric(percentile(send_ms, 50), "ms"),
            "server_commit_to_send_p99_ms": Metric(percentile(send_ms, 99), "ms"),
            "write_rtt_p50_ms": Metric(percentile(rtt, 50), "ms"),
            "write_rtt_p99_ms": Metric(percentile(rtt, 99), "ms"),
            "versions_per_s": Metric(versions_per_s, "versions/s"),
            # Saturation phase (writers offer --saturate-writes-per-s): the server's capacity.
            "saturated_events_per_s": Metric(ours["saturated_events_per_s"], "events/s"),
            "saturated_delivered_ratio": Metric(
                ours["saturated_events_per_s"] / ceiling if ceiling else 0.0, "ratio"
            ),
            "saturated_server_cpu_cores": Metric(ours["saturated_cpu"], "cores"),
            # Of the pokes the commits could cause (one per client per version), the share the
            # workload's changes make: what bounds events_per_s whatever the server's speed.
            # Every poke the server handed to an outbox over the whole run (hydration, both
            # phases) against every poke the clients received: the share of the offered
            # events that reached a client.
            "delivered_of_offered": Metric(
                stats.received / served["pokes_sent"] if served.get("pokes_sent") else 0.0,
                "ratio",
            ),
            "pokes_per_client_version": Metric(
                events_per_s / (versions_per_s * args.clients) if versions_per_s else 0.0, "ratio"
            ),
        },
        baseline={"raw_sse_starlette_events_per_s": Metric(ceiling, "events/s")},
    )


if __name__ == "__main__":
    main()
