"""The exceptions of the query core.

    QueryPlannerError
    ├── SchemaError   an invalid schema definition (names the table and column)
    └── QueryError    a query that does not fit the schema or the limits (names the path)

Every message is a sentence that names the bad value and, where one exists, the nearest valid
name, so that a client developer can fix the input without reading this code.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class QueryPlannerError(Exception):
    """Base class of every error raised by ``queryplanner``."""


class SchemaError(QueryPlannerError):
    """A schema definition is invalid."""


class QueryError(QueryPlannerError):
    """A query is malformed or does not fit the schema.

    ``path`` locates the bad part in the query's JSON form, e.g. ``where.and[1].column``.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.reason = message
        super().__init__(f"{path}: {message}" if path else message)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return " Did you mean 'x'?" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""
