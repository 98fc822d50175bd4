"""Runs merge jobs: claims one at a time, merges in a named worker thread, stores, announces."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal, TypeVar, cast

import structlog

from cdnrec.config import Vendor
from cdnrec.media.merge import MergeError, MergeResult, SpanError, merge
from cdnrec.merging.output import compose_payload, move_into_place, output_key
from cdnrec.storage import Storages
from cdnrec.store import FileFacts, FileState, RecordedFile, Store
from cdnrec.store.cache import AppCache
from cdnrec.store.jobs import Job, JobState, MergedFile
from cdnrec.store.models import App
from cdnrec.store.revision import quiet, watched

log = structlog.get_logger("cdnrec.merging")
T = TypeVar("T")

URL_TTL = 30 * 86400
COMPLETE = frozenset({FileState.STORED, FileState.ANNOUNCED})
BAD_REQUEST, BAD_SOURCE, INTERNAL = "40000", "60000", "70000"
MAX_ATTEMPTS = 3
RECOVER_WINDOW_MS = 86_400_000


class JobFailed(Exception):
    """A job that ends in FAIL with a compose code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LeaseLost(Exception):
    """Another runner took the job over (ours was presumed dead)."""


IDLE_POLL = 5.0
"""How often an idle runner looks for jobs nobody told it about (submitted to another process,
or left by a runner that died), in seconds; a job submitted in this process nudges it. On SQLite
it reads only after another process committed, and at least every ``LONGEST`` seconds (a
runner's lease lapsing changes nothing in the store)."""

LONGEST = 30.0


class JobRunner:
    """Claims waiting jobs (also those left by a runner that died) and carries them out."""

    def __init__(
        self,
        store: Store,
        storages: Storages,
        apps: AppCache,
        *,
        owner: str,
        on_queued: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        lease: float = 30.0,
        poll: float = IDLE_POLL,
    ) -> None:
        self._store = store
        self._storages = storages
        self._root = storages.local.root
        self._apps = apps
        self._owner = owner
        self._on_queued = on_queued
        self._clock = clock
        self._lease = lease
        self._poll = poll
        self._wake = asyncio.Event()

    def nudge(self) -> None:
        """A job was created: look now."""
        self._wake.set()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def run(self) -> None:
        """Process jobs until cancelled; a cancelled job goes back to waiting."""
        try:
            await self.recover()
            while True:
                self._wake.clear()
                seen = None
                job = None
                since = watched(self._store.revision)
                try:
                    seen = await self._store.revision()
                    job = await self._store.jobs.claim(
                        self._owner, self._now_ms(), int(self._lease * 1000)
                    )
                    if job is not None:
                        await self.process(job)
                except Exception:
                    log.exception("merging.loop_failed", job=job.id if job else None)
                if job is None:
                    await quiet(
                        self._wake,
                        self._store.revision,
                        seen,
                        every=self._poll,
                        longest=LONGEST,
                        since=since,
                    )
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._store.jobs.release(self._owner))

    async def recover(self) -> None:
        """Queue the compose callbacks of jobs that ended while the process died before queueing."""
        since = self._now_ms() - RECOVER_WINDOW_MS
        try:
            for job in await self._store.jobs.ended_without_callback(since):
                await self._announce(job, await self._payload(job))
        except Exception:
            log.exception("merging.recover_failed")

    async def _payload(self, job: Job) -> dict[str, str]:
        """The compose callback of an ended job, from what the store holds."""
        if job.state is not JobState.FINISH or job.result_file_id is None:
            return compose_payload(job, code=job.error_code or INTERNAL, message=job.error_message)
        record = await self._store.files.get(job.result_file_id)
        app = await self._apps.get(job.app_id)
        if record is None or app is None:
            return compose_payload(job, code=INTERNAL, message="the merged file is gone")
        tencent = job.vendor is Vendor.TENCENT
        return compose_payload(
            job,
            code="0",
            message="success",
            replay_url=self.url(app, record),
            file_id=record.public_id if tencent else "",
        )

    async def process(self, job: Job) -> None:
        """Carry out one claimed job and queue its compose callback."""
        log.info("merging.started", job=job.id, task=job.task_id, attempt=job.attempts)
        scratch = self._root / ".merging" / f"{job.id}-{job.attempts}"
        await asyncio.to_thread(_remove_earlier_attempts, scratch)
        try:
            record = await self._merge(job, scratch)
        except LeaseLost:
            log.warning("merging.lease_lost", job=job.id)
            return
        except JobFailed as failed:
            await self._store.jobs.fail(job.id, failed.code, failed.message, self._now_ms())
            await self._announce(
                job, compose_payload(job, code=failed.code, message=failed.message)
            )
            log.info("merging.failed", job=job.id, code=failed.code, error=failed.message)
            return
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)
        finished = replace(job, state=JobState.FINISH, result_file_id=record.id)
        await self._announce(job, await self._payload(finished))
        log.info("merging.finished", job=job.id, key=record.key, file=record.id)

    def url(self, app: App, file: RecordedFile) -> str:
        """A signed URL of a merged file."""
        assert file.key is not None
        expires = file.expire_ms // 1000 if file.expire_ms else int(self._clock()) + URL_TTL
        storage = self._storages.get(file.storage)
        return storage.url(app.app_id, app.server_secret, file.key, expires)

    async def _merge(self, job: Job, scratch: Path) -> RecordedFile:
        if job.attempts > MAX_ATTEMPTS:  # it keeps dying with its runner: do not loop forever
            raise JobFailed(INTERNAL, f"gave up after {MAX_ATTEMPTS} attempts")
        inputs = await self._inputs(job)
        local = await self._fetch(inputs, scratch)
        key = output_key(self._root, job)
        final = self._storages.local.path_of(key)
        if final is None:
            raise JobFailed(BAD_REQUEST, "output name leaves the storage root")
        staged = scratch / final.name
        request = job.request
        fmt = cast(Literal["mp4", "mp3", "m3u8"], request.format)
        spans = list(request.spans) if request.spans is not None else None
        work = in_thread(f"merge-{job.id[:8]}", lambda: merge(local, staged, fmt, spans))
        try:
            result = await self._with_lease(job, work)
        except SpanError as exc:
            raise JobFailed(BAD_REQUEST, str(exc)) from exc
        except MergeError as exc:
            raise JobFailed(BAD_SOURCE if exc.bad_input else INTERNAL, str(exc)) from exc
        except (LeaseLost, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise JobFailed(INTERNAL, f"merge failed: {type(exc).__name__}: {exc}") from exc
        now_ms = self._now_ms()
        expire_ms = (
            job.created_ms + request.expire_hours * 3_600_000 if request.expire_hours else None
        )
        if expire_ms is not None and now_ms >= expire_ms:
            raise JobFailed(BAD_REQUEST, "the merge finished after its ExpireTime")
        await asyncio.to_thread(move_into_place, staged, final)
        # The output goes to the storage target of the first input (staged in the local folder).
        target = self._storages.get(inputs[0].storage)
        await target.store(key)
        facts = _facts(key, inputs, result)
        merged = MergedFile(facts, inputs[0].stream_id, target.name, expire_ms)
        return await self._store.jobs.finish(job, merged, now_ms)

    async def _fetch(self, inputs: list[RecordedFile], scratch: Path) -> list[Path]:
        paths: list[Path] = []
        for n, file in enumerate(inputs):
            try:
                storage = self._storages.get(file.storage)
                paths.append(await storage.fetch(file.key or "", scratch / "inputs" / str(n)))
            except FileNotFoundError as exc:
                raise JobFailed(BAD_SOURCE, f"input file {file.public_id} is missing") from exc
            except Exception as exc:
                raise JobFailed(INTERNAL, f"fetching {file.public_id} failed: {exc}") from exc
        return paths

    async def _inputs(self, job: Job) -> list[RecordedFile]:
        found: list[RecordedFile] = []
        for file_id in job.request.inputs:
            file = await self._store.files.get(file_id)
            if file is None or file.state not in COMPLETE or not file.key:
                raise JobFailed(BAD_REQUEST, f"input file {file_id} no longer exists")
            found.append(file)
        return found

    async def _with_lease(self, job: Job, work: asyncio.Future[MergeResult]) -> MergeResult:
        """Wait for the merge thread, renewing the job's lease meanwhile."""
        while True:
            done, _ = await asyncio.wait({work}, timeout=self._lease / 3)
            if done:
                return work.result()
            until = self._now_ms() + int(self._lease * 1000)
            if not await self._store.jobs.renew(job.id, self._owner, until):
                raise LeaseLost(job.id)

    async def _announce(self, job: Job, payload: dict[str, str]) -> None:
        app = await self._apps.get(job.app_id)
        if app is None or not app.callback_url:
            await self._store.jobs.announced(job.id)
            return
        await self._store.deliveries.enqueue(
            app.app_id, "compose", job.id, app.callback_url, payload, self._now_ms()
        )
        self._on_queued()


def in_thread(name: str, work: Callable[[], T]) -> asyncio.Future[T]:
    """Run `work` in a named daemon thread; its result as a future of the running loop.

    A daemon thread, not an executor's: a shutdown does not wait for a long merge (the job goes
    back to waiting and is merged again by the next runner).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, result))

    def main() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the loop, raised by whoever awaits
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, None, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=main, name=name, daemon=True).start()
    return future


def _remove_earlier_attempts(scratch: Path) -> None:
    """Scratch folders of this job's earlier attempts (their runner died): nobody uses them now."""
    job_id = scratch.name.rsplit("-", 1)[0]
    if scratch.parent.is_dir():
        for old in scratch.parent.glob(f"{job_id}-*"):
            shutil.rmtree(old, ignore_errors=True)


def _facts(key: str, inputs: list[RecordedFile], result: MergeResult) -> FileFacts:
    begin = inputs[0].begin_ms
    return FileFacts(
        key=key,
        begin_ms=begin,
        end_ms=begin + int(result.duration * 1000),
        duration=result.duration,
        size=result.size,
        codecs=result.codecs,
        sha256=result.sha256,
        gaps=(),
        repaired=False,
    )
