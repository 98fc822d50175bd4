"""The supervisor: claims tasks from the store and runs one Recorder thread per task.

It reports what recorders do (files opened and closed, phases, the end of a task) into the store
and nudges whoever reacts to closed files. Leases are renewed every poll; a recorder whose lease was
lost is stopped without ending its task, so another process can continue it in a new file.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from cdnrec.config import RecorderSettings
from cdnrec.engine.plan import ClosedFile, OpenFile, RecordingPlan
from cdnrec.engine.recorder import Recorder
from cdnrec.media.repair import repair
from cdnrec.store import FileFacts, Store, Task, TaskState

log = structlog.get_logger("cdnrec.engine")


def plan_for(task: Task, storage_root: Path, path_template: str) -> RecordingPlan:
    """The recording plan of a stored task."""
    config = task.config
    return RecordingPlan(
        recording_id=f"{task.id}-{task.attempts}",
        app_id=task.app_id,
        stream_id=task.stream_id,
        sources=config.sources,
        formats=config.formats,
        interval=config.interval,
        hls_segment=config.hls_segment,
        resume_window=config.resume_window,
        wait_for_stream=bool(config.wait_for_stream),
        deadline=task.deadline_ms / 1000,
        storage_root=storage_root,
        path_template=path_template,
    )


def facts_of(closed: ClosedFile) -> FileFacts:
    """The store's record of a closed file."""
    return FileFacts(
        key=closed.key,
        begin_ms=closed.begin_ms,
        end_ms=closed.end_ms,
        duration=closed.duration,
        size=closed.size,
        codecs=closed.codecs,
        sha256=closed.sha256,
        gaps=closed.gaps,
        repaired=closed.repaired,
    )


def _repair_if_present(partial: Path, root: Path) -> ClosedFile | None:
    return repair(partial, root) if partial.exists() else None


class _Listener:
    """Hands a recorder thread's reports to the event loop, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[object]) -> None:
        self._loop = loop
        self._queue = queue

    def _put(self, item: object) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def on_state(self, state: str, detail: str = "") -> None:
        self._put((state, detail))

    def on_file_opened(self, f: OpenFile) -> None:
        self._put(f)

    def on_file_closed(self, f: ClosedFile) -> None:
        self._put(f)


@dataclass
class _Run:
    task: Task
    recorder: Recorder
    done: asyncio.Future[str]
    worker: asyncio.Task[None]
    lost: bool = False
    open_files: dict[tuple[str, int], str] = field(default_factory=dict)


class Supervisor:
    """Runs the recordings this process holds leases for."""

    def __init__(
        self,
        store: Store,
        storage_root: Path,
        settings: RecorderSettings,
        *,
        owner: str,
        on_file_closed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._root = storage_root
        self._settings = settings
        self.owner = owner
        self._nudge = on_file_closed
        self._clock = clock
        self._runs: dict[str, _Run] = {}
        self._closing = False
        self._wake = asyncio.Event()
        self._next_renew = 0.0

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @property
    def running(self) -> int:
        """How many recordings run now."""
        return len(self._runs)

    def nudge(self) -> None:
        """A task was started or stopped in this process: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Poll for work until cancelled."""
        while not self._closing:
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("supervisor.tick_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll)

    async def tick(self) -> None:
        """One round: renew leases, stop what was stopped, claim new tasks."""
        lease_ms = int(self._settings.lease * 1000)
        if self._runs and self._clock() >= self._next_renew:
            await self._renew(lease_ms)
        for task_id in await self._store.tasks.stopping(list(self._runs)):
            stopped = self._runs.get(task_id)  # it may have ended meanwhile
            if stopped is not None:
                stopped.recorder.stop()
        room = self._settings.capacity - len(self._runs)
        for task in await self._store.tasks.claim(self.owner, self._now_ms(), lease_ms, room):
            await self._launch(task)

    async def _renew(self, lease_ms: int) -> None:
        """Extend every lease (a third of the lease apart); stop recordings whose lease was lost."""
        self._next_renew = self._clock() + self._settings.lease / 3
        held = await self._store.tasks.renew(
            self.owner, list(self._runs), self._now_ms() + lease_ms
        )
        for task_id, run in list(self._runs.items()):
            if task_id not in held and not run.lost:
                run.lost = True
                log.warning("supervisor.lease_lost", task=task_id)
                run.recorder.stop()

    async def _launch(self, task: Task) -> None:
        await self._repair_leftovers(task)
        if task.state is TaskState.STOPPING or task.deadline_ms <= self._now_ms():
            await self._store.tasks.finish(task.id, TaskState.ENDED, "stopped", self._now_ms())
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        plan = plan_for(task, self._root, self._settings.path_template)
        recorder = Recorder(plan, _Listener(loop, queue), clock=self._clock)
        done: asyncio.Future[str] = loop.create_future()

        def body() -> None:
            try:
                outcome = recorder.run()
            except BaseException as exc:  # reported to the task as a failure
                outcome = f"failed:{exc!r}"
            loop.call_soon_threadsafe(done.set_result, outcome)

        run = _Run(task, recorder, done, asyncio.create_task(self._follow(task.id, queue)))
        self._runs[task.id] = run
        threading.Thread(target=body, name=f"rec-{task.stream_id[:40]}", daemon=True).start()
        log.info("supervisor.recording", task=task.id, stream=task.stream_id, attempt=task.attempts)
        done.add_done_callback(lambda _: queue.put_nowait(None))

    async def _follow(self, task_id: str, queue: asyncio.Queue[object]) -> None:
        """Write a recorder's reports to the store, in the order it made them."""
        run = self._runs[task_id]
        while (item := await queue.get()) is not None:
            try:
                await self._report(run, item)
            except Exception:
                log.exception("supervisor.report_failed", task=task_id)
        await self._ended(run)

    async def _report(self, run: _Run, item: object) -> None:
        if isinstance(item, OpenFile):
            record = await self._store.files.opened(
                run.task, item.format, str(item.partial_path), item.begin_ms, self._now_ms()
            )
            run.open_files[(item.format, item.begin_ms)] = record.id
        elif isinstance(item, ClosedFile):
            # at a split the next file opens before the previous one closes: match by its start
            file_id = run.open_files.pop((item.format, item.begin_ms), None)
            if file_id is None:
                file_id = (
                    await self._store.files.opened(
                        run.task, item.format, "", item.begin_ms, self._now_ms()
                    )
                ).id
            await self._store.files.closed(file_id, facts_of(item), self._expiry(run.task))
            self._nudge()
        elif isinstance(item, tuple):
            state, detail = item
            await self._store.tasks.set_phase(run.task.id, str(state), str(detail))

    def _expiry(self, task: Task) -> int | None:
        retention = task.config.retention
        return None if retention <= 0 else self._now_ms() + int(retention * 1000)

    async def _ended(self, run: _Run) -> None:
        outcome = run.done.result()
        task_id = run.task.id
        for file_id in run.open_files.values():
            await self._store.files.discard(file_id)
        del self._runs[task_id]
        if run.lost or (self._closing and outcome == "ended"):
            log.info("supervisor.released", task=task_id, outcome=outcome)
            return
        task = await self._store.tasks.get(task_id)
        detail = task.detail if task else ""
        if outcome.startswith("failed"):
            log.error("supervisor.task_failed", task=task_id, detail=detail or outcome)
            await self._store.tasks.finish(
                task_id, TaskState.FAILED, detail or outcome, self._now_ms()
            )
        else:
            await self._store.tasks.finish(task_id, TaskState.ENDED, detail, self._now_ms())
        log.info("supervisor.task_ended", task=task_id, outcome=outcome)

    async def _repair_leftovers(self, task: Task) -> None:
        """Turn files a dead recorder left half-written into valid files (announced once)."""
        for record in await self._store.files.writing_for(task.id):
            closed = None
            if record.partial_path:
                closed = await asyncio.to_thread(
                    _repair_if_present, Path(record.partial_path), self._root
                )
            if closed is None:
                await self._store.files.discard(record.id)
                continue
            log.info("supervisor.repaired", task=task.id, key=closed.key)
            await self._store.files.closed(record.id, facts_of(closed), self._expiry(task))
            self._nudge()

    async def close(self, grace: float = 15.0) -> None:
        """Stop every recorder (files closed and announced) and release the tasks' leases."""
        self._closing = True
        runs = list(self._runs.values())
        for run in runs:
            run.recorder.stop()
        workers = [run.worker for run in runs]
        if workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*workers), grace)
        await self._store.tasks.release(self.owner)
