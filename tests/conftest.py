"""Shared fixtures: the reference data beside the project, skipped cleanly when absent."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pgserver import PostgresServer, find_binaries

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for this test session; skips when it cannot start."""
    binaries, reason = find_binaries()
    if binaries is None:
        pytest.skip(reason)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'scalinglab[postgres]'")
    try:
        server = PostgresServer(binaries)
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        pytest.skip(f"a throwaway PostgreSQL server did not start: {err}")
    yield server
    server.stop()


@pytest.fixture()
def postgres_url(postgres_server: PostgresServer) -> str:
    """A URL of a fresh, empty store (a new schema) on the session's PostgreSQL server."""
    return postgres_server.new_store_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new run store on each backend: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "runs.sqlite")
    return str(request.getfixturevalue("postgres_url"))
