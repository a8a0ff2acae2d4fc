"""Deciding a mutation batch: a pure function from (old rows, mutations) to outcomes and the
net row changes to write. No I/O: the store fetches the old rows and writes the result.

Mutations apply in order to a working copy, so a later mutation sees an earlier one of the same
batch (insert then update works). Each is ``applied`` or ``rejected`` with a reason; a rejected
one changes nothing. The net effect per key (insert, update of the changed columns only, or
delete) is what reaches DuckDB: field-level last-writer-wins, and one multi-row statement per
(table, kind) instead of one statement per mutation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from queryplanner import Schema
from queryplanner.predicate import RelatedRows
from queryplanner.protocol import Mutation, MutationResult
from queryplanner.schema import Relationship
from queryplanner.wire import WireError, decode_key, decode_row

RowKey = tuple[str, tuple[Any, ...]]
Row = dict[str, Any]
# A write rule: (table, old row or None, new row or None, the related rows its EXISTS reads)
# -> a rejection reason, or None when allowed.
WriteCheck = Callable[
    [str, Mapping[str, Any] | None, Mapping[str, Any] | None, RelatedRows], str | None
]
# The related rows as a batch has left them, given the batch's own changes so far.
RelatedSource = Callable[[Mapping[RowKey, Row | None]], RelatedRows]
VERSION_COLUMN = "_v"


@dataclass(frozen=True)
class NetChange:
    table: str
    key: tuple[Any, ...]
    op: str  # insert | update | delete
    row: Row | None  # the final row (insert/update)
    columns: tuple[str, ...]  # the changed columns of an update


@dataclass(frozen=True)
class BatchPlan:
    results: tuple[MutationResult, ...]
    changes: tuple[NetChange, ...]


def keys_of(schema: Schema, mutations: Sequence[Mutation]) -> dict[str, set[tuple[Any, ...]]]:
    """The primary keys a batch touches, per table (what the store must fetch first).

    Mutations whose table, row or key do not decode are skipped: ``plan`` rejects them.
    """
    out: dict[str, set[tuple[Any, ...]]] = {}
    for m in mutations:
        if not schema.has_table(m.table):
            continue
        table = schema.table(m.table)
        try:
            if m.row is not None:
                row = decode_row(table, m.row, partial=True)
                key = tuple(row.get(k) for k in table.primary_key)
            else:
                key = decode_key(table, m.key)
        except WireError:
            continue
        if None not in key:
            out.setdefault(m.table, set()).add(key)
    return out


class _NoRelated:
    """Where no related rows were given: a write rule with EXISTS cannot be decided."""

    def related_rows(self, relationship: Relationship, row: Mapping[str, Any]) -> list[Row]:
        raise RuntimeError(
            f"A write rule follows {relationship.name!r} but plan() was given no related rows."
        )


_NO_RELATED = _NoRelated()


def plan(
    schema: Schema,
    mutations: Sequence[Mutation],
    old: Mapping[RowKey, Row],
    *,
    known: Mapping[str, frozenset[str]] | None = None,
    check: WriteCheck | None = None,
    related: RelatedSource | None = None,
) -> BatchPlan:
    """Decide every mutation of a batch against the rows ``old`` (keyed by (table, key)).

    ``known`` limits tables and columns to those the client's schema version knows; ``check``
    is the write rule (None allows everything); ``related`` gives what its EXISTS reads, as
    the batch's changes so far have left the rows (without it, EXISTS in a rule is an error).
    """
    working: dict[RowKey, Row | None] = {k: dict(v) for k, v in old.items()}
    rows: RelatedRows = related(working) if related is not None else _NO_RELATED
    results: list[MutationResult] = []
    for m in mutations:
        reason = _apply(schema, m, working, known, check, rows)
        results.append(MutationResult(m.id, "applied" if reason is None else "rejected", reason))
    return BatchPlan(tuple(results), tuple(net_changes(schema, old, working)))


def _apply(
    schema: Schema,
    m: Mutation,
    working: dict[RowKey, Row | None],
    known: Mapping[str, frozenset[str]] | None,
    check: WriteCheck | None,
    related: RelatedRows,
) -> str | None:
    if not schema.has_table(m.table) or (known is not None and m.table not in known):
        return f"Unknown table {m.table!r}."
    table = schema.table(m.table)
    cols = None if known is None else known[m.table]
    try:
        if m.op in ("insert", "upsert"):
            assert m.row is not None
            given = decode_row(table, m.row, partial=True, known=cols)
            full = decode_row(table, m.row, known=cols)
            key = tuple(full[k] for k in table.primary_key)
        else:
            key = decode_key(table, m.key)
            given = {}
            full = {}
    except WireError as exc:
        return str(exc)
    rk = (m.table, key)
    current = working.get(rk)
    shown = list(key)
    if m.op == "insert" or (m.op == "upsert" and current is None):
        if current is not None:
            return f"A row with key {shown} already exists in table {m.table!r}."
        new: Row | None = {**full, VERSION_COLUMN: None}
    elif m.op == "upsert":
        assert current is not None
        new = {**current, **given}
    else:
        if current is None:
            return f"No row with key {shown} in table {m.table!r}."
        if m.if_version is not None and current.get(VERSION_COLUMN) != m.if_version:
            return (
                f"Conflict: row {shown} of table {m.table!r} is at version "
                f"{current.get(VERSION_COLUMN)}, not {m.if_version}."
            )
        if m.op == "delete":
            new = None
        else:
            assert m.set is not None
            try:
                changes = decode_row(table, m.set, partial=True, known=cols)
            except WireError as exc:
                return str(exc)
            pk = [c for c in changes if c in table.primary_key]
            if pk:
                return (
                    f"An update cannot change the primary key column {pk[0]!r} of table "
                    f"{m.table!r}; delete the row and insert a new one."
                )
            new = {**current, **changes}
    if check is not None:
        denied = check(m.table, current, new, related)
        if denied is not None:
            return denied
    if new is not None:
        # A row changed earlier in this batch has no committed version yet.
        new[VERSION_COLUMN] = None
    working[rk] = new
    return None


def net_changes(
    schema: Schema, old: Mapping[RowKey, Row], working: Mapping[RowKey, Row | None]
) -> list[NetChange]:
    """The net change per key from ``old`` to ``working`` (None: the row is gone)."""
    out = []
    for (tname, key), final in working.items():
        orig = old.get((tname, key))
        if orig is None and final is None:
            continue
        if orig is None:
            out.append(NetChange(tname, key, "insert", final, ()))
        elif final is None:
            out.append(NetChange(tname, key, "delete", None, ()))
        else:
            names = schema.table(tname).column_names
            changed = tuple(c for c in names if orig.get(c) != final.get(c))
            if changed:
                out.append(NetChange(tname, key, "update", final, changed))
    return out
