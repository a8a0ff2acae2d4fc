"""Read and write rules per table, bound to the asking user.

A rules document is either a read-rules document (see ``queryplanner.rules``) or
``{"read": {...}, "write": {...}}``. Read rules are ANDed into every SQL the server runs for a
user (hydration, live changes, resume, offload) by the SQL compiler. A write rule must hold for
the old row (update, delete) and for the new row (insert, update, upsert). Its ``exists`` reads
the rows as the batch so far has left them (``server.batch_rows``): committed rows, with the
batch's own earlier writes and deletes on top.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from queryplanner import Condition, Schema, compile_predicate
from queryplanner.errors import SchemaError
from queryplanner.predicate import RelatedRows, Row
from queryplanner.rules import RuleSet, parse_rules
from queryplanner.schema import Relationship

from .auth import Principal
from .mutations import WriteCheck


class Permissions:
    def __init__(self, schema: Schema, doc: Mapping[str, Any] | None = None) -> None:
        self.schema = schema
        read_doc: Mapping[str, Any] = {}
        write_doc: Mapping[str, Any] = {}
        if doc:
            if set(doc) <= {"read", "write"}:
                read_doc, write_doc = doc.get("read") or {}, doc.get("write") or {}
            else:
                read_doc = doc
        self.read_rules: RuleSet = parse_rules(read_doc, schema)
        self.write_rules: RuleSet = parse_rules(write_doc, schema)
        self._read_cache: dict[str, dict[str, Condition]] = {}

    @classmethod
    def load(cls, schema: Schema, path: str | Path | None) -> Permissions:
        if path is None:
            return cls(schema)
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaError(f"Cannot read the rules file {str(path)!r}: {exc}.") from None
        return cls(schema, doc)

    def scope(self, principal: Principal) -> str:
        """Users with the same scope see the same rows: their bound rules are identical."""
        if not self.read_rules.tables:
            return "*"
        return json.dumps(principal.context(), sort_keys=True, default=str)

    def read(self, principal: Principal) -> dict[str, Condition]:
        """The read rule per restricted table for this user (cached per scope)."""
        key = self.scope(principal)
        cached = self._read_cache.get(key)
        if cached is None:
            if len(self._read_cache) > 10_000:
                self._read_cache.clear()
            cached = self._read_cache[key] = self.read_rules.bind(principal.context())
        return cached

    def write_check(self, principal: Principal) -> WriteCheck | None:
        if not self.write_rules.tables:
            return None
        bound = self.write_rules.bind(principal.context())
        # EXISTS reads the related rows of the batch being decided: set for each check.
        rows = _Related()
        tests = {
            name: compile_predicate(cond, self.schema, name, rows) for name, cond in bound.items()
        }

        def check(
            table: str,
            old: Mapping[str, Any] | None,
            new: Mapping[str, Any] | None,
            related: RelatedRows,
        ) -> str | None:
            test = tests.get(table)
            if test is None:
                return None
            rows.source = related
            if old is not None and not test(old):
                return (
                    f"Permission denied: the write rule of table {table!r} forbids changing "
                    "this row."
                )
            if new is not None and not test(new):
                return f"Permission denied: the write rule of table {table!r} forbids the new row."
            return None

        return check


class _Related:
    """The ``RelatedRows`` compiled into a user's write rules; each check points it at the
    rows of the batch being decided."""

    def __init__(self) -> None:
        self.source: RelatedRows | None = None

    def related_rows(self, relationship: Relationship, row: Row) -> Iterable[Row]:
        assert self.source is not None, "a write check runs with its batch's related rows"
        return self.source.related_rows(relationship, row)
