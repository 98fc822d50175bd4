"""Reacts to closed files: makes each durable in its storage target, then queues its callback.

Files in the local folder are made durable before their close is written (the supervisor asks,
`prepare`), so that the close, the stored state and the callback are one transaction; files for
other targets (and any the first try missed) are picked up from the store after.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from cdnrec.callbacks.payloads import record_payload
from cdnrec.config import CallbackSettings
from cdnrec.storage import Storage, Storages
from cdnrec.store import FileState, RecordedFile, Store, Task
from cdnrec.store.batching import GroupCommit
from cdnrec.store.cache import AppCache
from cdnrec.store.deliveries import NewDelivery
from cdnrec.store.files import Published
from cdnrec.store.models import Delivery
from cdnrec.store.revision import quiet, watched

log = structlog.get_logger("cdnrec.publish")

URL_TTL = 30 * 86400

IDLE_POLL = 5.0
"""How often an idle publisher looks for closed files nobody told it about (left by a process
that died, or by a prepare that failed in another process), in seconds. On SQLite it reads
only after another process committed, and at least every ``IDLE_LONGEST`` seconds."""

IDLE_LONGEST = 60.0


class Publisher:
    """Moves CLOSED files to STORED and puts one `record` callback per file in the outbox."""

    def __init__(
        self,
        store: Store,
        storages: Storages,
        apps: AppCache,
        settings: CallbackSettings,
        *,
        on_queued: Callable[[list[Delivery] | None], None] = lambda _: None,
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
        self._stored = GroupCommit(self._write_stored)

    def nudge(self) -> None:
        """A file was closed: look now rather than at the next poll."""
        self._wake.set()

    async def prepare(self, files: list[RecordedFile]) -> dict[str, Published]:
        """Make closed files of the local folder durable and build their callbacks, before their
        close is written; files of other targets (or that failed here) are left out."""
        local = [f for f in files if self._storages.get(f.storage) is self._storages.local]
        await self._load_tasks({f.task_id for f in local})
        results = await asyncio.gather(*(self._prepare_one(f) for f in local))
        return {f.id: p for f, p in zip(local, results, strict=True) if p is not None}

    async def _prepare_one(self, file: RecordedFile) -> Published | None:
        try:
            assert file.key is not None
            async with self._slots:
                # a recording is read back for its checksum next, which drops its pages
                await self._storages.local.store(file.key, read_next=file.kind == "recording")
            delivery = await self._delivery_for(file, self._storages.local)
        except Exception as exc:
            log.warning("publish.prepare_failed", file=file.id, key=file.key, error=str(exc))
            return None
        if delivery is None:
            return Published(FileState.ANNOUNCED)
        return Published(FileState.STORED, delivery)

    def closed(
        self,
        files: list[RecordedFile],
        published: dict[str, Published],
        queued: list[Delivery] | None,
    ) -> None:
        """The close of `files` is written: send the callbacks it queued (`queued`; None when
        not known which), publish the rest."""
        for file in files:
            if file.id in published:
                has_callback = published[file.id].delivery is not None
                log.info("publish.stored", file=file.id, key=file.key, callback=has_callback)
        if queued is None or queued:
            self._on_queued(queued)
        if len(published) < len(files):
            self.nudge()

    async def run(self, poll: float = 1.0, idle_poll: float = IDLE_POLL) -> None:
        """Publish closed files until cancelled: look again after `poll` seconds while closed
        files were found (some may be backing off), after `idle_poll` when none were (files
        closed in this process nudge it)."""
        revision = self._store.revision
        while True:
            self._wake.clear()
            seen = None
            wait = poll
            since = watched(revision)
            try:
                seen = await revision()
                closed = await self._store.files.in_state(FileState.CLOSED, limit=500)
                await self._load_tasks({f.task_id for f in closed})
                await asyncio.gather(*(self._publish_or_back_off(f) for f in closed))
                wait = poll if closed else idle_poll
            except Exception:
                log.exception("publish.loop_failed")
            if wait == poll:
                seen = None  # files back off: read again after `poll` whatever changed
            await quiet(
                self._wake,
                revision,
                seen,
                every=wait,
                longest=max(wait, IDLE_LONGEST),
                since=since,
            )

    async def _publish_or_back_off(self, file: RecordedFile) -> None:
        """Publish a file; when its target fails, try it again later (doubling, up to 5 min)."""
        now = self._clock()
        if self._retry_at.get(file.id, (0.0, 0.0))[0] > now:
            return
        try:
            await self.publish(file)
        except Exception as exc:
            _, wait = self._retry_at.get(file.id, (0.0, 1.0))
            self._retry_at[file.id] = (now + wait, min(wait * 2, 300.0))
            log.warning(
                "publish.store_failed", file=file.id, key=file.key, error=str(exc), retry_in=wait
            )
        else:
            self._retry_at.pop(file.id, None)

    async def _load_tasks(self, task_ids: set[str]) -> None:
        """Cache the tasks of a batch of files in one query."""
        missing = task_ids - self._tasks.keys()
        if missing:
            if len(self._tasks) + len(missing) > 10_000:
                self._tasks.clear()
            self._tasks.update(await self._store.tasks.get_many(missing))

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
        """Store one file, then queue its callback (idempotently) and mark it stored.

        Files stored at about the same time are marked (and their callbacks queued) together, in
        one transaction.
        """
        assert file.key is not None
        storage = self._storages.get(file.storage)
        async with self._slots:
            await storage.store(file.key)
        delivery = await self._delivery_for(file, storage)
        await self._stored.submit((file.id, delivery))
        log.info("publish.stored", file=file.id, key=file.key, callback=delivery is not None)

    async def _delivery_for(self, file: RecordedFile, storage: Storage) -> NewDelivery | None:
        """The `record` callback of a stored file; None when there is none to send."""
        app = await self._apps.get(file.app_id)
        task = await self._task(file.task_id)
        if file.kind != "recording" or app is None or task is None or not app.callback_url:
            return None
        assert file.key is not None
        now = self._clock()
        expires = int(file.expire_ms / 1000) if file.expire_ms else int(now) + URL_TTL
        url = storage.url(app.app_id, app.server_secret, file.key, expires)
        payload = record_payload(task, file, url, self._settings.extra_params)
        return NewDelivery(app.app_id, "record", file.id, app.callback_url, payload)

    async def _write_stored(self, stored: list[tuple[str, NewDelivery | None]]) -> None:
        """Queue the callbacks of stored files and mark them stored; files without a callback
        are announced at once."""
        queued = [(file_id, d) for file_id, d in stored if d is not None]
        silent = [file_id for file_id, d in stored if d is None]
        if queued:
            added = await self._store.deliveries.enqueue_many(
                [d for _, d in queued],
                int(self._clock() * 1000),
                files_stored=[file_id for file_id, _ in queued],
            )
            if added is None or added:
                self._on_queued(added)
        if silent:
            await self._store.files.set_states(
                silent, FileState.ANNOUNCED, only_from=FileState.CLOSED
            )

    async def close(self) -> None:
        """Wait until the files stored so far are marked."""
        await self._stored.idle()
