"""Consecutive pokes merged into one, so a burst of small pokes is applied in one transaction.

A large hydration arrives as many pokes of bounded size; applying each one costs a DuckDB
transaction, a metadata write and a membership pass whatever its size. When several pokes are
already waiting, the client applies them as one: the state after the merged poke is exactly
the state after the last of them (later puts and deletes of a key win), the completed queries
and mutation outcomes are their union, and the version is the last one. Every version is still
applied atomically, the subscriptions just skip the intermediate ones.

Pokes of a columnar hydration (Arrow blocks and nothing else) merge with each other, their
blocks concatenated; they are not merged with row pokes (their keys are only known once the
blocks are read), so a burst is applied as runs (``merge_runs``), in order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from queryplanner import Schema
from queryplanner.protocol import Poke


def merge_pokes(schema: Schema, pokes: Sequence[Poke]) -> Poke:
    if len(pokes) == 1:
        return pokes[0]
    # table -> key -> row (a put) or None (a delete), in arrival order
    state: dict[str, dict[tuple[Any, ...], dict[str, Any] | None]] = {}
    complete: dict[str, int] = {}
    for poke in pokes:
        for table, keys in poke.delete.items():
            pk = schema.table(table).primary_key
            rows = state.setdefault(table, {})
            for key in keys:
                rows[tuple(key[k] for k in pk) if isinstance(key, dict) else tuple(key)] = None
        for table, puts in poke.put.items():
            pk = schema.table(table).primary_key
            rows = state.setdefault(table, {})
            for row in puts:
                rows[tuple(row[k] for k in pk)] = row
        complete.update(poke.complete)
    put = {t: [r for r in rows.values() if r is not None] for t, rows in state.items()}
    delete = {t: [list(k) for k, r in rows.items() if r is None] for t, rows in state.items()}
    return Poke(
        pokes[-1].version,
        {t: rows for t, rows in put.items() if rows},
        {t: keys for t, keys in delete.items() if keys},
        complete,
        tuple(m for p in pokes for m in p.mutations),
    )


def merge_runs(schema: Schema, pokes: Sequence[Poke]) -> Iterator[tuple[int, Poke]]:
    """The burst as merged runs, in order: (index of the run's last poke, merged poke)."""
    start = 0
    for i in range(1, len(pokes) + 1):
        if i < len(pokes) and _kind(pokes[i]) == _kind(pokes[start]) != "mixed":
            continue
        run = pokes[start:i]
        if _kind(run[0]) == "arrow":
            yield i - 1, _merge_arrow(run)
        else:
            yield i - 1, merge_pokes(schema, run)
        start = i


def _kind(poke: Poke) -> str:
    if not poke.arrow:
        return "rows"
    if poke.put or poke.delete or poke.complete or poke.mutations:
        return "mixed"  # applied alone
    return "arrow"


def _merge_arrow(pokes: Sequence[Poke]) -> Poke:
    if len(pokes) == 1:
        return pokes[0]
    blocks: dict[str, tuple[bytes, ...]] = {}
    for poke in pokes:
        for table, data in poke.arrow.items():
            blocks[table] = blocks.get(table, ()) + data
    return Poke(pokes[-1].version, arrow=blocks)
