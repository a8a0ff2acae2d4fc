"""Fixtures for the browser tests: a small seeded database, the demo server as a real process on
127.0.0.1, and Debian's Chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from server.demo.process import CHROMIUM, CHROMIUM_ARGS, DemoProcess
from server.demo.seed import seed

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
ISSUES = 1_500


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded once per session; tests serve a copy (they write) and query this one as oracle."""
    db = tmp_path_factory.mktemp("demo") / "template.duckdb"
    seed(db, issues=ISSUES, progress=False)
    return db


@pytest.fixture
def oracle(template_db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(template_db), read_only=True)
    yield con
    con.close()


@pytest.fixture
def demo(template_db: Path, tmp_path: Path) -> Iterator[DemoProcess]:
    db = tmp_path / "demo.duckdb"
    shutil.copyfile(template_db, db)
    proc = DemoProcess(db, issues=ISSUES)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is missing: run scripts/ensure_chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS), timeout=60_000)
        yield b
        b.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.set_default_timeout(15_000)
    yield ctx
    ctx.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
