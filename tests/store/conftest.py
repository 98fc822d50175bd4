"""Stores for the store suites: migrated and empty, on the database under test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cdnrec.store import Store


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated, empty store."""
    opened = await Store.open(database_url)
    yield opened
    await opened.close()


@pytest.fixture
async def second_store(database_url: str, store: Store) -> AsyncIterator[Store]:
    """Another connection pool to the same database, as a second process would have."""
    opened = await Store.open(database_url, migrate_schema=False)
    yield opened
    await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """A store on a SQLite file of its own (what one process of a shared file sees)."""
    opened = await Store.open(f"sqlite:///{tmp_path / 'cdnrec.db'}")
    yield opened
    await opened.close()
