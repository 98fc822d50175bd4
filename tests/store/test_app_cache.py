"""The app cache on a real store: concurrent misses share one read; `forget` reads again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from cdnrec.store import App, Store
from cdnrec.store.cache import AppCache

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
