"""querysync's I/O-free core: schema, query model, validation, compilation, coverage, planning.

    from queryplanner import Schema, Query, parse_query, to_sql, covers, plan
"""

from .builder import QueryBuilder, as_query, col, exists, measure, not_exists, table
from .compile_cache import CompileCache, CompiledQuery, compile_query
from .coverage import CachedRows, CompleteQuery, Coverage, covers
from .coverage_index import CoverageIndex
from .coverage_rows import RowsInMemory
from .describe import describe
from .errors import QueryError, QueryPlannerError, SchemaError
from .planner import CacheState, Plan, Route, plan
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
    "CacheState",
    "CachedRows",
    "Column",
    "ColumnType",
    "Compare",
    "CompileCache",
    "CompiledQuery",
    "CompleteQuery",
    "Condition",
    "Coverage",
    "CoverageIndex",
    "Exists",
    "InList",
    "IsNull",
    "Like",
    "Limits",
    "Measure",
    "Not",
    "Or",
    "OrderBy",
    "Plan",
    "Query",
    "QueryBuilder",
    "QueryError",
    "QueryPlannerError",
    "Related",
    "Relationship",
    "Route",
    "RowsInMemory",
    "Schema",
    "SchemaError",
    "Start",
    "Table",
    "Through",
    "as_query",
    "bind",
    "col",
    "compile_predicate",
    "compile_query",
    "compile_sort_key",
    "covers",
    "describe",
    "evaluate",
    "exists",
    "measure",
    "not_exists",
    "parse_query",
    "plan",
    "query_id",
    "table",
]
