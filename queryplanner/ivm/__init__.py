"""Incremental view maintenance: a write reaches only the subscriptions it affects.

    from queryplanner.ivm import Engine, MemoryStore, RowChange

See ``docs/ivm.md`` for the design: windows with a stored bound, related children per parent,
EXISTS re-checks, grouped aggregates, the subscription index and batches.
"""

from .changes import Delta, Key, Path, ResultChange, ResultRow, Row, RowChange, coalesce
from .engine import DEFAULT_REHYDRATE_AFTER, Engine
from .memory import MemoryStore
from .store import Store, StoreRelated, related_rows

__all__ = [
    "DEFAULT_REHYDRATE_AFTER",
    "Delta",
    "Engine",
    "Key",
    "MemoryStore",
    "Path",
    "ResultChange",
    "ResultRow",
    "Row",
    "RowChange",
    "Store",
    "StoreRelated",
    "coalesce",
    "related_rows",
]
