"""``querysync demo``: seed a DuckDB file when needed, then serve the app and the sync server.

    querysync demo [--db data/demo.duckdb] [--port 8000] [--issues 50000]
                   [--from-github-json FILE] [--schema server/demo/schema.json]

The app (``web-demo/``) is served as static files next to the sync server on one origin; the
app's own schema (the one it was built with) is served at ``/app-schema.json``, so a server
started with a newer schema shows the app's update-needed state.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from queryplanner import Schema
from server.cli import run_command
from server.db import check_available

from .seed import SCHEMA_PATH, add_arguments, seed, seeded

ROOT = Path(__file__).resolve().parents[2]
WEB_DEMO = ROOT / "web-demo"
DEFAULT_DB = ROOT / "data" / "demo.duckdb"


def create_demo_app(schema: Schema, db_path: str, *, app_schema: Path = SCHEMA_PATH) -> Starlette:
    """The sync server with the demo app mounted at ``/`` (sync routes take precedence)."""
    from server import create_app  # the sync server; imported late so seeding needs none of it

    sync = create_app(schema, db_path=db_path, anonymous=True)
    routes = [
        Route("/app-schema.json", lambda request: FileResponse(app_schema)),
        Mount("/", app=StaticFiles(directory=WEB_DEMO, html=True)),
    ]
    # Mount the static app *inside* the sync app so its lifespan (database open/close) runs.
    for route in routes:
        sync.router.routes.append(route)
    return sync


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=str(DEFAULT_DB), help="the DuckDB file (seeded if empty)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--schema", default=str(SCHEMA_PATH), help="the server's schema file")
    add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    schema = Schema.load(args.schema)
    db = Path(args.db)
    db.parent.mkdir(parents=True, exist_ok=True)
    check_available(db)  # another server on this file: one clear line, before seeding
    if not seeded(db):
        seed(db, issues=args.issues, comments=args.comments, github_json=args.from_github_json,
             schema=schema)
    app = create_demo_app(schema, str(db))
    print(f"querysync demo: http://{args.host}:{args.port}/  (schema version {schema.version}, "
          f"database {db})", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Registers ``querysync demo`` (``server/cli.py`` calls this through its ``COMMANDS``)."""
    p = sub.add_parser("demo", help="seed the demo database and serve the Linear-style app",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_demo_arguments(p)
    p.set_defaults(run=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="querysync demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_demo_arguments(parser)
    return run_command(run, parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
