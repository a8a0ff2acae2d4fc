"""Assembling the hierarchical result of a query from its row sets, in pure Python.

``nest_rows(query, schema, rows_by_path)`` takes candidate rows per path (exactly what
``compile_row_sets`` selects, or any superset such as a local store's whole tables) and returns
the root rows in the query's order, each a new dict with one extra key per related child: a list
for one_to_many and many_to_many, a row or None for many_to_one. Each parent's children are
chosen by the child query's where, start, order and limit, per parent, as the SQL does.

Conditions with EXISTS need the related rows; without a ``lookup`` they are taken as already
applied (true for the server's row sets). Junction rows of a many-to-many path are read from
``rows_by_path[junction_key(path)]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .predicate import RelatedRows, Row, compile_predicate, compile_sort_key, compile_start_filter
from .query import Condition, Exists, Not, Query
from .schema import Relationship, Schema

Rows = Sequence[Row]


def junction_key(path: str) -> str:
    """The ``rows_by_path`` key of the junction rows of the many-to-many child at ``path``."""
    return f"{path}#through"


def has_exists(cond: Condition | None) -> bool:
    if cond is None:
        return False
    if isinstance(cond, Exists):
        return True
    if isinstance(cond, Not):
        return has_exists(cond.term)
    terms = getattr(cond, "terms", ())
    return any(has_exists(t) for t in terms)


def selector(
    query: Query, schema: Schema, lookup: RelatedRows | None = None
) -> Callable[[Iterable[Row]], list[Row]]:
    """where (unless it needs a lookup we lack), start, order and limit over some rows."""
    if query.where is not None and (lookup is not None or not has_exists(query.where)):
        keep = compile_predicate(query.where, schema, query.table, lookup)
    else:
        keep = _always
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
    lookup: RelatedRows | None = None,
) -> list[dict[str, Any]]:
    """The hierarchical result of a bound row query from its candidate rows per path."""
    roots = selector(query, schema, lookup)(rows_by_path.get("", ()))
    return _nest(query, schema, "", roots, rows_by_path, lookup)


def _nest(
    query: Query,
    schema: Schema,
    path: str,
    rows: list[Row],
    rows_by_path: Mapping[str, Rows],
    lookup: RelatedRows | None,
) -> list[dict[str, Any]]:
    out = [dict(r) for r in rows]
    table = schema.table(query.table)
    for related in query.related:
        rel = table.relationship(related.relationship)
        child_path = f"{path}.related.{rel.name}" if path else f"related.{rel.name}"
        candidates = _candidates(rel, schema, child_path, rows_by_path)
        select = selector(related.query, schema, lookup)
        per_parent = [select(candidates(r)) for r in rows]
        flat = [c for children in per_parent for c in children]
        nested = iter(_nest(related.query, schema, child_path, flat, rows_by_path, lookup))
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
