"""Rows on the wire and their byte size.

A row travels as a JSON object keyed by column name: integers, floats, strings, booleans and
null as themselves, timestamps as ISO 8601 strings (``2026-11-30T12:00:00`` or with
microseconds), json columns as any JSON value. ``encode_row`` and ``decode_row`` convert
between that form and Python values (``datetime`` for timestamps) and check every value
against the column type, so a malformed row from a client is a ``WireError`` naming the
column, never a ``TypeError``.

``row_bytes`` is the stated size estimate used by every byte budget (see docs/client.md):
the sum of each value's encoded size plus ``ROW_OVERHEAD_BYTES`` per row and
``VALUE_OVERHEAD_BYTES`` per column.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from .errors import QueryPlannerError, did_you_mean
from .schema import Column, ColumnType, Table

ROW_OVERHEAD_BYTES = 64
VALUE_OVERHEAD_BYTES = 8
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class WireError(QueryPlannerError):
    """A row (or key) received over the wire does not fit its table."""


def to_naive_utc(value: Any) -> dt.datetime | None:
    """A datetime or ISO 8601 string as naive UTC (DuckDB's TIMESTAMP); None if it is neither."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def encode_value(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.type is ColumnType.TIMESTAMP and isinstance(value, dt.datetime):
        return value.isoformat()
    if column.type is ColumnType.JSON and isinstance(value, str):
        # DuckDB returns JSON columns as their text; the wire carries the value itself.
        return orjson.loads(value)
    return value


def encode_row(table: Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """Python values (as DuckDB returns them) -> the JSON object sent on the wire."""
    return {c.name: encode_value(c, row.get(c.name)) for c in table.columns if c.name in row}


# The column types ``encode_value`` changes (the others go on the wire as DuckDB returns them).
ENCODED_TYPES = frozenset({ColumnType.TIMESTAMP, ColumnType.JSON})


def tuple_encoder(
    table: Table,
    names: Sequence[str],
    *,
    keep: Sequence[str] = (),
    iso_timestamps: bool = False,
) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """``encode_row`` for rows fetched as tuples of the columns ``names``, in a hot loop.

    Only the timestamp and json columns go through ``encode_value`` (the others are sent as
    DuckDB returns them), so a large result costs one dict per row, not a call per value;
    with ``iso_timestamps`` the timestamps are already the wire's text (see
    ``sql_expr.iso_text``). Names that are not columns of ``table`` are dropped, except
    those in ``keep`` (``_v``).
    """
    converting = (
        frozenset({ColumnType.JSON}) if iso_timestamps else ENCODED_TYPES
    )
    wanted = [(i, n) for i, n in enumerate(names) if table.has_column(n) or n in keep]
    converted = [
        (n, table.column(n)) for _, n in wanted
        if table.has_column(n) and table.column(n).type in converting
    ]
    if len(wanted) == len(names):
        plain: Callable[[Sequence[Any]], dict[str, Any]] = lambda values: dict(  # noqa: E731
            zip(names, values, strict=True)
        )
    else:
        idx = [i for i, _ in wanted]
        out_names = [n for _, n in wanted]
        plain = lambda values: dict(  # noqa: E731
            zip(out_names, [values[i] for i in idx], strict=True)
        )
    if not converted:
        return plain

    def encode(values: Sequence[Any]) -> dict[str, Any]:
        row = plain(values)
        for name, column in converted:
            value = row[name]
            if value is not None:
                row[name] = encode_value(column, value)
        return row

    return encode


def decode_value(table: Table, column: Column, value: Any) -> Any:
    where = f"{table.name}.{column.name}"
    if value is None:
        if not column.nullable:
            raise WireError(f"Column {where} cannot be null.")
        return None
    t = column.type
    if t is ColumnType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int) or not (
            _INT_MIN <= value <= _INT_MAX
        ):
            raise WireError(f"Column {where} needs a 64-bit integer, not {value!r:.60}.")
        return value
    if t is ColumnType.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value
        ):
            raise WireError(f"Column {where} needs a finite number, not {value!r:.60}.")
        return float(value)
    if t is ColumnType.TEXT:
        if not isinstance(value, str):
            raise WireError(f"Column {where} needs a string, not {value!r:.60}.")
        return value
    if t is ColumnType.BOOLEAN:
        if not isinstance(value, bool):
            raise WireError(f"Column {where} needs true or false, not {value!r:.60}.")
        return value
    if t is ColumnType.TIMESTAMP:
        parsed = to_naive_utc(value)
        if parsed is None:
            raise WireError(f"Column {where} needs an ISO 8601 timestamp, not {value!r:.60}.")
        return parsed
    return value  # json: any JSON value


def decode_row(
    table: Table, doc: Any, *, partial: bool = False, known: frozenset[str] | None = None
) -> dict[str, Any]:
    """A wire row -> Python values, checked against the table.

    ``partial`` allows missing columns (updates, keys); ``known`` limits the accepted columns
    to those an older client's schema knows.
    """
    if not isinstance(doc, Mapping):
        raise WireError(f"A row of table {table.name!r} must be a JSON object.")
    out: dict[str, Any] = {}
    for name, value in doc.items():
        if not isinstance(name, str) or not table.has_column(name) or (
            known is not None and name not in known
        ):
            raise WireError(
                f"Unknown column {name!r} in table {table.name!r}."
                + did_you_mean(str(name), table.column_names)
            )
        out[name] = decode_value(table, table.column(name), value)
    if not partial:
        for c in table.columns:
            if c.name not in out:
                if not c.nullable and (known is None or c.name in known):
                    raise WireError(f"Missing value for column {table.name}.{c.name}.")
                out[c.name] = None
    return out


def decode_key(table: Table, doc: Any) -> tuple[Any, ...]:
    """A primary key given as an object ``{"id": 3}`` or a list ``[3]`` -> a tuple."""
    pk = table.primary_key
    if isinstance(doc, list):
        if len(doc) != len(pk):
            raise WireError(
                f"The key of table {table.name!r} has {len(pk)} columns ({', '.join(pk)}), "
                f"not {len(doc)}."
            )
        doc = dict(zip(pk, doc, strict=True))
    if not isinstance(doc, Mapping):
        raise WireError(f"A key of table {table.name!r} must be an object or a list.")
    missing = [k for k in pk if k not in doc]
    if missing:
        raise WireError(f"The key of table {table.name!r} is missing {', '.join(missing)}.")
    extra = [k for k in doc if k not in pk]
    if extra:
        raise WireError(
            f"{', '.join(map(str, extra))} is not part of the key of table {table.name!r} "
            f"({', '.join(pk)})."
        )
    return tuple(decode_value(table, table.column(k), doc[k]) for k in pk)


def value_bytes(value: Any) -> int:
    """Encoded size of one value: what a JSON encoder would write, roughly."""
    if value is None or isinstance(value, bool):
        return 4
    if isinstance(value, int | float):
        return 8
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dt.datetime):
        return 8
    return len(orjson.dumps(value))


def row_bytes(row: Mapping[str, Any]) -> int:
    """The byte estimate of one row held in a local store (see the module docstring)."""
    return ROW_OVERHEAD_BYTES + sum(VALUE_OVERHEAD_BYTES + value_bytes(v) for v in row.values())
