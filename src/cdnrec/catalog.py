"""The recorded files as users see them: search, delete, and expiry after their retention."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from cdnrec.config import Vendor
from cdnrec.storage import Storages
from cdnrec.store import FileState, RecordedFile, Store
from cdnrec.store.files import FileQuery
from cdnrec.store.models import App

log = structlog.get_logger("cdnrec.catalog")

DELETABLE = frozenset({FileState.STORED, FileState.ANNOUNCED})
URL_TTL = 30 * 86400


class FilesNotFound(Exception):
    """Some of the named files do not exist (or not for this app and vendor)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"file(s) not found: {', '.join(missing[:10])}")
        self.missing = missing


class FilesBusy(Exception):
    """Some of the named files are still being written or stored."""

    def __init__(self, busy: list[str]) -> None:
        super().__init__(f"file(s) still being written: {', '.join(busy[:10])}")
        self.busy = busy


class Catalog:
    """Finds and deletes an app's stored files."""

    def __init__(
        self, store: Store, storages: Storages, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._storages = storages
        self._clock = clock

    async def search(
        self, query: FileQuery, offset: int, limit: int
    ) -> tuple[int, list[RecordedFile]]:
        """A page of matching files, newest first, with the total count."""
        return await self._store.files.search(query, offset, limit)

    async def after(
        self, query: FileQuery, marker: tuple[int, str] | None, limit: int
    ) -> list[RecordedFile]:
        """Matching files after a marker, oldest first."""
        return await self._store.files.after(query, marker, limit)

    def url(self, app: App, file: RecordedFile) -> str:
        """A signed download URL of a stored file."""
        assert file.key is not None
        expires = file.expire_ms // 1000 if file.expire_ms else int(self._clock()) + URL_TTL
        storage = self._storages.get(file.storage)
        return storage.url(app.app_id, app.server_secret, file.key, expires)

    async def delete(
        self, app: App, vendor: Vendor, column: str, ids: list[str]
    ) -> list[RecordedFile]:
        """Delete every named file, or none: all must exist and be complete."""
        found = await self._store.files.find(app.app_id, vendor, column, ids)
        by_id = {getattr(f, column): f for f in found}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise FilesNotFound(missing)
        busy = [i for i in ids if by_id[i].state not in DELETABLE]
        if busy:
            raise FilesBusy(busy)
        for file in found:
            await self.remove(file, reason="DeleteMedia")
        return found

    async def remove(self, file: RecordedFile, *, reason: str) -> None:
        """Forget a file in the store, then delete it from its storage target; logged."""
        await self._store.files.set_state(file.id, FileState.DELETED)
        if file.key:
            await self._storages.get(file.storage).delete(file.key)
        log.info("file.deleted", file=file.id, key=file.key, app=file.app_id, reason=reason)


def disk_percent_used(path: Path) -> float:
    """How full the filesystem holding `path` is, in percent."""
    usage = shutil.disk_usage(path if path.exists() else path.parent)
    return 100.0 * usage.used / usage.total


class RetentionSweeper:
    """Deletes files whose retention has passed, never one being written or not yet announced.

    With a high watermark it also deletes the oldest announced local files while the disk holding
    the local folder is fuller than that percentage.
    """

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        clock: Callable[[], float] = time.time,
        *,
        high_watermark: float = 0.0,
        local_root: Path | None = None,
        disk_used: Callable[[Path], float] = disk_percent_used,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._high = high_watermark
        self._root = local_root
        self._disk_used = disk_used

    async def sweep(self) -> int:
        """Delete what has expired now (and what the watermark asks for); how many files went."""
        removed = 0
        in_use = await self._store.jobs.inputs_in_use()  # merge jobs will still read these
        while batch := [
            f
            for f in await self._store.files.expired(int(self._clock() * 1000))
            if f.id not in in_use
        ]:
            for file in batch:
                await self._catalog.remove(file, reason="retention")
                removed += 1
        return removed + await self._relieve_disk()

    async def _relieve_disk(self) -> int:
        if not self._high or self._root is None:
            return 0
        removed = 0
        while await asyncio.to_thread(self._disk_used, self._root) > self._high:
            in_use = await self._store.jobs.inputs_in_use()
            candidates = await self._store.files.oldest_announced("local", limit=len(in_use) + 1)
            oldest = [f for f in candidates if f.id not in in_use][:1]
            if not oldest:
                log.warning("retention.disk_full_nothing_to_delete", watermark=self._high)
                break
            await self._catalog.remove(oldest[0], reason=f"disk above {self._high:g}%")
            removed += 1
        return removed

    async def run(self, poll: float = 60.0) -> None:
        """Sweep every `poll` seconds until cancelled."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("retention.sweep_failed")
            await asyncio.sleep(poll)
