"""The demo data set: deterministic, complete, and shaped like the schema."""

from __future__ import annotations

from pathlib import Path

import duckdb

from server.demo.seed import STATUSES, seed, seeded


def _dump(db: Path) -> list[tuple[object, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            'SELECT id, title, status, priority, assignee_id, created, modified FROM "issue" '
            "ORDER BY id"
        ).fetchall()
    finally:
        con.close()


def test_seed_is_deterministic_and_fills_every_table(tmp_path: Path) -> None:
    a, b = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    counts = seed(a, issues=2_000, progress=False)
    seed(b, issues=2_000, progress=False)
    assert counts["issue"] == 2_000 and counts["comment"] == 6_000
    assert all(n > 0 for n in counts.values()), counts
    assert _dump(a) == _dump(b)
    assert seeded(a) and not seeded(tmp_path / "missing.duckdb")
    con = duckdb.connect(str(a), read_only=True)
    try:
        statuses = {r[0] for r in con.execute('SELECT DISTINCT status FROM "issue"').fetchall()}
        assert statuses == set(STATUSES)
        bad = con.execute(
            'SELECT count(*) FROM "issue" WHERE modified < created OR priority NOT BETWEEN 0 AND 4'
        ).fetchone()
        assert bad == (0,)
        orphans = con.execute(
            'SELECT count(*) FROM "comment" c LEFT JOIN "issue" i ON i.id = c.issue_id '
            "WHERE i.id IS NULL"
        ).fetchone()
        assert orphans == (0,)
    finally:
        con.close()
