"""Assembling the hierarchical result of a query from its row sets, in pure Python.

``nest_rows(query, schema, rows_by_path)`` takes the rows of each path and returns the root rows
in the query's order, each a new dict with one extra key per related child: a list for
one_to_many and many_to_many, a row or None for many_to_one. Junction rows of a many-to-many
path are read from ``rows_by_path[junction_key(path)]``.

By default the rows are exactly the row sets of ``compile_row_sets``: their where and start are
already applied, so each parent's children are its linked rows in the child's order, cut at the
child's limit. (That is exact: a row kept for another parent that also links to this one ranks
after this parent's own top rows, since where and start do not depend on the parent.) The rows
may then be in wire form (ISO timestamp strings order as the datetimes do). With
``refilter=True`` the rows may be any superset, e.g. whole tables: where and start are applied
again, per parent, and conditions with EXISTS need a ``lookup``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .predicate import RelatedRows, Row, compile_predicate, compile_sort_key, compile_start_filter
from .query import Query
from .schema import Relationship, Schema

Rows = Sequence[Row]


def junction_key(path: str) -> str:
    """The ``rows_by_path`` key of the junction rows of the many-to-many child at ``path``."""
    return f"{path}#through"


def selector(
    query: Query, schema: Schema, refilter: bool, lookup: RelatedRows | None = None
) -> Callable[[Iterable[Row]], list[Row]]:
    """(where and start, when ``refilter``,) order and limit over some rows."""
    keep: Callable[[Row], bool] = _always
    after: Callable[[Row], bool] = _always
    if refilter:
        keep = compile_predicate(query.where, schema, query.table, lookup)
        after = compile_start_filter(query)
    key = compile_sort_key(query.order_by)
    limit = query.limit

    def select(rows: Iterable[Row]) -> list[Row]:
        chosen = sorted((r for r in rows if keep(r) and after(r)), key=key)
        return chosen if limit is None else chosen[:limit]

    return select


def _always(row: Row) -> bool:
    return True


def nest_rows(
    query: Query,
    schema: Schema,
    rows_by_path: Mapping[str, Rows],
    *,
    refilter: bool = False,
    lookup: RelatedRows | None = None,
) -> list[dict[str, Any]]:
    """The hierarchical result of a bound row query from its rows per path (see above)."""
    roots = selector(query, schema, refilter, lookup)(rows_by_path.get("", ()))
    return _nest(query, schema, "", roots, rows_by_path, refilter, lookup)


def _nest(
    query: Query,
    schema: Schema,
    path: str,
    rows: list[Row],
    rows_by_path: Mapping[str, Rows],
    refilter: bool,
    lookup: RelatedRows | None,
) -> list[dict[str, Any]]:
    out = [dict(r) for r in rows]
    table = schema.table(query.table)
    for related in query.related:
        rel = table.relationship(related.relationship)
        child_path = f"{path}.related.{rel.name}" if path else f"related.{rel.name}"
        candidates = _candidates(rel, schema, child_path, rows_by_path)
        select = selector(related.query, schema, refilter, lookup)
        per_parent = [select(candidates(r)) for r in rows]
        flat = [c for children in per_parent for c in children]
        nested = iter(
            _nest(related.query, schema, child_path, flat, rows_by_path, refilter, lookup)
        )
        for parent, children in zip(out, per_parent, strict=True):
            built = [next(nested) for _ in children]
            if rel.kind == "many_to_one":
                parent[rel.name] = built[0] if built else None
            else:
                parent[rel.name] = built
    return out


def _index(rows: Iterable[Row], columns: tuple[str, ...]) -> dict[tuple[Any, ...], list[Row]]:
    index: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        key = tuple(r[c] for c in columns)
        if None not in key:
            index.setdefault(key, []).append(r)
    return index


def _candidates(
    rel: Relationship, schema: Schema, path: str, rows_by_path: Mapping[str, Rows]
) -> Callable[[Row], list[Row]]:
    """For a parent row, the rows of ``path`` linked to it (NULL links to nothing)."""
    targets = _index(rows_by_path.get(path, ()), rel.target_columns)
    if rel.through is None:
        source = rel.source_columns

        def direct(parent: Row) -> list[Row]:
            return targets.get(tuple(parent[c] for c in source), [])

        return direct
    through = rel.through
    links = _index(rows_by_path.get(junction_key(path), ()), through.source_columns)
    pk = schema.table(rel.target).primary_key

    def via_junction(parent: Row) -> list[Row]:
        found: dict[tuple[Any, ...], Row] = {}
        for j in links.get(tuple(parent[c] for c in rel.source_columns), []):
            for child in targets.get(tuple(j[c] for c in through.target_columns), []):
                found.setdefault(tuple(child[k] for k in pk), child)
        return list(found.values())

    return via_junction
