"""A new stream gets its hello while another client's hydration is under way.

Regression: the engine built every command of a step before handing anything to the event
loop, so a second client's hello waited for the first client's hydrations (in the browser the
second tab stayed "connecting"). Streams opened one after another and at the same time, by
different clients, must all get hello and their own rows while the first one still hydrates.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from queryplanner import Schema
from server import create_app
from server.testing import Api, StreamReader, completed, issue, seed_mutations, serve_app

N_ISSUES = 2_000
# Distinct subscriptions of the first client, each hydrating every issue with its children.
HEAVY: list[dict[str, Any]] = [
    {
        "table": "issue",
        "where": {"column": "priority", "op": ">=", "value": p},
        "related": {"labels": {}, "comments": {}, "assignee": {}},
    }
    for p in range(-6, 0)
]
SMALL: dict[str, Any] = {"table": "label"}
KEYS = {"issue_label": ("issue_id", "label_id")}


def _seed(api: Api) -> None:
    api.mutate(*seed_mutations())
    rows = [("issue", issue(i)) for i in range(7, N_ISSUES + 1)]
    rows += [("issue_label", {"issue_id": i, "label_id": 1}) for i in range(2, N_ISSUES + 1)]
    muts = [{"op": "insert", "table": t, "row": r} for t, r in rows]
    for k in range(0, len(muts), 1000):
        api.mutate(*muts[k : k + 1000])


def _hello_at(reader: StreamReader, timeout: float) -> float:
    reader.wait_for(lambda evs: any(e.name == "hello" for e in evs), timeout=timeout)
    return time.monotonic()


def test_streams_opened_during_a_hydration_get_hello(demo_schema: Schema) -> None:
    app = create_app(demo_schema, anonymous=True)
    with serve_app(app) as running:
        api = Api(running.url)
        _seed(api)
        first = StreamReader(running.url, "client-first", keys=KEYS)
        readers = [first]
        try:
            _hello_at(first, 10)
            heavy = Api(running.url, "client-first")
            qids = [heavy.add_query(demo_schema, q) for q in HEAVY]
            heavy.close()
            # In sequence: a second client while the first hydrates.
            second = StreamReader(running.url, "client-second")
            readers.append(second)
            _hello_at(second, 10)
            # The first client's hydrations (one step) are not over yet: the hello did not
            # wait for them.
            assert not set(qids) <= completed(first.events)
            # At the same time: two more clients, each opening a stream and adding a query.
            hellos: dict[str, float] = {}
            errors: list[BaseException] = []

            def open_one(cid: str) -> None:
                try:
                    r = StreamReader(running.url, cid)
                    readers.append(r)
                    hellos[cid] = _hello_at(r, 10)
                    a = Api(running.url, cid)
                    qid = a.add_query(demo_schema, SMALL)
                    a.close()
                    r.wait_for(lambda evs: qid in completed(evs), timeout=60)
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)

            others = ("client-third", "client-fourth")
            threads = [threading.Thread(target=open_one, args=(c,)) for c in others]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=90)
            assert not errors, errors
            assert set(hellos) == {"client-third", "client-fourth"}
            first.wait_for(lambda evs: set(qids) <= completed(evs), timeout=60)
            labels = Api(running.url, "client-second")
            qid = labels.add_query(demo_schema, SMALL)
            labels.close()
            second.wait_for(lambda evs: qid in completed(evs), timeout=30)
            assert len(first.state["issue"]) == N_ISSUES
            assert len(second.state["label"]) == 1
        finally:
            for r in readers:
                r.close()
            api.close()


def test_a_hello_does_not_wait_for_one_long_hydration(demo_schema: Schema) -> None:
    """One subscription of 40k issues with their labels (seconds of engine work): a stream
    opened meanwhile gets its hello long before that hydration completes (the engine pauses
    inside a hydration to serve new streams), and the first client still gets every row."""
    import pyarrow as pa

    n = 40_000
    app = create_app(demo_schema, anonymous=True)
    with serve_app(app) as running:
        api = Api(running.url)
        api.mutate(*seed_mutations())
        store = app.state.sync.store
        store.bulk_load("issue", pa.Table.from_pylist([issue(i) for i in range(1000, 1000 + n)]))
        store.bulk_load("issue_label", pa.table({
            "issue_id": list(range(1000, 1000 + n)), "label_id": [1] * n}))
        first = StreamReader(running.url, "client-first", keys=KEYS)
        second: StreamReader | None = None
        try:
            _hello_at(first, 10)
            heavy = Api(running.url, "client-first")
            qid = heavy.add_query(demo_schema, {"table": "issue", "related": {"labels": {}}})
            heavy.close()
            # Open the second stream once the engine is inside that hydration (its IVM engine
            # for the subscription's scope exists from the start of the add).
            maintainer = app.state.sync.engine.maintainer
            deadline = time.monotonic() + 30
            while not maintainer._engines and time.monotonic() < deadline:
                time.sleep(0.005)
            assert maintainer._engines, "the hydration did not start"
            second = StreamReader(running.url, "client-second")
            t0 = time.monotonic()
            hello = _hello_at(second, 30) - t0
            first.wait_for(lambda evs: qid in completed(evs), timeout=120)
            complete = time.monotonic() - t0
            # Without the pauses the hello waits for the whole add (about 90% of the time
            # to complete here); with them, a few hundred rows of work.
            assert hello < 0.5 * complete, (hello, complete)
            assert len(first.state["issue"]) >= n
            assert len(first.state["issue_label"]) >= n
        finally:
            first.close()
            if second is not None:
                second.close()
            api.close()


def test_rows_stream_during_a_long_hydration_and_a_dropped_stream_recovers(
    demo_schema: Schema,
) -> None:
    """A new subscription's rows reach its client while the server still loads them (pokes at
    the step's version ahead of the one that completes it). A client whose stream drops in the
    middle and comes back, with its last id or without one, ends with exactly the query's
    rows, complete."""
    import copy

    import pyarrow as pa

    n = 40_000
    app = create_app(demo_schema, anonymous=True)
    with serve_app(app) as running:
        api = Api(running.url)
        api.mutate(*seed_mutations())
        app.state.sync.store.bulk_load(
            "issue", pa.Table.from_pylist([issue(i) for i in range(1000, 1000 + n)])
        )
        expected = {(i,) for i in range(1, 7)} | {(i,) for i in range(1000, 1000 + n)}
        query = {"table": "issue", "where": {"column": "id", "op": ">=", "value": 0}}
        for resume in (True, False):
            cid = f"client-streamed-{int(resume)}"
            first = StreamReader(running.url, cid, keys=KEYS)
            _hello_at(first, 10)
            adder = Api(running.url, cid)
            qid = adder.add_query(demo_schema, query)
            adder.close()
            # Rows arrive before the hydration completes: the first poke with rows has no
            # complete marker for the query.
            evs = first.wait_for(
                lambda evs: any(e.name == "poke" and e.data["put"] for e in evs), timeout=60
            )
            with_rows = next(e for e in evs if e.name == "poke" and e.data["put"])
            assert qid not in with_rows.data["complete"]
            first.close()  # dropped in the middle of the hydration
            last_id, state = first.last_id, copy.deepcopy(first.state)  # what it had applied
            second = StreamReader(
                running.url, cid, keys=KEYS,
                last_event_id=last_id if resume else None,
                state=state if resume else None,
            )
            try:
                second.wait_for(lambda evs, q=qid: q in completed(evs), timeout=120)
                assert set(second.state["issue"]) == expected
            finally:
                second.close()
        api.close()
