"""The app cache on a real store: concurrent misses share one read; `forget` reads again; on
SQLite an expired app is read again only after another process committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from cdnrec.store import App, Store
from cdnrec.store.cache import AppCache
from cdnrec.store.revision import SETTLE

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated store with one app."""
    opened = await Store.open(database_url)
    await opened.apps.put(App(7, SECRET, callback_url="http://r/one"), 0)
    yield opened
    await opened.close()


@contextmanager
def app_reads(store: Store) -> Iterator[list[str]]:
    """The statements that read the apps table, as they run."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM apps" in statement:
            seen.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", record)


async def test_concurrent_misses_share_one_read(store: Store) -> None:
    now = [0.0]
    cache = AppCache(store.apps, ttl=2.0, clock=lambda: now[0])
    with app_reads(store) as reads:
        apps = await asyncio.gather(*(cache.get(7) for _ in range(50)))
        assert {a.callback_url for a in apps if a is not None} == {"http://r/one"}
        assert len(reads) == 1
        await cache.get(7)
        assert len(reads) == 1  # fresh
        now[0] = 2.5
        missing = await asyncio.gather(*(cache.get(8) for _ in range(5)), cache.get(7))
        assert missing == [None] * 5 + [apps[0]]
        assert len(reads) == 3  # app 8 once, app 7 again once


async def test_forget_reads_the_changed_app_again(store: Store) -> None:
    cache = AppCache(store.apps, ttl=60.0)
    assert (await cache.get(7)) == App(7, SECRET, callback_url="http://r/one")
    await store.apps.put(App(7, SECRET, callback_url="http://r/two"), 1)
    assert (await cache.get(7)) == App(7, SECRET, callback_url="http://r/one")
    cache.forget(7)
    changed = await cache.get(7)
    assert changed is not None
    assert changed.callback_url == "http://r/two"


async def test_an_expired_app_is_read_again_only_once_another_process_committed(
    tmp_path: Path,
) -> None:
    """On SQLite the cache keeps an expired app while the database's revision is the one it
    read the app at: this process's own commits do not count, another process's do."""
    url = f"sqlite:///{tmp_path / 'cdnrec.db'}"
    store = await Store.open(url)
    other = await Store.open(url, migrate_schema=False)
    try:
        await store.apps.put(App(7, SECRET, callback_url="http://r/one"), 0)
        now = [0.0]
        cache = AppCache(store.apps, ttl=2.0, clock=lambda: now[0], revision=store.revision)
        with app_reads(store) as reads:
            assert (await cache.get(7)) == App(7, SECRET, callback_url="http://r/one")
            now[0] = 2.5
            await store.recorders.heartbeat("this process", 1, 1)
            assert (await cache.get(7)) == App(7, SECRET, callback_url="http://r/one")
            assert len(reads) == 1
            await other.apps.put(App(7, SECRET, callback_url="http://r/two"), 1)
            await asyncio.sleep(SETTLE + 0.05)  # until another process's commit can be seen
            now[0] = 5.0
            changed = await cache.get(7)
            assert changed is not None
            assert changed.callback_url == "http://r/two"
            assert len(reads) == 2
    finally:
        await other.close()
        await store.close()
