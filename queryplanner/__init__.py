"""querysync's I/O-free core: schema, query model, validation, compilation, coverage, planning.

    from queryplanner import Schema, Query, parse_query, to_sql, covers, plan
"""

from .builder import QueryBuilder, as_query, col, exists, measure, not_exists, table
from .errors import QueryError, QueryPlannerError, SchemaError
from .predicate import compile_predicate, compile_sort_key, evaluate
from .query import (
    Aggregate,
    And,
    Compare,
    Condition,
    Exists,
    InList,
    IsNull,
    Like,
    Measure,
    Not,
    Or,
    OrderBy,
    Query,
    Related,
    Start,
    query_id,
)
from .schema import Column, ColumnType, Relationship, Schema, Table, Through
from .validate import DEFAULT_LIMITS, Limits, bind, parse_query

__all__ = [
    "DEFAULT_LIMITS",
    "Aggregate",
    "And",
    "Column",
    "ColumnType",
    "Compare",
    "Condition",
    "Exists",
    "InList",
    "IsNull",
    "Like",
    "Limits",
    "Measure",
    "Not",
    "Or",
    "OrderBy",
    "Query",
    "QueryBuilder",
    "QueryError",
    "QueryPlannerError",
    "Related",
    "Relationship",
    "Schema",
    "SchemaError",
    "Start",
    "Table",
    "Through",
    "as_query",
    "bind",
    "col",
    "compile_predicate",
    "compile_sort_key",
    "evaluate",
    "exists",
    "measure",
    "not_exists",
    "parse_query",
    "query_id",
    "table",
]
