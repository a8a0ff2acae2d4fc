"""``querysync``: the command line. ``querysync serve --schema FILE --db FILE``.

Subcommands: ``serve`` runs the server with uvicorn; ``token`` prints a signed token for a
user (for trying the API with curl). Further subcommands (``demo``) register in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from queryplanner import Schema
from queryplanner.errors import QueryPlannerError

from .auth import make_token
from .db import DatabaseUnavailable, check_available
from .permissions import Permissions


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app

    schema = Schema.load(args.schema)
    permissions = Permissions.load(schema, args.rules)
    secret = args.secret or os.environ.get("QUERYSYNC_SECRET")
    if secret is None and not args.anonymous:
        print(
            "querysync: give --secret (or QUERYSYNC_SECRET) to sign tokens, or --anonymous.",
            file=sys.stderr,
        )
        return 2
    check_available(args.db)  # one clear line now, not uvicorn's startup traceback later
    app = create_app(
        schema, db_path=str(args.db), rules=permissions, secret=secret, anonymous=args.anonymous
    )
    mode = "anonymous" if args.anonymous else "token auth"
    print(
        f"querysync serving http://{args.host}:{args.port}  (schema version {schema.version}, "
        f"hash {schema.hash}, database {args.db}, {mode})",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _token(args: argparse.Namespace) -> int:
    secret = args.secret or os.environ.get("QUERYSYNC_SECRET")
    if not secret:
        print("querysync: give --secret or set QUERYSYNC_SECRET.", file=sys.stderr)
        return 2
    claims = json.loads(args.claims) if args.claims else {}
    print(make_token(secret, args.user, ttl=args.ttl, **claims))
    return 0


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the sync server")
    p.add_argument("--schema", required=True, type=Path, help="schema file (.json or .toml)")
    p.add_argument("--db", required=True, help="DuckDB file, or :memory:")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--rules", type=Path, help="read/write rules file (.json)")
    p.add_argument("--secret", help="HS256 token secret (or QUERYSYNC_SECRET)")
    p.add_argument("--anonymous", action="store_true", help="accept requests without a token")
    p.add_argument("--log-level", default="info")
    p.set_defaults(run=_serve)


def _add_token(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("token", help="print a signed token for a user")
    p.add_argument("--user", required=True)
    p.add_argument("--secret")
    p.add_argument("--ttl", type=float, default=24 * 3600)
    p.add_argument("--claims", help="extra claims as a JSON object")
    p.set_defaults(run=_token)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from .demo.command import add_subcommand  # the demo's own module owns its arguments

    add_subcommand(sub)


COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_serve,
    _add_token,
    _add_demo,
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="querysync", description="querysync sync server")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    return run_command(args.run, args)


def run_command(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a subcommand; the errors a user can fix become one line on stderr, no traceback."""
    try:
        return run(args)
    except QueryPlannerError as exc:
        print(f"querysync: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"querysync: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
