"""Grouped aggregates maintained from row changes.

Per group the view keeps the row count and, per measure, what it needs to answer without the
rows: count(column) the non-null count; sum and avg the non-null count and an exact total
(``Fraction`` for float columns, so adding and taking away never drifts); min and max the
non-null count and the current extreme. Taking away the extreme marks the measure stale; at
the end of the batch it is refilled with one ``scan`` (where AND group AND column IS NOT NULL,
ordered by the column, limit 1). A query without groupBy has exactly one group, present even
when no row matches (count 0, the others NULL), as in SQL.

A row's old contribution is read from its old image when the where is a function of the row
alone. With EXISTS the answer also depends on related rows (the store holds only the new
state), so such views remember the image each member row contributed.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ..predicate import compile_predicate, compile_sort_key
from ..query import And, Compare, Condition, IsNull, Measure, OrderBy, Query
from ..schema import ColumnType
from .changes import Delta, Key, ResultChange, ResultRow, Row
from .exists import has_exists
from .tree import Context


class _Group:
    __slots__ = ("extreme", "n", "rows", "stale", "total")

    def __init__(self, measures: int) -> None:
        self.rows = 0
        self.n = [0] * measures  # non-null count per measure
        self.total: list[Any] = [0] * measures
        self.extreme: list[Any] = [None] * measures
        self.stale = [False] * measures


class AggregateView:
    def __init__(self, ctx: Context, sub_id: str, query: Query) -> None:
        assert query.aggregate is not None
        self.ctx = ctx
        self.sub_id = sub_id
        self.query = query
        self.group_by = query.aggregate.group_by
        self.measures = query.aggregate.measures
        table = ctx.schema.table(query.table)
        self.pk = table.primary_key
        self._float = [m.column is not None and table.column(m.column).type is ColumnType.FLOAT
                       for m in self.measures]
        self.keep = compile_predicate(query.where, ctx.schema, query.table, ctx.related)
        self.members: dict[Key, Row] | None = {} if has_exists(query.where) else None
        self.groups: dict[Key, _Group] = {}
        self.touched: dict[Key, Row | None] = {}
        self.delta = Delta()
        self._order = compile_sort_key(tuple(OrderBy(c) for c in self.group_by))

    def hydrate(self) -> ResultChange:
        self.groups.clear()
        if self.members is not None:
            self.members.clear()
        q = self.query
        order = tuple(OrderBy(k) for k in self.pk)
        for row in self.ctx.store.scan(Query(q.table, q.where, order)):
            self._add(row)
            if self.members is not None:
                self.members[tuple(row[k] for k in self.pk)] = row
        self.touched.clear()
        return ResultChange(added=self.occurrences(), reset=True)

    def reset(self) -> ResultChange:
        return self.hydrate()

    def close(self) -> None:
        self.groups.clear()

    def change(self, key: Key, old: Row | None, new: Row | None) -> None:
        if self.members is not None:
            old = self.members.pop(key, None)
        elif old is not None and not self.keep(old):
            old = None
        if new is not None and not self.keep(new):
            new = None
        if old is not None:
            self._remove(old)
        if new is not None:
            self._add(new)
            if self.members is not None:
                self.members[key] = new

    def _group(self, row: Row) -> tuple[Key, _Group]:
        g = tuple(row[c] for c in self.group_by)
        if g not in self.touched:
            self.touched[g] = self._output(g)
        group = self.groups.get(g)
        if group is None:
            group = self.groups[g] = _Group(len(self.measures))
        return g, group

    def _add(self, row: Row) -> None:
        _, group = self._group(row)
        group.rows += 1
        for i, m in enumerate(self.measures):
            v = None if m.column is None else row[m.column]
            if v is None:
                continue
            group.n[i] += 1
            if m.fn in ("sum", "avg"):
                group.total[i] += Fraction(v) if self._float[i] else v
            elif m.fn in ("min", "max") and not group.stale[i]:
                ext = group.extreme[i]
                if ext is None or (v < ext if m.fn == "min" else v > ext):
                    group.extreme[i] = v

    def _remove(self, row: Row) -> None:
        g, group = self._group(row)
        group.rows -= 1
        for i, m in enumerate(self.measures):
            v = None if m.column is None else row[m.column]
            if v is None:
                continue
            group.n[i] -= 1
            if m.fn in ("sum", "avg"):
                group.total[i] -= Fraction(v) if self._float[i] else v
            elif m.fn in ("min", "max") and v == group.extreme[i]:
                group.stale[i] = True
        if group.rows == 0 and self.group_by:
            del self.groups[g]

    def _refill(self, g: Key, group: _Group, i: int, m: Measure) -> None:
        group.stale[i] = False
        if group.n[i] == 0 or m.column is None:
            group.extreme[i] = None
            return
        q = self.query
        terms: list[Condition] = [] if q.where is None else [q.where]
        for col, v in zip(self.group_by, g, strict=True):
            terms.append(IsNull(col) if v is None else Compare(col, "=", v))
        terms.append(IsNull(m.column, negated=True))
        order = (OrderBy(m.column, m.fn == "max"), *(OrderBy(k) for k in self.pk))
        where = terms[0] if len(terms) == 1 else And(tuple(terms))
        found = self.ctx.store.scan(Query(q.table, where, order, 1))
        group.extreme[i] = found[0][m.column] if found else None

    def finish(self) -> ResultChange:
        for g, before in self.touched.items():
            group = self.groups.get(g)
            if group is not None:
                for i, m in enumerate(self.measures):
                    if group.stale[i]:
                        self._refill(g, group, i, m)
            self.delta.record((), self.query.table, g, before, self._output(g))
        self.touched.clear()
        return self.delta.change()

    def _output(self, g: Key) -> Row | None:
        group = self.groups.get(g)
        if group is None:
            if self.group_by:
                return None
            group = _Group(len(self.measures))
        out: dict[str, Any] = dict(zip(self.group_by, g, strict=True))
        for i, m in enumerate(self.measures):
            n = group.n[i]
            if m.fn == "count":
                out[m.alias] = group.rows if m.column is None else n
            elif m.fn == "sum":
                out[m.alias] = None if n == 0 else _number(group.total[i], self._float[i])
            elif m.fn == "avg":
                out[m.alias] = None if n == 0 else float(Fraction(group.total[i]) / n)
            else:
                out[m.alias] = None if n == 0 else group.extreme[i]
        return out

    def rows(self) -> list[dict[str, Any]]:
        keys = list(self.groups) if self.group_by else [()]
        out = [self._output(g) for g in keys]
        return sorted((dict(r) for r in out if r is not None), key=self._order)

    def occurrences(self) -> tuple[ResultRow, ...]:
        return tuple(
            ResultRow((), self.query.table, tuple(r[c] for c in self.group_by), r)
            for r in self.rows()
        )


def _number(total: Any, is_float: bool) -> Any:
    return float(total) if is_float else total
