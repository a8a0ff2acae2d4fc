"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

from queryplanner import Schema

ROOT = Path(__file__).resolve().parent.parent
DEMO_SCHEMA_PATH = ROOT / "server" / "demo" / "schema.json"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def demo_schema() -> Schema:
    """The Linear-like schema of the demo (users, teams, projects, labels, issues, comments)."""
    return Schema.load(DEMO_SCHEMA_PATH)
