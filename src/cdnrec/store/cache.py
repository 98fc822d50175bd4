"""A short-lived in-process cache of apps, so each API request does not read the database."""

from __future__ import annotations

import time
from collections.abc import Callable

from cdnrec.store.apps import AppRepo
from cdnrec.store.models import App


class AppCache:
    """Apps by id, re-read from the store after `ttl` seconds (changes by other processes show up then)."""

    def __init__(
        self, repo: AppRepo, ttl: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._repo = repo
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[int, tuple[float, App | None]] = {}

    async def get(self, app_id: int) -> App | None:
        """The app, from the cache when fresh."""
        now = self._clock()
        hit = self._entries.get(app_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        app = await self._repo.get(app_id)
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[app_id] = (now + self._ttl, app)
        return app

    def forget(self, app_id: int | None = None) -> None:
        """Drop one app (or all) from the cache."""
        if app_id is None:
            self._entries.clear()
        else:
            self._entries.pop(app_id, None)
