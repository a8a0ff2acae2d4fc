"""The query core's public surface and its one-way dependencies."""

from __future__ import annotations

import ast
from pathlib import Path

import queryplanner

ROOT = Path(__file__).resolve().parents[2]


def test_all_names_exist_once() -> None:
    for name in queryplanner.__all__:
        assert hasattr(queryplanner, name), name
    assert len(set(queryplanner.__all__)) == len(queryplanner.__all__)


def _imported_modules(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_queryplanner_is_pure() -> None:
    """queryplanner imports nothing of ours and no I/O library."""
    forbidden = {"cache", "server", "duckdb", "asyncio", "socket", "httpx", "starlette",
                 "uvicorn", "sse_starlette", "threading"}
    assert _imported_modules("queryplanner") & forbidden == set()


def test_cache_and_server_never_import_each_other() -> None:
    assert "server" not in _imported_modules("cache")
    assert "cache" not in _imported_modules("server")
