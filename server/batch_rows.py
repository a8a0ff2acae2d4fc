"""The database as the batch being decided has left it: what EXISTS in a write rule reads.

A write rule is checked on the writer thread while a batch is decided, before any of its
statements run. Its EXISTS follows relationships from the old or new row; the rows it reaches
must be the ones the batch has produced so far, so a batch that inserts a project and then an
issue in it, or deletes a row and then relies on its absence, is judged on that state. Reads go
to DuckDB in the writer's transaction through a ``DuckStore`` (the committed state, which stays
put while a group commit is decided, so its answers are cached), and the rows the batch has
written or deleted so far (``layers``, later ones win) replace what it returns for their keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from queryplanner.ivm import related_rows
from queryplanner.predicate import Row, row_key
from queryplanner.schema import Relationship

from .ivm_store import DuckStore
from .mutations import RowKey

Layer = Mapping[RowKey, Row | None]


class BatchRows:
    """``RelatedRows`` (for compiled EXISTS) over the committed rows plus the batch's own."""

    def __init__(self, committed: DuckStore, layers: Sequence[Layer]) -> None:
        self.committed = committed
        self.layers = layers

    def related_rows(self, relationship: Relationship, row: Row) -> list[Row]:
        return related_rows(self, relationship, row)

    def lookup(
        self, table: str, columns: tuple[str, ...], values: tuple[Any, ...]
    ) -> list[Row]:
        pk = self.committed.schema.table(table).primary_key
        found = {row_key(pk, r): r for r in self.committed.lookup(table, columns, values)}
        for layer in self.layers:
            for (tname, key), written in layer.items():
                if tname != table:
                    continue
                if written is not None and all(
                    written.get(c) == v for c, v in zip(columns, values, strict=True)
                ):
                    found[key] = written
                else:
                    found.pop(key, None)
        return list(found.values())
