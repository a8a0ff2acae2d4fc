"""The outbox when the server refuses a request (not a mutation's outcome, the whole POST):
refused mutations settle as rejected and are rolled back, gaps are renumbered from the
server's last id, transient failures retry with backoff; against real servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cache import Client, MutationRejected
from cache.errors import ServerError
from cache.writes import classify, next_batch, renumbering
from queryplanner import Schema, col, table
from queryplanner.protocol import MutationResult
from server import ServerOptions, create_app
from server.testing import RunningServer, db_rows, issue, serve_app

from ._live import Recorder, client_for, ids, locked, online, run, seed, until

OPEN = table("issue").where(col("status") == "open").order_by("id").build()
Scope = MutableMapping[str, Any]
Asgi = Callable[[Scope, Any, Any], Awaitable[None]]


def outbox_ids(client: Client) -> list[int]:
    return [m["id"] for m in locked(client, client.store.outbox)]


async def drained(client: Client) -> None:
    """The outbox leaves with the HTTP answer, which may come after the poke that resolved
    the future."""
    await until(lambda: outbox_ids(client) == [], "the outbox to drain")


def processed(srv: RunningServer, client: Client) -> list[tuple[int, str]]:
    """The server's record of this client's mutations (DuckDB, the oracle)."""
    return [
        (int(i), s)
        for i, s in db_rows(
            srv,
            "SELECT id, status FROM _qs_mutation WHERE client_id = ? ORDER BY id",
            [client.client_id],
        )
    ]


async def settled(fut: asyncio.Future[MutationResult]) -> MutationResult | MutationRejected:
    try:
        return await asyncio.wait_for(fut, 10)
    except MutationRejected as exc:
        return exc


def test_a_refused_write_rejects_reverts_empties_the_outbox_and_a_later_write_applies_once(
    demo_schema: Schema, tmp_path: Path
) -> None:
    """Regression: a 400 for a malformed mutation was only logged; the batch was re-sent
    forever, its future never resolved and the optimistic change never rolled back."""
    store = str(tmp_path / "client.duckdb")

    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            seed(srv.url).close()
            client = client_for(srv.url, demo_schema, path=store)
            await client.start()
            rec = Recorder(client.subscribe(OPEN))
            before = (await rec.complete()).rows
            typo = {"op": "update", "table": "issue", "key": [1], "set": {"status": "done"}}
            fut = client.mutate({**typo, "ifversion": 3})  # a typo of ifVersion
            assert ids(rec.last) == [2, 3, 4, 5, 6]  # optimistic
            with pytest.raises(MutationRejected) as info:
                await asyncio.wait_for(fut, 10)
            assert "'ifversion'" in info.value.reason and info.value.mutation_id == 1
            await rec.matching(lambda s: s.rows == before, "the rollback")
            assert outbox_ids(client) == [] and client.local.pending == []
            assert processed(srv, client) == []

            good = await asyncio.wait_for(client.update("issue", [2], {"status": "done"}), 10)
            # Id 1 was never processed, so the write sent as 2 met a gap and became 1.
            assert good.status == "applied" and good.id == 1
            await rec.matching(lambda s: ids(s) == [1, 3, 4, 5, 6], "the good write")
            await until(lambda: client.local.pending == [], "the pending layer to settle")
            await drained(client)
            await client.close()

            # The persisted outbox agrees: a restart sends nothing again.
            again = client_for(srv.url, demo_schema, path=store)
            assert outbox_ids(again) == [] and again.local.pending == []
            await again.start()
            await online(again)
            nxt = await asyncio.wait_for(again.update("issue", [3], {"title": "x"}), 10)
            assert nxt.id == 2
            await again.close()
            assert processed(srv, client) == [(1, "applied"), (2, "applied")]
            assert db_rows(srv, "SELECT id FROM issue WHERE status = 'done'") == [(2,)]

    run(body)


def test_only_the_malformed_mutation_of_a_batch_is_refused(demo_schema: Schema) -> None:
    """The 400 names ``mutations[i]``: only that one is rejected; the others, never judged,
    are sent again (renumbered past the hole) and each applies exactly once."""

    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        with serve_app(app) as srv:
            seed(srv.url).close()
            client = client_for(srv.url, demo_schema)
            rec = Recorder(client.subscribe(OPEN))
            # Written before the client starts: the outbox goes out as one batch [1, 2, 3, 4].
            futs = [
                client.insert("issue", issue(100, title="new")),
                client.mutate(
                    {"op": "frobnicate", "table": "issue", "key": [3], "set": {"status": "x"}}
                ),
                client.update("issue", [100], {"title": "edited"}),
                client.update("issue", [4], {"status": "done"}),
            ]
            assert outbox_ids(client) == [1, 2, 3, 4]
            await client.start()
            outcomes = [await settled(f) for f in futs]
            rejected = outcomes[1]
            assert isinstance(rejected, MutationRejected) and "'frobnicate'" in rejected.reason
            applied = [o for i, o in enumerate(outcomes) if i != 1]
            assert all(isinstance(o, MutationResult) and o.status == "applied" for o in applied)
            assert [o.id for o in applied if isinstance(o, MutationResult)] == [1, 2, 3]
            assert processed(srv, client) == [(1, "applied"), (2, "applied"), (3, "applied")]
            oracle = [r[0] for r in db_rows(srv, "SELECT id FROM issue WHERE status = 'open'")]
            assert sorted(oracle) == [1, 2, 3, 5, 6, 100]
            await rec.matching(lambda s: ids(s) == sorted(oracle), "the server's rows")
            assert db_rows(srv, "SELECT title FROM issue WHERE id = 100") == [("edited",)]
            await drained(client)
            await client.close()

    run(body)


def test_a_mutation_too_large_for_the_server_is_refused_and_the_rest_applied(
    demo_schema: Schema,
) -> None:
    """413 for a batch splits it; 413 for one mutation refuses that one."""
    big = "x" * 20_000

    async def body() -> None:
        app = create_app(demo_schema, anonymous=True, options=ServerOptions(max_body_bytes=16_384))
        with serve_app(app) as srv:
            seed(srv.url).close()
            client = client_for(srv.url, demo_schema)
            futs = [
                client.update("issue", [1], {"title": "one"}),
                client.update("issue", [2], {"description": big}),
                client.update("issue", [3], {"title": "three"}),
            ]
            await client.start()
            first, huge, last = [await settled(f) for f in futs]
            assert isinstance(huge, MutationRejected) and "16384" in huge.reason
            assert isinstance(first, MutationResult) and first.status == "applied"
            assert isinstance(last, MutationResult) and last.status == "applied"
            assert processed(srv, client) == [(1, "applied"), (2, "applied")]
            assert db_rows(srv, "SELECT id, title, description FROM issue WHERE id <= 3") == [
                (1, "one", None),
                (2, "issue 2", None),
                (3, "three", None),
            ]
            await until(lambda: client.local.pending == [], "the pending layer to settle")
            await client.close()

    run(body)


def test_a_gap_after_the_server_lost_its_record_is_renumbered_and_applied_once(
    demo_schema: Schema, tmp_path: Path
) -> None:
    """A client whose ids ran ahead (its writes went to another database) meets a gap: the
    server never saw the outbox, so it is renumbered from ``lastMutationId`` and applied."""
    store = str(tmp_path / "client.duckdb")

    async def body() -> None:
        with serve_app(create_app(demo_schema, anonymous=True)) as first:
            seed(first.url).close()
            client = client_for(first.url, demo_schema, path=store)
            await client.start()
            for i in (1, 2):
                await asyncio.wait_for(client.update("issue", [i], {"title": "old db"}), 10)
            await drained(client)
            await client.close()
        with serve_app(create_app(demo_schema, anonymous=True)) as srv:
            seed(srv.url).close()
            client = client_for(srv.url, demo_schema, path=store)
            fut = client.update("issue", [5], {"status": "done"})
            assert outbox_ids(client) == [3]
            await client.start()
            result = await asyncio.wait_for(fut, 10)
            assert result.status == "applied" and result.id == 1
            assert processed(srv, client) == [(1, "applied")]
            assert db_rows(srv, "SELECT id FROM issue WHERE status = 'done'") == [(5,)]
            await drained(client)
            assert locked(client, client.store.get_meta, "next_mutation_id") == "2"
            await client.close()

    run(body)


@dataclass
class Gate:
    left: int = 0  # how many more POST /mutate to refuse with 503
    attempts: int = 0  # POST /mutate seen


class FailFirst:
    """ASGI middleware in front of the real app: refuses ``gate.left`` more ``POST /mutate``
    with a 503 ``overloaded`` answer (the protocol's body), then passes them through."""

    def __init__(self, app: Asgi, gate: Gate) -> None:
        self.app, self.gate = app, gate

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/mutate":
            self.gate.attempts += 1
            if self.gate.left > 0:
                self.gate.left -= 1
                start = {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json")],
                }
                await send(start)
                body = b'{"error": {"code": "overloaded", "message": "Busy; retry."}}'
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def test_transient_failures_keep_the_outbox_and_retry_with_a_bounded_backoff(
    demo_schema: Schema,
) -> None:
    async def body() -> None:
        app = create_app(demo_schema, anonymous=True)
        gate = Gate()
        app.add_middleware(FailFirst, gate=gate)  # type: ignore[arg-type]
        with serve_app(app) as srv:
            seed(srv.url).close()
            gate.left, gate.attempts = 3, 0
            delays: list[float] = []

            async def sleep(seconds: float) -> None:
                delays.append(seconds)
                await asyncio.sleep(seconds)

            client = Client(srv.url, demo_schema, backoff_base=0.02, backoff_cap=0.1, sleep=sleep)
            await client.start()
            await online(client)
            fut = client.update("issue", [1], {"status": "done"})
            await until(lambda: gate.attempts >= 2, "a second attempt")
            assert outbox_ids(client) == [1] and not fut.done()  # kept while failing
            result = await asyncio.wait_for(fut, 10)
            assert result.status == "applied" and result.id == 1
            assert gate.attempts == 4
            assert len(delays) == 3 and all(0 <= d <= 0.1 for d in delays)
            assert processed(srv, client) == [(1, "applied")]
            await drained(client)
            await client.close()

    run(body)


# -- the pure decisions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids_", "last", "moves"),
    [
        ([3, 4], 0, {3: 1, 4: 2}),  # the server lost its record: everything from 1
        ([1, 2], 0, {}),  # nothing to do
        ([5, 6, 8], 6, {8: 7}),  # 5 and 6 were processed (resent: replays), 8 was never seen
        ([5, 6, 8, 9], 4, {8: 7, 9: 8}),  # a hole after a refused mutation
        ([2, 3], 10, {}),  # all processed: only replays
    ],
)
def test_renumbering(ids_: list[int], last: int, moves: dict[int, int]) -> None:
    assert renumbering(ids_, last) == moves


def test_next_batch_is_the_first_run_of_consecutive_ids() -> None:
    outbox = [{"id": i} for i in (4, 5, 6, 9, 10)]
    assert [m["id"] for m in next_batch(outbox, 500)] == [4, 5, 6]
    assert [m["id"] for m in next_batch(outbox, 2)] == [4, 5]
    assert next_batch([], 5) == []


@pytest.mark.parametrize(
    ("status", "code", "extra", "kind", "ids_", "last"),
    [
        (400, "bad_request", {"field": "mutations[1].op"}, "reject", (8,), 0),
        (400, "bad_request", {"field": "mutations"}, "reject", (7, 8, 9), 0),
        (422, "invalid_row", {}, "reject", (7, 8, 9), 0),
        (409, "mutation_order", {"expected": 3, "lastMutationId": 2}, "renumber", (), 2),
        (409, "mutation_order", {"expected": 3}, "renumber", (), 2),
        (413, "too_large", {}, "split", (), 0),
        (503, "overloaded", {}, "retry", (), 0),
        (500, "internal", {}, "retry", (), 0),
        (401, "unauthorized", {}, "hold", (), 0),
        (404, "not_found", {}, "hold", (), 0),
    ],
)
def test_classify(
    status: int, code: str, extra: dict[str, Any], kind: str, ids_: tuple[int, ...], last: int
) -> None:
    batch = [{"id": i} for i in (7, 8, 9)]
    step = classify(ServerError(status, code, "why", extra), batch)
    assert (step.kind, step.ids, step.last) == (kind, ids_, last)
    if kind == "reject":
        assert step.reason == "why"
