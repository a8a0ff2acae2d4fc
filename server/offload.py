"""``POST /query``: run any valid query on the server and stream the result over SSE.

One-shot: ``rows`` events in batches (nested ``related`` children inside each row; aggregate
groups as rows), then ``complete`` with the version. Live: a ``result`` event with the whole
result now and after every commit that touches a table the query depends on (when the result
changed). Commits wake live queries through ``CommitWatch``; commits that came in while a query
re-ran are handled by one more run. The user's read rules are compiled into the SQL exactly as
for sync.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from queryplanner import Condition, Query, Schema
from queryplanner.protocol import CompleteEvent, ResultEvent, RowsEvent, encode_event
from queryplanner.sql import compile_row_sets, compile_select, nest_rows
from queryplanner.wire import encode_row, encode_value

from .subscriptions import dependencies

if TYPE_CHECKING:
    from .app import SyncServer

BATCH_ROWS = 500


class CommitWatch:
    """Wakes coroutines on the event loop after commits; ``notify`` is called by the writer.

    A waiter takes ``current`` *before* it looks at the change log, then awaits it: a commit
    that lands in between sets that very event, so no commit is missed. The writer only
    schedules a wake-up while a live query exists (``live``), so commits cost nothing when
    none does.
    """

    def __init__(self) -> None:
        self.current = asyncio.Event()
        self.live = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, batch: object = None) -> None:
        loop = self._loop
        if self.live and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        event, self.current = self.current, asyncio.Event()
        event.set()


def run_query(
    srv: SyncServer, query: Query, schema: Schema, rules: Mapping[str, Condition]
) -> tuple[int, list[dict[str, Any]]]:
    """On a reader thread: (version, wire rows) of ``query`` in one snapshot."""
    cur = srv.db.cursor()
    cur.execute("BEGIN")
    row = cur.execute("SELECT v FROM _qs_meta WHERE k = 'version'").fetchone()
    try:
        version = int(row[0]) if row else 0
        full = srv.schema
        if query.aggregate is not None:
            compiled = compile_select(query, full, rules=rules)
            rel = cur.execute(compiled.sql, list(compiled.params))
            names = [d[0] for d in rel.description or ()]
            table = full.table(query.table)
            groups = set(query.aggregate.group_by)
            out = []
            for rec in rel.fetchall():
                doc = dict(zip(names, rec, strict=True))
                out.append(
                    {
                        k: encode_value(table.column(k), v) if k in groups else _plain(v)
                        for k, v in doc.items()
                    }
                )
            return version, out
        rows_by_path: dict[str, list[dict[str, Any]]] = {}
        for rs in compile_row_sets(query, full, rules=rules):
            rel = cur.execute(rs.sql, list(rs.params))
            names = [d[0] for d in rel.description or ()]
            rows_by_path.setdefault(rs.key, []).extend(
                dict(zip(names, rec, strict=True)) for rec in rel.fetchall()
            )
        nested = nest_rows(query, full, rows_by_path)
        return version, [_encode_nested(query, schema, r) for r in nested]
    finally:
        cur.execute("COMMIT")


def _plain(value: Any) -> Any:
    iso = getattr(value, "isoformat", None)
    if iso is not None:
        return iso()
    if hasattr(value, "as_integer_ratio") and not isinstance(value, int | float):
        return float(value)  # DECIMAL from sum()
    return value


def _encode_nested(query: Query, schema: Schema, row: Mapping[str, Any]) -> dict[str, Any]:
    table = schema.table(query.table)
    out = encode_row(table, row)
    for r in query.related:
        rel = table.relationship(r.relationship)
        value = row.get(rel.name)
        if value is None:
            out[rel.name] = None
        elif isinstance(value, list):
            out[rel.name] = [_encode_nested(r.query, schema, v) for v in value]
        else:
            out[rel.name] = _encode_nested(r.query, schema, value)
    return out


def _sse(event: RowsEvent | CompleteEvent | ResultEvent) -> ServerSentEvent:
    name, data = encode_event(event)
    return ServerSentEvent(data=data.decode(), event=name)


async def offload_response(
    srv: SyncServer,
    query: Query,
    schema: Schema,
    rules: Mapping[str, Condition],
    *,
    live: bool,
) -> EventSourceResponse:
    # Computed before the response starts, so a failure is a JSON error, not a broken stream.
    version, rows = await srv.db.read(run_query, srv, query, schema, rules)
    tables = dependencies(query, srv.schema, rules)

    async def one_shot() -> AsyncIterator[ServerSentEvent]:
        for i in range(0, len(rows), BATCH_ROWS):
            yield _sse(RowsEvent(tuple(rows[i : i + BATCH_ROWS])))
        yield _sse(CompleteEvent(version))

    async def kept_live() -> AsyncIterator[ServerSentEvent]:
        nonlocal version, rows
        watch = srv.commits
        watch.live += 1
        try:
            yield _sse(ResultEvent(version, tuple(rows)))
            while True:
                woken = watch.current  # before reading the log: see CommitWatch
                batches = srv.store.log.since(version)
                if batches is not None and not batches:
                    await woken.wait()
                    continue
                if batches is not None and not any(b.tables & tables for b in batches):
                    version = max(b.version for b in batches)
                    continue
                new_version, new_rows = await srv.db.read(run_query, srv, query, schema, rules)
                if new_rows != rows:
                    yield _sse(ResultEvent(new_version, tuple(new_rows)))
                version, rows = new_version, new_rows
        finally:
            watch.live -= 1

    assert srv.shutdown_event is not None
    return EventSourceResponse(
        kept_live() if live else one_shot(),
        ping=srv.options.ping_seconds,
        shutdown_event=srv.shutdown_event,
        shutdown_grace_period=0,
    )
