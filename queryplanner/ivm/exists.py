"""EXISTS / NOT EXISTS: which rows of a level must be re-checked when a related table changes.

A condition ``EXISTS comments WHERE (EXISTS creator WHERE name = 'x')`` on ``issue`` depends on
the tables along its relationship chains: ``comment`` (chain ``issue.comments``) and ``user``
(chain ``issue.comments, comment.creator``), plus the junction table of any many-to-many step.
When a row of such a table changes, the rows of the level whose EXISTS answer may have changed
are found by walking the chain backwards from both row images through the store (which holds
the batch's final state); those rows are then re-checked like edited rows. A row whose link
changed in the same batch is found from its other image, because that change is walked too.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..predicate import row_key
from ..query import And, Condition, Exists, Not, Or
from ..schema import Relationship, Schema
from .changes import Key, Row
from .store import Store, source_rows

Chain = tuple[tuple[str, Relationship], ...]  # (source table, relationship) steps from the level


def exists_chains(cond: Condition | None, schema: Schema, table: str) -> Iterator[Chain]:
    """Every relationship chain that an EXISTS in ``cond`` walks, prefixes included."""
    if cond is None:
        return
    if isinstance(cond, And | Or):
        for term in cond.terms:
            yield from exists_chains(term, schema, table)
    elif isinstance(cond, Not):
        yield from exists_chains(cond.term, schema, table)
    elif isinstance(cond, Exists):
        rel = schema.table(table).relationship(cond.relationship)
        head: Chain = ((table, rel),)
        yield head
        for rest in exists_chains(cond.where, schema, rel.target):
            yield head + rest


def has_exists(cond: Condition | None) -> bool:
    return isinstance(cond, Exists) or (
        isinstance(cond, And | Or) and any(has_exists(t) for t in cond.terms)
    ) or (isinstance(cond, Not) and has_exists(cond.term))


def chain_tables(chain: Chain) -> tuple[str, ...]:
    """The tables whose changes can flip the EXISTS at the end of ``chain``."""
    rel = chain[-1][1]
    return (rel.target,) if rel.through is None else (rel.target, rel.through.table)


def walk_back(store: Store, schema: Schema, chain: Chain, table: str,
              rows: list[Row]) -> dict[Key, Row]:
    """The rows of the chain's first table linked through ``chain`` to ``rows`` of ``table``."""
    current, current_table = rows, table
    for source, rel in reversed(chain):
        found: dict[Key, Row] = {}
        pk = schema.table(source).primary_key
        for row in current:
            for r in source_rows(store, source, rel, row, current_table):
                found.setdefault(row_key(pk, r), r)
        current, current_table = list(found.values()), source
        if not current:
            return {}
    pk = schema.table(current_table).primary_key
    return {row_key(pk, r): r for r in current}
