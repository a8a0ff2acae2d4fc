"""The server's exceptions, each with its HTTP status and protocol error code.

    ServerError                 500 internal (never carries details to the client)
    ├── BadRequest              400 bad_request: malformed JSON, wrong field types
    ├── Unauthorized            401 unauthorized: missing or invalid token
    ├── Forbidden               403 forbidden
    ├── NotFound                404 not_found
    ├── MethodNotAllowed        405 method_not_allowed
    ├── SchemaVersionMismatch   409 schema_version: the client's schema is outside the window
    ├── MutationOrder           409 mutation_order: a gap in a client's mutation ids
    ├── TooLarge                413 too_large: body above the cap
    ├── UnsupportedMediaType    415 unsupported_media_type
    ├── InvalidQuery            422 invalid_query: names the path in the query
    └── Overloaded              503 overloaded

``render`` turns any of them into the JSON body of docs/protocol.md; ``app.py`` installs one
handler that renders these and maps every other exception to a bare 500 (logged, never shown).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from queryplanner.protocol import ErrorBody, dumps


class ServerError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra: Mapping[str, Any] = extra

    def body(self) -> ErrorBody:
        return ErrorBody(self.code, self.message, dict(self.extra))


class BadRequest(ServerError):
    status, code = 400, "bad_request"


class Unauthorized(ServerError):
    status, code = 401, "unauthorized"


class Forbidden(ServerError):
    status, code = 403, "forbidden"


class NotFound(ServerError):
    status, code = 404, "not_found"


class MethodNotAllowed(ServerError):
    status, code = 405, "method_not_allowed"


class SchemaVersionMismatch(ServerError):
    status, code = 409, "schema_version"


class MutationOrder(ServerError):
    status, code = 409, "mutation_order"


class TooLarge(ServerError):
    status, code = 413, "too_large"


class UnsupportedMediaType(ServerError):
    status, code = 415, "unsupported_media_type"


class InvalidQuery(ServerError):
    status, code = 422, "invalid_query"


class Overloaded(ServerError):
    status, code = 503, "overloaded"


def render(error: ServerError) -> Response:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return Response(
        dumps(error.body().to_json()),
        status_code=error.status,
        media_type="application/json",
        headers=headers,
    )
