"""The querysync sync server: DuckDB source of truth, one SSE stream per client.

from server import create_app
app = create_app(Schema.load("schema.json"), db_path="data.duckdb", secret="...")
"""

from .app import ServerOptions, SyncServer, create_app
from .auth import Principal, make_token
from .engine import EngineLimits
from .errors import ServerError

__all__ = [
    "EngineLimits",
    "Principal",
    "ServerError",
    "ServerOptions",
    "SyncServer",
    "create_app",
    "make_token",
]
