"""querysync's I/O-free core: schema, query model, validation, compilation, coverage, planning.

    from queryplanner import Schema, table, col, bind, compile_select, CoverageIndex, plan
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
from .rules import RuleSet, apply_read_rules, parse_rules
from .schema import Column, ColumnType, Relationship, Schema, Table, Through
from .sql import (
    DUCKDB_SETUP,
    CompiledSQL,
    RowSetSQL,
    compile_row_sets,
    compile_select,
    create_table_sql,
    nest_rows,
)
from .validate import DEFAULT_LIMITS, Limits, bind, parse_query

__all__ = [
    "DEFAULT_LIMITS",
    "DUCKDB_SETUP",
    "Aggregate",
    "And",
    "CacheState",
    "CachedRows",
    "Column",
    "ColumnType",
    "Compare",
    "CompileCache",
    "CompiledQuery",
    "CompiledSQL",
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
    "RowSetSQL",
    "RowsInMemory",
    "RuleSet",
    "Schema",
    "SchemaError",
    "Start",
    "Table",
    "Through",
    "apply_read_rules",
    "as_query",
    "bind",
    "col",
    "compile_predicate",
    "compile_query",
    "compile_row_sets",
    "compile_select",
    "compile_sort_key",
    "covers",
    "create_table_sql",
    "describe",
    "evaluate",
    "exists",
    "measure",
    "nest_rows",
    "not_exists",
    "parse_query",
    "parse_rules",
    "plan",
    "query_id",
    "table",
]
