"""Applying a big server version runs on the worker thread: the event loop keeps running."""

from __future__ import annotations

import asyncio

from cache import Client
from queryplanner import Schema, bind, col, table
from queryplanner.protocol import Poke
from server.testing import issue

from ._live import run


def test_a_big_poke_does_not_freeze_the_event_loop(demo_schema: Schema) -> None:
    q = bind(table("issue").where(col("project_id") == 1).build(), demo_schema)
    rows = [{**issue(i, description="x" * 800), "_v": 2} for i in range(1, 30_001)]

    async def body() -> None:
        client = Client("http://127.0.0.1:9", demo_schema)  # never started: no network
        with client.local.lock:
            client.local.add_desired(q, q.id, pinned=True, ttl=None)
        ticks = 0
        applying = True

        async def ticker() -> None:
            nonlocal ticks
            while applying:
                ticks += 1
                await asyncio.sleep(0.002)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        await client._on_poke(Poke(2, {"issue": rows}, {}, {q.id: 2}), "2.1.test")
        applying = False
        await task
        # The loop ran while the worker applied 30k rows (well over 100 ms on this machine).
        assert ticks - before >= 3, ticks - before
        with client.local.lock:
            assert client.store.count("issue") == 30_000
            assert client.local.desired[q.id].complete_at == 2
        await client.close()

    run(body)
