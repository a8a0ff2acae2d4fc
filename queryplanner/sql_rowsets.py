"""The rows of a query's whole result, one SQL per (path, table): what hydration sends.

For a query with ``related`` children, the result is the root rows plus, for every parent row,
its children chosen by the child query's where/start/order/limit *per parent*. Each level is a
CTE: the root is a plain SELECT with its limit; a child level ranks the target rows with
``row_number() OVER (PARTITION BY <link columns> ORDER BY <child order>)`` among the rows linked
to some row of the parent level and keeps ranks up to the child's limit. A many-to-many level
ranks (parent link value, target row) pairs found through the junction table, and also yields
the junction rows that link a kept pair, so a client can re-assemble the nesting itself.

Paths are those of ``Query.walk``: ``""`` for the root, ``related.comments``,
``related.comments.related.creator``. Junction rows come under the same path with the junction
table's name (``nest_rows`` reads them from ``junction_key(path)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .query import Query
from .schema import Relationship, Schema, Table
from .sql_expr import (
    Emitter,
    Frag,
    Rules,
    colref,
    ident,
    join,
    order_sql,
    select_columns,
    select_rows,
    where_sql,
)
from .sql_nest import junction_key

_RANK = '"$rn"'


def _link(i: int) -> str:
    return f'"$p{i}"'


@dataclass(frozen=True)
class RowSetSQL:
    """One SELECT giving the rows of ``table`` that the result holds at ``path``."""

    path: str
    table: str
    sql: str
    params: tuple[Any, ...]
    junction: bool = False

    @property
    def key(self) -> str:
        """Where ``nest_rows`` expects these rows in ``rows_by_path``."""
        return junction_key(self.path) if self.junction else self.path


@dataclass(frozen=True)
class _Level:
    name: str  # the CTE name
    table: Table
    query: Query


def compile_row_sets(
    query: Query, schema: Schema, *, rules: Rules | None = None
) -> list[RowSetSQL]:
    """Every table row that belongs to the result of a bound query, one SQL per (path, table).

    An aggregate query's row set is all rows its groups are computed from (its where, no limit).
    """
    if query.aggregate is not None:
        query = Query(query.table, query.where, order_by=(), limit=None)
    em = Emitter(schema, rules)
    out: list[RowSetSQL] = []
    root_table = schema.table(query.table)
    root = _Level('"$r0"', root_table, query)
    alias = em.alias()
    root_cte = select_rows(em, query, root_table, alias, select_columns(root_table))
    _emit(out, "", root, [Frag(f"{root.name} AS (") + root_cte + ")"], junction=None)
    _children(em, schema, out, "", root, [Frag(f"{root.name} AS (") + root_cte + ")"])
    return out


def _children(
    em: Emitter,
    schema: Schema,
    out: list[RowSetSQL],
    path: str,
    parent: _Level,
    ctes: list[Frag],
) -> None:
    for rel_q in parent.query.related:
        rel = parent.table.relationship(rel_q.relationship)
        child_path = f"{path}.related.{rel.name}" if path else f"related.{rel.name}"
        target = schema.table(rel.target)
        level = _Level(f'"$r{len(ctes)}"', target, rel_q.query)
        if rel.through is None:
            cte = _direct(em, parent, rel, level)
            junction = None
        else:
            cte, junction = _many_to_many(em, schema, parent, rel, level)
        chain = [*ctes, Frag(f"{level.name} AS (") + cte + ")"]
        jname = rel.through.table if rel.through is not None else ""
        _emit(out, child_path, level, chain, junction, jname)
        _children(em, schema, out, child_path, level, chain)


def _emit(
    out: list[RowSetSQL],
    path: str,
    level: _Level,
    ctes: list[Frag],
    junction: Frag | None,
    junction_table: str = "",
) -> None:
    cols = ", ".join(colref("r", level.table, c) for c in level.table.column_names)
    with_ = "WITH " + join(ctes, ", ")
    body = Frag(f" SELECT DISTINCT {cols} FROM {level.name} AS r")
    if level.query.order_by:
        body = body + f" ORDER BY {order_sql(level.query.order_by, level.table, 'r')}"
    rows = with_ + body
    out.append(RowSetSQL(path, level.table.name, rows.sql, rows.params))
    if junction is not None:
        jsql = with_ + junction
        out.append(RowSetSQL(path, junction_table, jsql.sql, jsql.params, True))


def _member(parent: _Level, parent_cols: tuple[str, ...], ref_cols: list[str]) -> str:
    """``EXISTS`` a row of the parent level whose ``parent_cols`` equal ``ref_cols``."""
    eq = " AND ".join(
        f"{colref('p', parent.table, pc)} = {ref}"
        for pc, ref in zip(parent_cols, ref_cols, strict=True)
    )
    return f"EXISTS (SELECT 1 FROM {parent.name} AS p WHERE {eq})"


def _ranked(inner: Frag, partition: list[str], level: _Level, outer: list[str]) -> Frag:
    """Keep the first ``limit`` rows of ``inner`` per partition in the child's order."""
    q = level.query
    if q.limit is None:
        return Frag(f"SELECT {', '.join(outer)} FROM (") + inner + ") AS d"
    order = order_sql(q.order_by, level.table, "d")
    ranked = (
        Frag(f"SELECT d.*, row_number() OVER (PARTITION BY {', '.join(partition)} ORDER BY ")
        + f"{order}) AS {_RANK} FROM ("
        + inner
        + ") AS d"
    )
    return (
        Frag(f"SELECT {', '.join(outer)} FROM (")
        + ranked
        + Frag(f") AS d WHERE {_RANK} <= ?", (q.limit,))
    )


def _direct(em: Emitter, parent: _Level, rel: Relationship, level: _Level) -> Frag:
    t = em.alias()
    table = level.table
    cols = ", ".join(colref(t, table, c) for c in table.column_names)
    member = _member(parent, rel.source_columns, [colref(t, table, c) for c in rel.target_columns])
    inner = Frag(f"SELECT {cols} FROM {ident(table.name)} AS {t} WHERE ") + where_sql(
        em, level.query, table, t, [Frag(member)]
    )
    outer = [colref("d", table, c) for c in table.column_names]
    partition = [colref("d", table, c) for c in rel.target_columns]
    return _ranked(inner, partition, level, outer)


def _many_to_many(
    em: Emitter, schema: Schema, parent: _Level, rel: Relationship, level: _Level
) -> tuple[Frag, Frag]:
    assert rel.through is not None
    through = rel.through
    junction = schema.table(through.table)
    table = level.table
    t, j = em.alias(), em.alias()
    links = [
        f"{colref(j, junction, c)} AS {_link(i)}" for i, c in enumerate(through.source_columns)
    ]
    cols = ", ".join([*links, *(colref(t, table, c) for c in table.column_names)])
    on = " AND ".join(
        f"{colref(j, junction, jc)} = {colref(t, table, tc)}"
        for jc, tc in zip(through.target_columns, rel.target_columns, strict=True)
    )
    member = _member(
        parent, rel.source_columns, [colref(j, junction, c) for c in through.source_columns]
    )
    jrule = em.rule(junction.name, j)
    extra = [Frag(member), *([jrule] if jrule is not None else [])]
    inner = Frag(
        f"SELECT DISTINCT {cols} FROM {ident(junction.name)} AS {j} JOIN {ident(table.name)} "
        f"AS {t} ON {on} WHERE "
    ) + where_sql(em, level.query, table, t, extra)
    link_refs = [f"d.{_link(i)}" for i in range(len(through.source_columns))]
    outer = [*link_refs, *(colref("d", table, c) for c in table.column_names)]
    cte = _ranked(inner, link_refs, level, outer)
    # The junction rows linking a kept (parent, child) pair, under the junction's own rule.
    jj = em.alias()
    pair = " AND ".join(
        [
            *(
                f"x.{_link(i)} = {colref(jj, junction, c)}"
                for i, c in enumerate(through.source_columns)
            ),
            *(
                f"{colref('x', table, tc)} = {colref(jj, junction, jc)}"
                for jc, tc in zip(through.target_columns, rel.target_columns, strict=True)
            ),
        ]
    )
    jcols = ", ".join(colref(jj, junction, c) for c in junction.column_names)
    jsel = Frag(
        f" SELECT {jcols} FROM {ident(junction.name)} AS {jj} WHERE EXISTS (SELECT 1 FROM "
        f"{level.name} AS x WHERE {pair})"
    )
    jrule2 = em.rule(junction.name, jj)
    if jrule2 is not None:
        jsel = jsel + " AND " + jrule2
    return cte, jsel
