"""``POST /query`` with ``live``: a new ``result`` after each commit that changes the result,
woken by the commit itself (no polling), nothing for commits that cannot change it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import httpx
import orjson
from httpx_sse import connect_sse

from queryplanner import Schema
from server.testing import Api, RunningServer, issue

COUNT = {"table": "issue",
         "aggregate": {"groupBy": ["status"], "measures": {"n": {"fn": "count"}}}}


class _Live:
    def __init__(self, url: str, query: dict[str, Any]) -> None:
        self.results: list[tuple[float, dict[str, Any]]] = []
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.client = httpx.Client(base_url=url, timeout=httpx.Timeout(30, connect=5))
        self.thread = threading.Thread(target=self._run, args=(query,), daemon=True)
        self.thread.start()

    def _run(self, query: dict[str, Any]) -> None:
        body = {"schemaVersion": 1, "query": query, "live": True}
        try:
            with connect_sse(self.client, "POST", "/query", json=body) as es:
                stream = es.response.extensions.get("network_stream")
                self.socket = stream.get_extra_info("socket") if stream is not None else None
                for sse in es.iter_sse():
                    if self.stop.is_set():
                        return
                    if sse.event == "result":
                        with self.cond:
                            self.results.append((time.monotonic(), orjson.loads(sse.data)))
                            self.cond.notify_all()
        except httpx.HTTPError:
            pass

    def wait(self, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.results) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"only {len(self.results)} results"
                self.cond.wait(left)

    socket: Any = None

    def close(self) -> None:
        """Drop the connection (a blocked read does not notice a closed client)."""
        self.stop.set()
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.shutdown(socket.SHUT_RDWR)
        self.client.close()
        self.thread.join(timeout=10)


def _counts(result: dict[str, Any]) -> dict[str, int]:
    return {r["status"]: r["n"] for r in result["rows"]}


def test_live_query_follows_commits(server: RunningServer, demo_schema: Schema) -> None:
    api = Api(server.url, "live-offload-writer")
    live = _Live(server.url, COUNT)
    try:
        live.wait(1)
        assert _counts(live.results[0][1]) == {"open": 6}
        assert server.sync.commits.live == 1
        for k in range(3):
            t0 = time.monotonic()
            out = api.mutate({"op": "insert", "table": "issue",
                              "row": issue(50 + k, status="done")})
            live.wait(2 + k)
            arrived, result = live.results[-1]
            assert result["version"] >= out["version"]
            assert _counts(result) == {"open": 6, "done": k + 1}
            assert arrived - t0 < 5
        # A commit to a table the query does not read, and one that does not change the
        # result, send nothing.
        api.mutate({"op": "update", "table": "label", "key": [1], "set": {"color": "blue"}})
        api.mutate({"op": "update", "table": "issue", "key": [1], "set": {"title": "same n"}})
        out = api.mutate({"op": "update", "table": "issue", "key": [2],
                          "set": {"status": "done"}})
        live.wait(5)
        assert len(live.results) == 5
        assert live.results[-1][1]["version"] == out["version"]
    finally:
        live.close()
        api.close()
    deadline = time.monotonic() + 10
    while server.sync.commits.live and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.sync.commits.live == 0
