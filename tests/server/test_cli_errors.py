"""The command line's errors a user can fix: one line on stderr, a non-zero status, no traceback.

Two real processes: this one runs a server on a DuckDB file, the CLI runs as a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from queryplanner import Schema
from server.cli import main
from server.db import DatabaseLocked, check_available
from server.demo.process import free_port
from server.testing import run_server

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "server" / "demo" / "schema.json"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "server.cli", "serve", "--schema", str(SCHEMA), "--anonymous"],
        ["-m", "server.cli", "demo", "--issues", "10"],
        ["-m", "server.demo.command", "--issues", "10"],  # what DemoProcess runs
    ],
    ids=["serve", "demo", "demo-module"],
)
def test_a_second_server_on_a_locked_database_file_fails_with_one_line(
    demo_schema: Schema, tmp_path: Path, command: list[str]
) -> None:
    """Regression: the second server died with DuckDB's raw traceback ("Could not set lock on
    file") from uvicorn's startup."""
    db = tmp_path / "held.duckdb"
    with run_server(demo_schema, db, anonymous=True) as url:
        done = cli(*command, "--db", str(db), "--port", str(free_port()))
        assert done.returncode == 1, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "Traceback" not in done.stderr and "IO Error" not in done.stderr
        assert lines[0] == (
            f"querysync: The database file {db} is in use by another process "
            f"(PID {os.getpid()}); stop that process or choose another file (--db)."
        )
        assert done.stdout == ""  # it never claimed to serve
        # The first server is untouched.
        assert httpx.get(url + "/schema", timeout=10).status_code == 200
    check_available(db)  # released with the first server


@pytest.mark.timeout(60)
def test_check_available_names_the_process_holding_the_file(tmp_path: Path) -> None:
    db = tmp_path / "held.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(DatabaseLocked) as info:
            check_available(db)
        assert info.value.pid == holder.pid and info.value.path == str(db)
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()  # the holder's read ends: it exits and releases the file
        holder.wait(timeout=30)
        holder.stdout.close()
    check_available(db)
    check_available(tmp_path / "missing.duckdb")
    assert not (tmp_path / "missing.duckdb").exists()


def test_a_file_that_is_not_a_duckdb_database_is_one_line_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "notes.duckdb"
    db.write_text("not a database\n")
    code = main(["serve", "--schema", str(SCHEMA), "--db", str(db), "--anonymous"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"querysync: Cannot open {db}: ") and "not a valid DuckDB" in err
