"""querysync's Python client: a size-capped local DuckDB cache with live queries.

    from cache import Client, SyncClient

See docs/client.md for the API, the byte budget's size estimate and the connection states.
"""

from .budget import Usage
from .client import BudgetWarning, Client
from .errors import (
    CacheError,
    ClientClosed,
    MutationRejected,
    SchemaVersionError,
    ServerError,
    StoreError,
)
from .live import Changes, ConnectionState, Snapshot
from .sync import SyncClient

__all__ = [
    "BudgetWarning",
    "CacheError",
    "Changes",
    "Client",
    "ClientClosed",
    "ConnectionState",
    "MutationRejected",
    "SchemaVersionError",
    "ServerError",
    "Snapshot",
    "StoreError",
    "SyncClient",
    "Usage",
]
