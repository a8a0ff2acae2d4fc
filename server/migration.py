"""Online, additive schema migrations: what may change while clients stay connected.

A running server can move to a newer schema (``SyncServer.update_schema``) when the change only
adds: new tables, new *nullable* columns (existing rows read NULL, so no row changes and no
client holds a stale row), and new relationships. Everything an older client knows stays as it
was — same tables, columns, types, nullability and primary keys — so its queries keep their
meaning and ``Schema.as_of`` still describes what it is sent. Anything else (a dropped or
renamed column, a type change, a new NOT NULL column) needs a data migration and a restart.

``check_additive`` is pure: it returns the DDL-free plan (the added tables and columns) or
raises ``SchemaError`` naming the first offending table or column.
"""

from __future__ import annotations

from dataclasses import dataclass

from queryplanner import Schema
from queryplanner.errors import SchemaError


@dataclass(frozen=True)
class Additions:
    tables: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]  # (table, column)


def check_additive(old: Schema, new: Schema) -> Additions:
    if new.version <= old.version:
        raise SchemaError(
            f"The new schema's version {new.version} must be above the served version "
            f"{old.version}."
        )
    if new.oldest_client_version < old.oldest_client_version:
        raise SchemaError(
            f"minClientVersion cannot go down (from {old.oldest_client_version} to "
            f"{new.oldest_client_version}): clients that were told to update already did."
        )
    tables: list[str] = []
    columns: list[tuple[str, str]] = []
    for t in new.tables:
        if not old.has_table(t.name):
            if t.since <= old.version:
                raise SchemaError(
                    f"New table {t.name!r} must have since > {old.version} (it has {t.since})."
                )
            tables.append(t.name)
    for ot in old.tables:
        if not new.has_table(ot.name):
            raise SchemaError(f"Table {ot.name!r} cannot be dropped by an online migration.")
        nt = new.table(ot.name)
        if nt.primary_key != ot.primary_key:
            raise SchemaError(f"The primary key of table {ot.name!r} cannot change online.")
        for oc in ot.columns:
            if not nt.has_column(oc.name):
                raise SchemaError(
                    f"Column {ot.name}.{oc.name} cannot be dropped by an online migration."
                )
            nc = nt.column(oc.name)
            if (nc.type, nc.nullable, nc.since) != (oc.type, oc.nullable, oc.since):
                raise SchemaError(
                    f"Column {ot.name}.{oc.name} changed its type, nullability or since; only "
                    "additions are allowed online."
                )
        for rel in ot.relationships:
            if not nt.has_relationship(rel.name) or nt.relationship(rel.name) != rel:
                raise SchemaError(
                    f"Relationship {ot.name}.{rel.name} cannot change online."
                )
        for nc in nt.columns:
            if ot.has_column(nc.name):
                continue
            if not nc.nullable:
                raise SchemaError(
                    f"New column {ot.name}.{nc.name} must be nullable: existing rows have no "
                    "value for it."
                )
            if nc.since <= old.version:
                raise SchemaError(
                    f"New column {ot.name}.{nc.name} must have since > {old.version} (it has "
                    f"{nc.since})."
                )
            columns.append((ot.name, nc.name))
    return Additions(tuple(tables), tuple(columns))
