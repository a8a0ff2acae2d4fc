"""Fixtures of the server tests: a real server on a free port, a client, demo rows."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from queryplanner import Schema
from server import create_app
from server.testing import Api, RunningServer, seed_mutations, serve_app


@pytest.fixture
def server(demo_schema: Schema) -> Iterator[RunningServer]:
    app = create_app(demo_schema, anonymous=True)
    with serve_app(app) as running:
        api = Api(running.url)
        api.mutate(*seed_mutations())
        api.close()
        yield running
