"""A short-lived in-process cache of apps, so each API request does not read the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from cdnrec.store.apps import AppRepo
from cdnrec.store.models import App


class AppCache:
    """Apps by id, re-read from the store after `ttl` seconds (changes by other processes show up then).

    Callers that miss at the same time share one read: when an entry expires in the middle of a
    burst of callbacks, the database is asked once, not once per callback.
    """

    def __init__(
        self, repo: AppRepo, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._repo = repo
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[int, tuple[float, App | None]] = {}
        self._reading: dict[int, asyncio.Task[App | None]] = {}

    async def get(self, app_id: int) -> App | None:
        """The app, from the cache when fresh."""
        hit = self._entries.get(app_id)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        reading = self._reading.get(app_id)
        if reading is None:
            reading = asyncio.create_task(self._read(app_id))
            self._reading[app_id] = reading
            reading.add_done_callback(lambda done: self._read_done(app_id, done))
        return await asyncio.shield(reading)

    async def _read(self, app_id: int) -> App | None:
        now = self._clock()
        app = await self._repo.get(app_id)
        if self._reading.get(app_id) is asyncio.current_task():  # not forgotten meanwhile
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[app_id] = (now + self._ttl, app)
        return app

    def _read_done(self, app_id: int, done: asyncio.Task[App | None]) -> None:
        if self._reading.get(app_id) is done:
            del self._reading[app_id]
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have gone meanwhile

    def forget(self, app_id: int | None = None) -> None:
        """Drop one app (or all) from the cache."""
        if app_id is None:
            self._entries.clear()
            self._reading.clear()
        else:
            self._entries.pop(app_id, None)
            self._reading.pop(app_id, None)
