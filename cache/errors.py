"""The exceptions of the client.

    CacheError
    ├── SchemaVersionError   the server no longer serves this client's schema (HTTP 409)
    ├── MutationRejected     the server rejected an optimistic write; it was rolled back
    ├── ServerError          any other error answer from the server (status + code + message)
    ├── ClientClosed         the client was used after ``close()``
    └── StoreError           the local DuckDB store cannot be opened or used

Messages name the bad value and the way out, like the rest of querysync.
"""

from __future__ import annotations

from typing import Any


class CacheError(Exception):
    """Base class of every error raised by ``cache``."""


class SchemaVersionError(CacheError):
    """The server refused this client's schema version; the app must update."""

    def __init__(
        self, client_version: int, server_version: int, min_client_version: int, message: str = ""
    ) -> None:
        self.client_version = client_version
        self.server_version = server_version
        self.min_client_version = min_client_version
        super().__init__(
            message
            or f"Client schema version {client_version} is not served; the server serves "
            f"versions {min_client_version} to {server_version}. Upgrade the client."
        )


class MutationRejected(CacheError):
    """The server rejected a mutation; its optimistic effect has been rolled back."""

    def __init__(self, mutation_id: int, reason: str) -> None:
        self.mutation_id = mutation_id
        self.reason = reason
        super().__init__(f"Mutation {mutation_id} was rejected by the server: {reason}")


class ServerError(CacheError):
    """The server answered with an error (see docs/protocol.md, Errors)."""

    def __init__(self, status: int, code: str, message: str, body: Any = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.body = body
        super().__init__(f"Server answered {status} {code}: {message}")


class ClientClosed(CacheError):
    """The client was used after ``close()``."""


class StoreError(CacheError):
    """The local store cannot be opened or used."""
