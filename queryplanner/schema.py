"""The schema: tables, typed columns, primary keys, relationships and the schema version.

A schema is immutable. It is defined in Python (``Schema(tables=[...])``) or loaded from a
JSON or TOML document (``Schema.from_dict`` / ``Schema.load``). Its ``hash`` is stable across
processes and languages: it is the SHA-256 of the canonical JSON of ``to_dict()``.

Versioning: ``version`` is the schema's integer version and ``min_client_version`` the oldest
client schema version the server still serves. A column or table added in a later version
records it in ``since``; ``Schema.as_of(v)`` gives the schema an older client knows.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from .errors import SchemaError, did_you_mean

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ColumnType(StrEnum):
    INTEGER = "integer"
    FLOAT = "float"
    TEXT = "text"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    JSON = "json"


RelationshipKind = Literal["many_to_one", "one_to_many", "many_to_many"]
_KINDS: tuple[RelationshipKind, ...] = ("many_to_one", "one_to_many", "many_to_many")


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = True
    since: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type.value, "nullable": self.nullable, "since": self.since}


@dataclass(frozen=True)
class Through:
    """The junction table of a many-to-many relationship."""

    table: str
    source_columns: tuple[str, ...]  # junction columns matching the source's columns
    target_columns: tuple[str, ...]  # junction columns matching the target's columns


@dataclass(frozen=True)
class Relationship:
    """A named link from one table to another.

    ``source_columns`` (on the owning table) equal ``target_columns`` (on ``target``); for a
    many-to-many relationship the link goes through ``through``: source_columns equal
    through.source_columns, and through.target_columns equal target_columns.
    """

    name: str
    kind: RelationshipKind
    target: str
    source_columns: tuple[str, ...]
    target_columns: tuple[str, ...]
    through: Through | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "target": self.target,
            "sourceColumns": list(self.source_columns),
            "targetColumns": list(self.target_columns),
        }
        if self.through is not None:
            out["through"] = {
                "table": self.through.table,
                "sourceColumns": list(self.through.source_columns),
                "targetColumns": list(self.through.target_columns),
            }
        return out


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    relationships: tuple[Relationship, ...] = ()
    since: int = 1
    _by_name: dict[str, Column] = field(init=False, repr=False, compare=False, hash=False)
    _rel_by_name: dict[str, Relationship] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "primary_key", tuple(self.primary_key))
        object.__setattr__(self, "relationships", tuple(self.relationships))
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})
        object.__setattr__(self, "_rel_by_name", {r.name: r for r in self.relationships})

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        try:
            return self._by_name[name]
        except KeyError:
            raise SchemaError(
                f"Unknown column {name!r} in table {self.name!r}."
                + did_you_mean(name, self._by_name)
            ) from None

    def has_column(self, name: str) -> bool:
        return name in self._by_name

    def relationship(self, name: str) -> Relationship:
        try:
            return self._rel_by_name[name]
        except KeyError:
            raise SchemaError(
                f"Unknown relationship {name!r} on table {self.name!r}."
                + did_you_mean(name, self._rel_by_name)
            ) from None

    def has_relationship(self, name: str) -> bool:
        return name in self._rel_by_name

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": {c.name: c.to_dict() for c in self.columns},
            "primaryKey": list(self.primary_key),
            "relationships": {r.name: r.to_dict() for r in self.relationships},
            "since": self.since,
        }


@dataclass(frozen=True)
class Schema:
    tables: tuple[Table, ...]
    version: int = 1
    min_client_version: int | None = None
    _by_name: dict[str, Table] = field(init=False, repr=False, compare=False, hash=False)
    _hash: str = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", tuple(self.tables))
        if self.min_client_version is None:
            object.__setattr__(self, "min_client_version", self.version)
        object.__setattr__(self, "_by_name", {t.name: t for t in self.tables})
        _validate(self)
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        object.__setattr__(self, "_hash", hashlib.sha256(canonical.encode()).hexdigest()[:16])

    @property
    def hash(self) -> str:
        """A stable 16-hex-digit fingerprint of the whole schema."""
        return self._hash

    @property
    def oldest_client_version(self) -> int:
        assert self.min_client_version is not None
        return self.min_client_version

    @property
    def table_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    def table(self, name: str) -> Table:
        try:
            return self._by_name[name]
        except KeyError:
            raise SchemaError(
                f"Unknown table {name!r}." + did_you_mean(name, self._by_name)
            ) from None

    def has_table(self, name: str) -> bool:
        return name in self._by_name

    def supports_client(self, client_version: int) -> bool:
        return self.oldest_client_version <= client_version <= self.version

    def as_of(self, version: int) -> Schema:
        """The schema a client at ``version`` knows: tables and columns added since dropped."""
        if version >= self.version:
            return self
        tables = []
        for t in self.tables:
            if t.since > version:
                continue
            cols = tuple(c for c in t.columns if c.since <= version)
            names = {c.name for c in cols}
            rels = tuple(
                r
                for r in t.relationships
                if self._by_name[r.target].since <= version
                and set(r.source_columns) <= names
                and (r.through is None or self._by_name[r.through.table].since <= version)
            )
            tables.append(Table(t.name, cols, t.primary_key, rels, t.since))
        return Schema(tuple(tables), version, min(self.oldest_client_version, version))

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "minClientVersion": self.oldest_client_version,
            "tables": {t.name: t.to_dict() for t in self.tables},
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Schema:
        """Build a schema from its JSON/TOML document form (see docs/queries.md)."""
        if not isinstance(doc, Mapping):
            raise SchemaError(f"A schema document must be an object, not {type(doc).__name__}.")
        _only_keys(doc, {"version", "minClientVersion", "tables"}, "schema")
        version = _int(doc.get("version", 1), "schema version")
        min_client = doc.get("minClientVersion")
        tables_doc = doc.get("tables")
        if not isinstance(tables_doc, Mapping) or not tables_doc:
            raise SchemaError("A schema needs a non-empty 'tables' object.")
        tables = [_table_from_dict(name, tdoc) for name, tdoc in tables_doc.items()]
        return cls(
            tuple(tables),
            version,
            None if min_client is None else _int(min_client, "minClientVersion"),
        )

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """Load a schema from a ``.json`` or ``.toml`` file."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise SchemaError(f"Cannot read schema file {str(p)!r}: {exc.strerror}.") from None
        try:
            doc = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise SchemaError(f"Schema file {str(p)!r} is not valid: {exc}.") from None
        return cls.from_dict(doc)


def _only_keys(doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in doc:
        if key not in allowed:
            raise SchemaError(
                f"Unknown key {key!r} in {where}." + did_you_mean(str(key), allowed)
            )


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SchemaError(f"The {what} must be a positive integer, not {value!r}.")
    return value


def _names(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise SchemaError(f"{what} must be a column name or a non-empty list of them.")
    return tuple(value)


def _table_from_dict(name: str, doc: Any) -> Table:
    if not isinstance(doc, Mapping):
        raise SchemaError(f"Table {name!r} must be an object.")
    _only_keys(doc, {"columns", "primaryKey", "relationships", "since"}, f"table {name!r}")
    cols_doc = doc.get("columns")
    if not isinstance(cols_doc, Mapping) or not cols_doc:
        raise SchemaError(f"Table {name!r} needs a non-empty 'columns' object.")
    pk = _names(doc.get("primaryKey", "id"), f"The primary key of table {name!r}")
    columns = []
    for cname, cdoc in cols_doc.items():
        if isinstance(cdoc, str):
            cdoc = {"type": cdoc}
        if not isinstance(cdoc, Mapping):
            raise SchemaError(f"Column {cname!r} in table {name!r} must be a type name or object.")
        _only_keys(cdoc, {"type", "nullable", "since"}, f"column {name}.{cname}")
        ctype = cdoc.get("type")
        try:
            typ = ColumnType(str(ctype))
        except ValueError:
            raise SchemaError(
                f"Column {cname!r} in table {name!r} has unknown type {ctype!r}; expected one "
                f"of {', '.join(t.value for t in ColumnType)}."
            ) from None
        nullable = cdoc.get("nullable", cname not in pk)
        if not isinstance(nullable, bool):
            raise SchemaError(f"Column {cname!r} in table {name!r}: 'nullable' must be a boolean.")
        columns.append(Column(cname, typ, nullable, _int(cdoc.get("since", 1), "column since")))
    rels = []
    rels_doc = doc.get("relationships", {})
    if not isinstance(rels_doc, Mapping):
        raise SchemaError(f"The relationships of table {name!r} must be an object.")
    for rname, rdoc in rels_doc.items():
        where = f"relationship {name}.{rname}"
        if not isinstance(rdoc, Mapping):
            raise SchemaError(f"The {where} must be an object.")
        _only_keys(rdoc, {"kind", "target", "sourceColumns", "targetColumns", "through"}, where)
        kind = rdoc.get("kind")
        if kind not in _KINDS:
            raise SchemaError(f"The {where} has kind {kind!r}; expected one of {_KINDS}.")
        through = None
        if rdoc.get("through") is not None:
            tdoc = rdoc["through"]
            if not isinstance(tdoc, Mapping) or not isinstance(tdoc.get("table"), str):
                raise SchemaError(f"The 'through' of {where} needs a 'table' name.")
            through = Through(
                tdoc["table"],
                _names(tdoc.get("sourceColumns"), f"through.sourceColumns of {where}"),
                _names(tdoc.get("targetColumns"), f"through.targetColumns of {where}"),
            )
        target = rdoc.get("target")
        if not isinstance(target, str):
            raise SchemaError(f"The {where} needs a 'target' table name.")
        rels.append(
            Relationship(
                rname,
                kind,
                target,
                _names(rdoc.get("sourceColumns"), f"sourceColumns of {where}"),
                _names(rdoc.get("targetColumns"), f"targetColumns of {where}"),
                through,
            )
        )
    return Table(name, tuple(columns), pk, tuple(rels), _int(doc.get("since", 1), "table since"))


def _validate(schema: Schema) -> None:
    if schema.version < 1:
        raise SchemaError(f"The schema version must be positive, not {schema.version}.")
    if not 1 <= schema.oldest_client_version <= schema.version:
        raise SchemaError(
            f"minClientVersion {schema.min_client_version} must be between 1 and the schema "
            f"version {schema.version}."
        )
    if not schema.tables:
        raise SchemaError("A schema needs at least one table.")
    seen: set[str] = set()
    for t in schema.tables:
        _check_name(t.name, "table")
        if t.name in seen:
            raise SchemaError(f"Table {t.name!r} is defined twice.")
        seen.add(t.name)
        col_seen: set[str] = set()
        for c in t.columns:
            _check_name(c.name, f"column in table {t.name!r}")
            if c.name in col_seen:
                raise SchemaError(f"Column {c.name!r} is defined twice in table {t.name!r}.")
            col_seen.add(c.name)
            if c.since > schema.version:
                raise SchemaError(
                    f"Column {t.name}.{c.name} has since={c.since}, after the schema version "
                    f"{schema.version}."
                )
        if not t.primary_key:
            raise SchemaError(f"Table {t.name!r} needs a primary key.")
        for k in t.primary_key:
            col = t.column(k) if t.has_column(k) else None
            if col is None:
                raise SchemaError(
                    f"Primary key column {k!r} of table {t.name!r} is not a column."
                    + did_you_mean(k, t.column_names)
                )
            if col.nullable:
                raise SchemaError(f"Primary key column {t.name}.{k} cannot be nullable.")
            if col.type in (ColumnType.JSON, ColumnType.FLOAT):
                raise SchemaError(
                    f"Primary key column {t.name}.{k} has type {col.type.value}; use integer, "
                    "text, boolean or timestamp."
                )
    for t in schema.tables:
        for r in t.relationships:
            _check_name(r.name, f"relationship on table {t.name!r}")
            if t.has_column(r.name):
                raise SchemaError(
                    f"Relationship {t.name}.{r.name} has the name of a column of {t.name!r}."
                )
            where = f"relationship {t.name}.{r.name}"
            if not schema.has_table(r.target):
                raise SchemaError(
                    f"The {where} targets unknown table {r.target!r}."
                    + did_you_mean(r.target, schema.table_names)
                )
            _check_columns(t, r.source_columns, where)
            _check_columns(schema.table(r.target), r.target_columns, where)
            if (r.kind == "many_to_many") != (r.through is not None):
                raise SchemaError(f"The {where}: 'through' is required for many_to_many only.")
            if r.through is not None:
                if not schema.has_table(r.through.table):
                    raise SchemaError(
                        f"The {where} goes through unknown table {r.through.table!r}."
                    )
                junction = schema.table(r.through.table)
                _check_columns(junction, r.through.source_columns, where)
                _check_columns(junction, r.through.target_columns, where)
                _same_arity(r.source_columns, r.through.source_columns, where)
                _same_arity(r.through.target_columns, r.target_columns, where)
            else:
                _same_arity(r.source_columns, r.target_columns, where)


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SchemaError(
            f"Invalid {what} name {name!r}: use lower-case letters, digits and '_', "
            "starting with a letter or '_', at most 63 characters."
        )


def _check_columns(table: Table, cols: Iterable[str], where: str) -> None:
    for c in cols:
        if not table.has_column(c):
            raise SchemaError(
                f"The {where} names unknown column {c!r} of table {table.name!r}."
                + did_you_mean(c, table.column_names)
            )


def _same_arity(a: tuple[str, ...], b: tuple[str, ...], where: str) -> None:
    if len(a) != len(b):
        raise SchemaError(f"The {where} pairs {len(a)} columns with {len(b)}.")
