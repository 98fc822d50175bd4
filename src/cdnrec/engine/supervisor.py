"""The supervisor: claims tasks from the store and runs one Recorder thread per task (the
native pulls of all of them read by a few shared pump threads).

It reports what recorders do (files opened and closed, phases, the end of a task) into the store
and hands closed files to whoever takes them over (the publisher), then has them read back for
their checksum by a thread of low priority (``ReadBack``, decision 0014). The file reports of all
recordings are written together, a transaction per round rather than per file, and a closed file
that the publisher made durable at once is written stored, with its callback, in that same
transaction. Leases are renewed in the heartbeat's transaction, a third of the lease apart; a
recorder whose lease was lost is stopped without ending its task, so another process can
continue it in a new file.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import structlog

from cdnrec.config import RecorderSettings
from cdnrec.engine.checksums import ReadBack
from cdnrec.engine.layout import Layout, PartialInfo
from cdnrec.engine.plan import ClosedFile, OpenFile, RecordingPlan
from cdnrec.engine.pump import Pumps
from cdnrec.engine.recorder import Recorder
from cdnrec.media.repair import repair
from cdnrec.store import FileFacts, FileState, RecordedFile, Store, Task, TaskState
from cdnrec.store.batching import GroupCommit
from cdnrec.store.files import Closing, Published, closed_file, new_file
from cdnrec.store.models import Delivery
from cdnrec.store.recorders import Beat
from cdnrec.store.revision import quiet, watched
from cdnrec.store.rounds import Round
from cdnrec.store.tasks import Poll, TaskUpdate

log = structlog.get_logger("cdnrec.engine")


def recording_id(task_id: str, attempt: int) -> str:
    """The name of a task's recording by one of its attempts (its partials' folder)."""
    return f"{task_id}-{attempt}"


def plan_for(
    task: Task, storage_root: Path, path_template: str, *, native_pull: bool = True
) -> RecordingPlan:
    """The recording plan of a stored task."""
    config = task.config
    return RecordingPlan(
        recording_id=recording_id(task.id, task.attempts),
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
        native_pull=native_pull,
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
        sha256=None,  # read back after the file is announced (Checksums)
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


class FileSink(Protocol):
    """Who takes closed files over (the publisher).

    It may make closed files durable at once, so that a file's close, its stored state and its
    callback are written in one transaction; files it leaves out are written closed, for it to
    pick up after.
    """

    async def prepare(self, files: list[RecordedFile]) -> dict[str, Published]:
        """What each of these closed files becomes, by file id (before their close is written)."""
        ...

    def closed(
        self,
        files: list[RecordedFile],
        published: dict[str, Published],
        queued: list[Delivery] | None,
    ) -> None:
        """The close of these files is written, with the callbacks `queued` (None: not known
        which)."""
        ...


@dataclass
class _Run:
    task: Task
    recorder: Recorder
    done: asyncio.Future[str]
    worker: asyncio.Task[None]
    lost: bool = False
    open_files: dict[tuple[str, int], RecordedFile] = field(default_factory=dict)
    detail: str = ""
    """The detail of the latest phase the recorder reported."""


@dataclass
class _Changes:
    """The file records one recording's reports make: files opened, files closed."""

    opened: list[RecordedFile] = field(default_factory=list)
    closed: list[tuple[RecordedFile, Closing]] = field(default_factory=list)


BEAT_APART = 0.25
"""Seconds after a heartbeat before a file transaction carries the next one (decision 0016): at
most a few extra lease renewals a second under load, and one heartbeat round fewer per file
at one recording."""

SPLIT_WAIT = 2.0
"""Seconds the record of a file opened at a split waits for the close of the file before it,
so that both are written in one transaction (decision 0015). The file before a split stays open
for the other streams' packets older than the split, which a native pull may read only at its
next read, 0.5 to 1.5 s later (``pump.BEAT``); writing the open alone cost a transaction per
split. A crash meanwhile leaves the new file without a record; the next attempt repairs it by
its sidecar (``_repair_leftovers``)."""


async def _reports(run: _Run, queue: asyncio.Queue[object]) -> list[object]:
    """The reports a recorder made since the last call (at least one); those of a split are
    taken together (``SPLIT_WAIT``)."""
    items = [await queue.get()]
    _drain(queue, items)
    deadline = time.monotonic() + SPLIT_WAIT
    while _splitting(run, items) and (left := deadline - time.monotonic()) > 0:
        try:
            items.append(await asyncio.wait_for(queue.get(), left))
        except TimeoutError:
            break
        _drain(queue, items)
    return items


def _drain(queue: asyncio.Queue[object], items: list[object]) -> None:
    while not queue.empty():
        items.append(queue.get_nowait())


def _splitting(run: _Run, items: list[object]) -> bool:
    """Whether these reports open a file while the file of that format before it is still open
    and not among them closed (its close follows at once)."""
    opened = {item.format for item in items if isinstance(item, OpenFile)}
    if not opened or None in items:
        return False
    closed = {item.format for item in items if isinstance(item, ClosedFile)}
    return any(fmt in opened and fmt not in closed for fmt, _ in run.open_files)


class Supervisor:
    """Runs the recordings this process holds leases for."""

    def __init__(
        self,
        store: Store,
        storage_root: Path,
        settings: RecorderSettings,
        *,
        owner: str,
        files_to: FileSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._root = storage_root
        self._settings = settings
        self.owner = owner
        self._sink = files_to
        self._clock = clock
        self._runs: dict[str, _Run] = {}
        self._closing = False
        self._wake = asyncio.Event()
        self._next_heartbeat = 0.0
        self._last_beat = float("-inf")
        self._next_poll = 0.0
        """When a poll is due even if nothing changed in the store (clock seconds)."""
        self._polled: object = None
        """The store's revision at the last poll (None: none yet, or a store that cannot tell)."""
        self._pumps = Pumps(settings.pump_threads) if settings.pump_threads else None
        self._files = GroupCommit(self._write_batch)
        self._tasks = GroupCommit(self._store.tasks.apply)
        self._read_back = ReadBack(store.files, storage_root)
        self._swept = False

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
        """Poll for work until cancelled: when nudged, when another process changed the store
        (looked at every `poll`; a store that cannot tell is read every `poll`), and when a
        lease another recorder holds may have lapsed (which changes nothing in the store);
        renew the leases when the heartbeat is due."""
        revision = self._store.revision
        while not self._closing:
            nudged = self._wake.is_set()
            self._wake.clear()
            since = watched(revision)
            seen = None
            try:
                seen = await revision()
                changed = seen is None or seen != self._polled
                await self.tick(poll=nudged or changed or self._clock() >= self._next_poll)
                self._polled = seen
            except Exception:
                log.exception("supervisor.tick_failed")
            # a file transaction may carry the heartbeat meanwhile (``_beat_again``): then
            # the time runs out before it is due, and the supervisor sleeps on without a look
            while (
                await quiet(
                    self._wake,
                    revision,
                    seen,
                    every=self._settings.poll,
                    longest=max(self._settings.poll, self._due() - self._clock()),
                    since=since,
                )
                and self._clock() < self._due()
            ):
                pass

    def _due(self) -> float:
        """When the next round is due though nothing happens: a heartbeat or a poll."""
        return min(self._next_heartbeat, self._next_poll)

    async def heartbeat(self) -> None:
        """Tell the store this recorder is alive and how many recordings it may hold (Start
        refuses new streams when every live recorder is full), and renew the leases of its
        recordings (in the same transaction, with the checksums read back meanwhile); stop
        those whose lease was lost."""
        await self._write(beat=True)

    async def _write(
        self,
        opened: list[RecordedFile] | None = None,
        closed: list[Closing] | None = None,
        *,
        beat: bool,
    ) -> list[Delivery] | None:
        """One transaction for file changes, the checksums read back since the last one, and
        (``beat``) the heartbeat; the callbacks it queued (see ``Written.queued``)."""
        heartbeat = self._beat() if beat else None
        sums = self._read_back.take()
        round_ = Round(opened or (), closed or (), self._now_ms(), sums, heartbeat)
        try:
            written = await self._store.write(round_)
        except BaseException:
            self._read_back.give_back(sums)
            raise
        if heartbeat is not None and written.held is not None:
            self._renewed(heartbeat.held, written.held)
        return written.queued

    def _beat(self) -> Beat:
        """The heartbeat now; the next is due a third of the lease later."""
        self._last_beat = self._clock()
        self._next_heartbeat = self._last_beat + self._settings.lease / 3
        now_ms = self._now_ms()
        until_ms = now_ms + int(self._settings.lease * 1000)
        return Beat(self.owner, self._settings.capacity, now_ms, tuple(self._runs), until_ms)

    def _beat_again(self) -> bool:
        """Whether a file transaction carries the heartbeat (its own round is then put off).
        Not when one was written less than ``BEAT_APART`` ago; the next is then due a third of
        the lease after this transaction, as if it had carried one: heartbeats and files that
        keep their phase would otherwise meet that way every time, and no file would carry one."""
        now = self._clock()
        if now - self._last_beat >= BEAT_APART:
            return True
        self._next_heartbeat = now + self._settings.lease / 3
        return False

    def _renewed(self, asked: tuple[str, ...], held: set[str]) -> None:
        """Stop the recordings of ``asked`` whose lease was not renewed (another recorder holds
        the task now)."""
        for task_id in asked:
            run = self._runs.get(task_id)
            if run is not None and task_id not in held and not run.lost:
                run.lost = True
                log.warning("supervisor.lease_lost", task=task_id)
                run.recorder.stop()

    async def tick(self, *, poll: bool = True) -> None:
        """One round: say it is alive and renew leases (a third of the lease apart), then
        (``poll``) stop what was stopped and claim new tasks."""
        if not self._swept:
            self._swept = True
            await self._read_back.sweep()
        if self._clock() >= self._next_heartbeat:
            await self.heartbeat()
        if not poll:
            return
        room = self._settings.capacity - len(self._runs)
        found = await self._store.tasks.poll(
            self.owner, list(self._runs), self._now_ms(), int(self._settings.lease * 1000), room
        )
        self._next_poll = self._poll_again(found)
        for task_id in found.stopping:
            stopped = self._runs.get(task_id)  # it may have ended meanwhile
            if stopped is not None:
                stopped.recorder.stop()
        for task in found.claimed:
            await self._launch(task)

    def _poll_again(self, found: Poll) -> float:
        """When to poll next if nothing changes: with the heartbeat while tasks may wait for
        room, when the next lease held on another task lapses, else only on a change."""
        if found.more:
            return self._clock() + self._settings.lease / 3
        if found.lapse_ms is not None:
            return found.lapse_ms / 1000 + 0.001  # the lease ends after lapse_ms (`_free`)
        return float("inf")

    async def _launch(self, task: Task) -> None:
        await self._repair_leftovers(task)
        if task.state is TaskState.STOPPING or task.deadline_ms <= self._now_ms():
            await self._store.tasks.finish(task.id, TaskState.ENDED, "stopped", self._now_ms())
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        native = self._settings.pull_client == "native"
        plan = plan_for(task, self._root, self._settings.path_template, native_pull=native)
        recorder = Recorder(plan, _Listener(loop, queue), clock=self._clock, pumps=self._pumps)
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
        """Write a recorder's reports to the store, in the order it made them.

        What a recorder reported meanwhile is written at once, and files of every recording are
        written together (group commit): a burst of closed files costs a transaction, not one each.
        """
        run = self._runs[task_id]
        ended = False
        while not ended:
            items = await _reports(run, queue)
            ended = None in items  # the last report: the recorder thread has returned
            try:
                await self._report(run, [item for item in items if item is not None])
            except Exception:
                log.exception("supervisor.report_failed", task=task_id)
        await self._ended(run)

    async def _report(self, run: _Run, items: list[object]) -> None:
        """Write what a recorder reported (files opened and closed, its latest phase)."""
        changes = _Changes()
        phase: tuple[object, ...] | None = None
        for item in items:
            if isinstance(item, OpenFile):
                record = self._new_file(run, item.format, str(item.partial_path), item.begin_ms)
                changes.opened.append(record)
                run.open_files[(item.format, item.begin_ms)] = record
            elif isinstance(item, ClosedFile):
                changes.closed.append(self._closing_of(run, item, changes))
            elif isinstance(item, tuple):
                phase = item  # only the latest phase matters
        if changes.opened or changes.closed:
            await self._write_files(run, changes)
        if phase is not None and not run.lost:  # its task is another recorder's to report
            state, detail = phase
            run.detail = str(detail)
            await self._tasks.submit(TaskUpdate(run.task.id, str(state), run.detail))

    def _new_file(self, run: _Run, fmt: str, partial_path: str, begin_ms: int) -> RecordedFile:
        return self._new_file_of(run.task, fmt, partial_path, begin_ms)

    def _new_file_of(self, task: Task, fmt: str, partial_path: str, begin_ms: int) -> RecordedFile:
        return new_file(task, fmt, partial_path, begin_ms, self._now_ms())

    def _closing_of(
        self, run: _Run, item: ClosedFile, changes: _Changes
    ) -> tuple[RecordedFile, Closing]:
        """A closed file's record as it will be, and how it is written."""
        # at a split the next file opens before the previous one closes: match by its start
        record = run.open_files.pop((item.format, item.begin_ms), None)
        if record is None:
            record = self._new_file(run, item.format, "", item.begin_ms)
            changes.opened.append(record)
        closing = Closing(record.id, facts_of(item), self._expiry(run.task))
        return closed_file(record, closing), closing

    async def _write_files(self, run: _Run, changes: _Changes) -> None:
        """Write one recording's file changes together with those of the other recordings."""
        try:
            await self._files.submit(changes)
        except Exception:
            # files whose record was not written get a new one when they close
            for record in changes.opened:
                if run.open_files.get((record.format, record.begin_ms)) is record:
                    del run.open_files[(record.format, record.begin_ms)]
            raise

    async def _write_batch(self, batch: list[_Changes]) -> None:
        """One transaction for the changes of many recordings; closed files that the sink made
        durable meanwhile are written as it says, with their callbacks."""
        opened = [record for changes in batch for record in changes.opened]
        closed = [pair for changes in batch for pair in changes.closed]
        records = [record for record, _ in closed]
        published = await self._prepared(records)
        closings = [replace(c, published=published.get(c.file_id)) for _, c in closed]
        queued = await self._write(opened, closings, beat=self._beat_again())
        self._read_back.add(records)  # before the sink may take them away
        if self._sink is not None and records:
            self._sink.closed(records, published, queued)

    async def _prepared(self, records: list[RecordedFile]) -> dict[str, Published]:
        """What the sink made of closed files; nothing when it fails (they are written closed
        and it picks them up after)."""
        if self._sink is None or not records:
            return {}
        try:
            return await self._sink.prepare(records)
        except Exception:
            log.exception("supervisor.prepare_failed", files=len(records))
            return {}

    def _expiry(self, task: Task) -> int | None:
        retention = task.config.retention
        return None if retention <= 0 else self._now_ms() + int(retention * 1000)

    async def _ended(self, run: _Run) -> None:
        outcome = run.done.result()
        task_id = run.task.id
        if run.open_files:
            left = [record.id for record in run.open_files.values()]
            await self._store.files.set_states(left, FileState.DELETED)
        del self._runs[task_id]
        if run.lost or (self._closing and outcome == "ended"):
            log.info("supervisor.released", task=task_id, outcome=outcome)
            return
        detail = run.detail
        state = TaskState.FAILED if outcome.startswith("failed") else TaskState.ENDED
        if state is TaskState.FAILED:
            detail = detail or outcome
            log.error("supervisor.task_failed", task=task_id, detail=detail)
        # the ends of many tasks (a StopCDNRecord of 100 streams) share a transaction
        await self._tasks.submit(TaskUpdate.ended(task_id, state, detail, self._now_ms()))
        log.info("supervisor.task_ended", task=task_id, outcome=outcome)

    async def _repair_leftovers(self, task: Task) -> None:
        """Turn files a dead recorder left half-written into valid files (announced once): those
        it recorded, then those it opened a moment before it died, before their record was
        written (``SPLIT_WAIT``), which only their sidecars tell of."""
        if task.attempts <= 1:
            return  # claimed for the first time: no recorder has written anything for it
        for record in await self._store.files.writing_for(task.id):
            closed = None
            if record.partial_path:
                closed = await asyncio.to_thread(
                    _repair_if_present, Path(record.partial_path), self._root
                )
            if closed is None:
                await self._store.files.discard(record.id)
                continue
            await self._recovered(task, record, closed)
        for info in await asyncio.to_thread(self._unrecorded, task):
            closed = await asyncio.to_thread(repair, info.path, self._root)
            if closed is not None:
                record = self._new_file_of(task, info.format, str(info.path), info.begin_ms)
                await self._recovered(task, record, closed, opened=True)

    def _unrecorded(self, task: Task) -> list[PartialInfo]:
        """The partials earlier attempts at `task` left that no record tells of (run after
        those with a record were repaired, which removed their sidecars)."""
        layout = Layout(self._root)
        attempts = range(1, task.attempts)
        return [p for a in attempts for p in layout.partials_of(recording_id(task.id, a))]

    async def _recovered(
        self, task: Task, record: RecordedFile, closed: ClosedFile, *, opened: bool = False
    ) -> None:
        """Write a repaired file closed (``opened``: with its record) and hand it on."""
        log.info("supervisor.repaired", task=task.id, key=closed.key)
        closing = Closing(record.id, facts_of(closed), self._expiry(task))
        await self._store.files.write([record] if opened else [], [closing], self._now_ms())
        self._read_back.add([closed_file(record, closing)])
        if self._sink is not None:
            self._sink.closed([closed_file(record, closing)], {}, [])

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
        await self._read_back.close(grace)
        await self._store.tasks.release(self.owner)
        with contextlib.suppress(Exception):
            await self._store.recorders.gone(self.owner)
