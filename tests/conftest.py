"""Fixtures shared by every suite."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.s3 import S3Server
from tests.support.service import RunningService, make_settings

POSTGRES_URL = os.environ.get("CDNREC_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("CDNREC_TEST_REDIS_URL", "")
IN_CI = os.environ.get("CI") == "true"


def _missing(what: str, variable: str) -> None:
    message = f"{what} not configured: set {variable} (CI sets it; see .ci/run)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    """A running service with the default test app, on SQLite in a temp folder."""
    running = RunningService(make_settings(tmp_path)).start()
    yield running
    running.stop()


async def _create_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL for each backend the store supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return _fresh_postgres()


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty PostgreSQL database URL (for what only PostgreSQL does)."""
    return _fresh_postgres()


def _fresh_postgres() -> str:
    if not POSTGRES_URL:
        _missing("PostgreSQL", "CDNREC_TEST_POSTGRES_URL")
    name = f"cdnrec_{uuid.uuid4().hex[:12]}"
    admin = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    asyncio.run(_create_database(admin, name))
    base, _, _ = POSTGRES_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def redis_url() -> str:
    """The Redis URL for suites that need Redis."""
    if not REDIS_URL:
        _missing("Redis", "CDNREC_TEST_REDIS_URL")
    return REDIS_URL


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3-compatible server on loopback for the session."""
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def clip_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where generated clips are cached: the pytest cache (kept across sessions) when enabled."""
    cache = getattr(request.config, "cache", None)
    if cache is None:
        return tmp_path_factory.mktemp("media")
    return Path(cache.mkdir("cdnrec-media"))
