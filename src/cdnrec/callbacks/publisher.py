"""Reacts to closed files: makes each durable in its storage target, then queues its callback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from cdnrec.callbacks.payloads import record_payload
from cdnrec.config import CallbackSettings
from cdnrec.storage import Storages
from cdnrec.store import FileState, RecordedFile, Store, Task
from cdnrec.store.cache import AppCache

log = structlog.get_logger("cdnrec.publish")

URL_TTL = 30 * 86400


class Publisher:
    """Moves CLOSED files to STORED and puts one `record` callback per file in the outbox."""

    def __init__(
        self,
        store: Store,
        storages: Storages,
        apps: AppCache,
        settings: CallbackSettings,
        *,
        on_queued: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._storages = storages
        self._retry_at: dict[str, tuple[float, float]] = {}
        self._apps = apps
        self._settings = settings
        self._on_queued = on_queued
        self._clock = clock
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(8)
        self._tasks: dict[str, Task] = {}

    def nudge(self) -> None:
        """A file was closed: look now rather than at the next poll."""
        self._wake.set()

    async def run(self, poll: float = 1.0) -> None:
        """Publish closed files until cancelled."""
        while True:
            self._wake.clear()
            try:
                closed = await self._store.files.in_state(FileState.CLOSED, limit=500)
                await asyncio.gather(*(self._publish_or_back_off(f) for f in closed))
            except Exception:
                log.exception("publish.loop_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)

    async def _publish_or_back_off(self, file: RecordedFile) -> None:
        """Publish a file; when its target fails, try it again later (doubling, up to 5 min)."""
        now = self._clock()
        if self._retry_at.get(file.id, (0.0, 0.0))[0] > now:
            return
        try:
            async with self._slots:
                await self.publish(file)
        except Exception as exc:
            _, wait = self._retry_at.get(file.id, (0.0, 1.0))
            self._retry_at[file.id] = (now + wait, min(wait * 2, 300.0))
            log.warning(
                "publish.store_failed", file=file.id, key=file.key, error=str(exc), retry_in=wait
            )
        else:
            self._retry_at.pop(file.id, None)

    async def _task(self, task_id: str) -> Task | None:
        """A file's task; tasks are cached (the fields a callback needs never change)."""
        task = self._tasks.get(task_id)
        if task is None:
            task = await self._store.tasks.get(task_id)
            if task is not None:
                if len(self._tasks) > 10_000:
                    self._tasks.clear()
                self._tasks[task_id] = task
        return task

    async def publish(self, file: RecordedFile) -> None:
        """Store one file, queue its callback (idempotently), mark it stored."""
        assert file.key is not None
        storage = self._storages.get(file.storage)
        await storage.store(file.key)
        app = await self._apps.get(file.app_id)
        task = await self._task(file.task_id)
        now = self._clock()
        if file.kind == "recording" and app is not None and task is not None and app.callback_url:
            expires = int(file.expire_ms / 1000) if file.expire_ms else int(now) + URL_TTL
            url = storage.url(app.app_id, app.server_secret, file.key, expires)
            payload = record_payload(task, file, url, self._settings.extra_params)
            await self._store.deliveries.enqueue(
                app.app_id,
                "record",
                file.id,
                app.callback_url,
                payload,
                int(now * 1000),
                file_stored=file.id,
            )
            self._on_queued()
        else:
            await self._store.files.set_state(file.id, FileState.ANNOUNCED)
        log.info(
            "publish.stored", file=file.id, key=file.key, callback=bool(app and app.callback_url)
        )
