"""A short-lived in-process cache of apps, so each API request does not read the database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from cdnrec.store.apps import AppRepo
from cdnrec.store.models import App
from cdnrec.store.revision import Revision


class AppCache:
    """Apps by id, re-read from the store after `ttl` seconds (changes by other processes show up then).

    Callers that miss at the same time share one read: when an entry expires in the middle of a
    burst of callbacks, the database is asked once, not once per callback. Given the store's
    `revision`, an expired entry is kept while no other process has committed since it was
    read (SQLite tells; a store that cannot tell is read again): a recording's callbacks, ten
    seconds apart, read their app once.
    """

    def __init__(
        self,
        repo: AppRepo,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        revision: Revision | None = None,
    ) -> None:
        self._repo = repo
        self._ttl = ttl
        self._clock = clock
        self._revision = revision
        self._entries: dict[int, tuple[float, App | None, object]] = {}
        self._reading: dict[int, asyncio.Task[App | None]] = {}

    async def get(self, app_id: int) -> App | None:
        """The app, from the cache when fresh (or unchanged since it was read)."""
        hit = self._entries.get(app_id)
        if hit is not None:
            expires, app, seen = hit
            if expires > self._clock():
                return app
            if seen is not None and await self._token() == seen:
                self._entries[app_id] = (self._clock() + self._ttl, app, seen)
                return app
        reading = self._reading.get(app_id)
        if reading is None:
            reading = asyncio.create_task(self._read(app_id))
            self._reading[app_id] = reading
            reading.add_done_callback(lambda done: self._read_done(app_id, done))
        return await asyncio.shield(reading)

    async def _token(self) -> object:
        """The store's revision now, when it can be trusted (None: cannot tell)."""
        if self._revision is None:
            return None
        try:
            token = await self._revision()
        except Exception:  # cannot tell: read
            return None
        return token if self._revision.settled else None

    async def _read(self, app_id: int) -> App | None:
        now = self._clock()
        seen = await self._token()  # before the read: a commit after it shows as a new token
        app = await self._repo.get(app_id)
        if self._reading.get(app_id) is asyncio.current_task():  # not forgotten meanwhile
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[app_id] = (now + self._ttl, app, seen)
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
