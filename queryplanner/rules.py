"""Read rules: which rows of each table a user may read, written in the query language.

A rules document maps table names to a condition (the JSON form of a query's ``where``), or to
``true`` (every row) / ``false`` (no row); tables not named are readable in full. Wherever a
condition takes a value, ``{"auth": "key"}`` stands for that key of the auth context (the
user's claims), e.g.::

    {"issue": {"or": [{"column": "visibility", "op": "=", "value": "public"},
                      {"column": "creator_id", "op": "=", "value": {"auth": "user_id"}}]},
     "comment": {"exists": "issue"}}

``parse_rules(doc, schema)`` checks the document once (``SchemaError`` for an unknown table,
``QueryError`` with the path, e.g. ``issue.or[1].value``, for a bad condition) and returns a
``RuleSet``; ``RuleSet.bind(auth)`` gives one ``Condition`` per restricted table for that user.

NULL auth values. A missing key or a ``None`` value behaves as SQL NULL: a comparison with it is
unknown, so it never admits a row, and ``NOT`` of it does not admit one either. Since the AST has
no NULL literal, ``bind`` folds the unknowns away: it rewrites each rule into the condition
"this rule is TRUE" (pushing NOT inward), where an unknown comparison becomes "never". The
rows admitted are exactly those SQL would admit with a NULL parameter. An ``in`` list given by
the auth context may be empty (the user is in no team): ``in []`` is false, ``not in []`` true.

``apply_read_rules(query, schema, rules)`` ANDs the bound rules into a query's AST: the root
where, every related child's where and every EXISTS where (a rule's own conditions are left as
they are: rules filter, they do not leak rows of the tables they read). A many-to-many EXISTS
or child also passes through the junction table, which has no place in the AST: the SQL
compiler applies the junction's rule there (``compile_select(..., rules=...)``); a Python
``RelatedRows`` lookup must hide junction rows its rule forbids itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import QueryError, SchemaError, did_you_mean
from .query import And, Condition, Exists, IsNull, Not, Or, Query, Related
from .schema import ColumnType, Schema, Table
from .validate import parse_query

_SAMPLE: dict[ColumnType, Any] = {
    ColumnType.INTEGER: 0,
    ColumnType.FLOAT: 0.0,
    ColumnType.TEXT: "",
    ColumnType.BOOLEAN: False,
    ColumnType.TIMESTAMP: "2000-01-01T00:00:00",
}


class _Const:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEVER = _Const("NEVER")
ALWAYS = _Const("ALWAYS")


def _auth_key(value: Any, path: str) -> str | None:
    """The auth key of a ``{"auth": key}`` placeholder, or None for an ordinary value."""
    if not isinstance(value, Mapping) or "auth" not in value:
        return None
    if len(value) != 1 or not isinstance(value["auth"], str) or not value["auth"]:
        raise QueryError(path, 'An auth placeholder is {"auth": "<key of the auth context>"}.')
    return str(value["auth"])


@dataclass(frozen=True)
class RuleSet:
    """Checked read rules; ``bind`` them to a user's auth context."""

    schema: Schema
    docs: Mapping[str, Any]

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(self.docs)

    def bind(self, auth: Mapping[str, Any]) -> dict[str, Condition]:
        """One condition per restricted table for this auth context."""
        out: dict[str, Condition] = {}
        for name, doc in self.docs.items():
            table = self.schema.table(name)
            if doc is True:
                continue
            folded = NEVER if doc is False else _fold(_substitute(doc, auth, name), True)
            if folded is ALWAYS:
                continue
            if folded is NEVER:
                # The primary key is never NULL: a condition that admits no row.
                out[name] = IsNull(table.primary_key[0])
                continue
            cond = _parse(self.schema, table, folded, name)
            out[name] = cond
        return out


def parse_rules(doc: Mapping[str, Any], schema: Schema) -> RuleSet:
    """Check a rules document against the schema (see the module docstring)."""
    if not isinstance(doc, Mapping):
        raise SchemaError(f"Read rules must be an object keyed by table, not {type(doc).__name__}.")
    for name, cond in doc.items():
        if not isinstance(name, str) or not schema.has_table(name):
            raise SchemaError(
                f"Read rules name unknown table {name!r}."
                + did_you_mean(str(name), schema.table_names)
            )
        if isinstance(cond, bool):
            continue
        sample = _substitute(cond, None, name, schema.table(name), schema)
        _parse(schema, schema.table(name), sample, name)
    return RuleSet(schema, dict(doc))


def _parse(schema: Schema, table: Table, where: Any, path: str) -> Condition:
    try:
        q = parse_query({"table": table.name, "where": where}, schema)
    except QueryError as exc:
        sub = exc.path.removeprefix("where")
        raise QueryError(path + sub, exc.reason) from None
    assert q.where is not None
    return q.where


def _substitute(
    doc: Any,
    auth: Mapping[str, Any] | None,
    path: str,
    table: Table | None = None,
    schema: Schema | None = None,
) -> Any:
    """Replace placeholders by auth values (or, to check a rule, by samples of the column type).

    A None auth value stays None: ``_fold`` treats it as SQL NULL.
    """
    if isinstance(doc, list):
        return [_substitute(d, auth, f"{path}[{i}]", table, schema) for i, d in enumerate(doc)]
    if not isinstance(doc, Mapping):
        return doc
    out: dict[Any, Any] = {}
    for key, value in doc.items():
        kpath = f"{path}.{key}"
        if key == "value" and "column" in doc:
            out[key] = _value(value, auth, kpath, doc, table)
        elif key == "where" and table is not None and schema is not None:
            rel = next((doc[k] for k in ("exists", "notExists") if k in doc), None)
            target = table
            if isinstance(rel, str) and table.has_relationship(rel):
                target = schema.table(table.relationship(rel).target)
            out[key] = _substitute(value, auth, kpath, target, schema)
        else:
            out[key] = _substitute(value, auth, kpath, table, schema)
    return out


def _value(
    value: Any,
    auth: Mapping[str, Any] | None,
    path: str,
    leaf: Mapping[str, Any],
    table: Table | None,
) -> Any:
    def one(v: Any, vpath: str) -> Any:
        key = _auth_key(v, vpath)
        if key is None:
            return v
        if auth is not None:
            return auth.get(key)
        col = leaf.get("column")
        if table is None or not isinstance(col, str) or not table.has_column(col):
            return 0  # parse_query reports the bad column itself
        return _SAMPLE.get(table.column(col).type, 0)

    if isinstance(value, list):
        return [one(v, f"{path}[{i}]") for i, v in enumerate(value)]
    resolved = one(value, path)
    if (
        auth is None
        and resolved is not value
        and str(leaf.get("op", "")).lower()
        in (
            "in",
            "not in",
        )
    ):
        return [resolved]  # a placeholder standing for a whole list
    return resolved


def _fold(doc: Any, want: bool) -> Any:
    """The JSON condition "doc is TRUE" (want=True) or "doc is FALSE", with NULLs folded."""
    if not isinstance(doc, Mapping):
        return doc  # parse_query reports it
    if "and" in doc or "or" in doc:
        key = "and" if "and" in doc else "or"
        terms = doc[key]
        if not isinstance(terms, list):
            return doc
        # TRUE(a AND b) = TRUE(a) AND TRUE(b); FALSE(a AND b) = FALSE(a) OR FALSE(b).
        conj = (key == "and") == want
        out_key = "and" if conj else "or"
        absorbing, neutral = (NEVER, ALWAYS) if conj else (ALWAYS, NEVER)
        parts = [_fold(t, want) for t in terms]
        if absorbing in parts:
            return absorbing
        parts = [p for p in parts if p is not neutral]
        if not parts:
            return neutral
        return parts[0] if len(parts) == 1 else {out_key: parts}
    if "not" in doc:
        return _fold(doc["not"], not want)
    for key in ("exists", "notExists"):
        if key in doc:
            return _fold_exists(doc, key, want)
    return _fold_leaf(doc, want)


def _fold_exists(doc: Mapping[str, Any], key: str, want: bool) -> Any:
    rel = doc[key]
    positive = (key == "exists") == want
    where = doc.get("where")
    inner = ALWAYS if where is None else _fold(where, True)
    if inner is NEVER:  # no related row can match: EXISTS is false
        return NEVER if positive else ALWAYS
    out: dict[str, Any] = {("exists" if positive else "notExists"): rel}
    if inner is not ALWAYS:
        out["where"] = inner
    return out


def _fold_leaf(doc: Mapping[str, Any], want: bool) -> Any:
    op = str(doc.get("op", "")).lower()
    value = doc.get("value")
    negated = {"not": dict(doc)}
    if op in ("in", "not in") and isinstance(value, list):
        known = [v for v in value if v is not None]
        has_null = len(known) < len(value)
        # x IN (a, NULL) is TRUE when x = a and otherwise unknown, never FALSE.
        member = {**doc, "op": "in", "value": known} if known else NEVER
        is_in = (op == "in") == want
        if is_in:
            return member
        if has_null:
            return NEVER
        return {**doc, "op": "not in", "value": known} if known else ALWAYS
    if "value" in doc and value is None and op not in ("is null", "is not null"):
        return NEVER  # a comparison with NULL is unknown: neither TRUE nor FALSE
    return dict(doc) if want else negated


def apply_read_rules(query: Query, schema: Schema, rules: Mapping[str, Condition]) -> Query:
    """AND each table's rule into every place the query reads that table (see the docstring)."""
    where = _and(_rewrite(query.where, schema, query.table, rules), rules.get(query.table))
    table = schema.table(query.table)
    related = tuple(
        Related(
            r.relationship,
            apply_read_rules(
                dataclasses.replace(r.query, table=table.relationship(r.relationship).target),
                schema,
                rules,
            ),
        )
        for r in query.related
    )
    return dataclasses.replace(query, where=where, related=related)


def _and(a: Condition | None, b: Condition | None) -> Condition | None:
    if a is None:
        return b
    if b is None:
        return a
    return And((a, b))


def _rewrite(
    cond: Condition | None, schema: Schema, table: str, rules: Mapping[str, Condition]
) -> Condition | None:
    if cond is None:
        return None
    if isinstance(cond, And | Or):
        terms = tuple(_rewrite(t, schema, table, rules) for t in cond.terms)
        return type(cond)(tuple(t for t in terms if t is not None))
    if isinstance(cond, Not):
        inner = _rewrite(cond.term, schema, table, rules)
        assert inner is not None
        return Not(inner)
    if isinstance(cond, Exists):
        target = schema.table(table).relationship(cond.relationship).target
        where = _and(_rewrite(cond.where, schema, target, rules), rules.get(target))
        return Exists(cond.relationship, where, cond.negated)
    return cond
