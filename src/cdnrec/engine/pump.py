"""Pump threads: a few threads that step the batched reads of many recordings.

A native pull reads its socket about once a second and writes what came; in between it waits.
Given a thread each, a hundred recordings are a hundred threads waking at their own moments and
taking the GIL from one another. Here a recording's reading loop is a generator that yields how
long to wait before its next read (``Steps``); a pump thread keeps the generators of many
recordings in a schedule, wakes when the earliest is due, and steps every one due within
``SLACK`` in that same wake. Reads a second apart are due on a one-second beat of their pump
(``BEAT``), so a pump's recordings are read together, once a second, in one wake.

A recording's own thread still connects, retries and closes (work that may block for seconds);
while its pull is pumped it sleeps without a timeout, which costs nothing, and finishes the files
its pump closed (``Job.defer``: renaming, the announcement). Pulls that block in
their reads (FFmpeg's) never yield and are stepped in their own thread (``drive``).
"""

from __future__ import annotations

import heapq
import itertools
import math
import queue
import threading
import time
from collections.abc import Callable, Generator

Steps = Generator[float, None, str]
"""A reading loop: yields the seconds to wait before stepping it again, returns why it ended."""

Runner = Callable[[Steps], str]
"""Runs steps to their end (in this thread, or on a pump while this thread waits); their result."""

AFTER_STOP = 0.05
"""Seconds to the next step once a stop was asked (the recorder stops at its next check)."""

SLACK = 0.02
"""A pump that wakes also steps what falls due within this many seconds: fewer wakes."""

BEAT = 1.0
"""Seconds between a pump's beats. A pause this long or longer ends on the beat nearest to it
(so it lasts up to half a beat more or less): the recordings of a pump then read together, in
one wake, instead of each in its own (at N=10 the two pumps cost 0.52–0.58 % of a core
against 0.72–0.81, decision 0006). The pumps of a process
beat in turn, apart. Shorter pauses (a pull waiting for its first key frame) are not moved."""


def drive(steps: Steps, wait: Callable[[float], bool]) -> str:
    """Step ``steps`` in this thread, sleeping in between with ``wait`` (cut short, returning
    True, when stopping: ``Event.wait``); their result."""
    while True:
        try:
            pause = next(steps)
        except StopIteration as end:
            return str(end.value)
        if wait(pause):
            time.sleep(AFTER_STOP)


class Job:
    """One recording's steps on a pump; ``Pumps.run`` waits for their end."""

    def __init__(self, steps: Steps, stop: threading.Event) -> None:
        self.steps = steps
        self.stop = stop
        self.due = float("inf")  # not scheduled yet
        self.done = threading.Event()
        self.result = ""
        self.error: BaseException | None = None
        self.pump: _Pump | None = None
        self._inbox: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()

    def defer(self, work: Callable[[], None]) -> None:
        """Run ``work`` in the thread waiting in ``Pumps.run`` (in order), not on the pump."""
        self._inbox.put(work)

    def step(self) -> float | None:
        """Run the steps to their next pause: its length (None: they ended)."""
        try:
            return next(self.steps)
        except StopIteration as end:
            self.result = str(end.value)
        except BaseException as e:  # handed to the waiting recorder thread, which reports it
            self.error = e
        self.done.set()
        self._inbox.put(None)
        return None

    def serve(self) -> None:
        """Run deferred work until the steps ended; what the first failing work raised stops
        the steps and is raised after them."""
        failure: BaseException | None = None
        while (work := self._inbox.get()) is not None:
            try:
                work()
            except BaseException as e:
                if failure is None:
                    failure = e
                    self.stop.set()
                    self.poke()
        if self.error is None and failure is not None:
            self.error = failure

    def poke(self) -> None:
        """A stop was asked: step soon rather than at the next read."""
        pump = self.pump
        if pump is not None:
            pump.hurry(self, time.monotonic() + AFTER_STOP)


class _Pump:
    """One pump thread and its schedule: a heap of due times that only the pump thread touches
    (stale entries are skipped), fed by a queue of requests from other threads (a job to add,
    or to step sooner). The thread waits on that queue until the earliest is due: one wait in
    C, where a ``threading.Condition`` ran a dozen Python calls per wake."""

    def __init__(self, name: str, phase: float = 0.0) -> None:
        self._phase = phase
        self._requests: queue.SimpleQueue[tuple[Job, float]] = queue.SimpleQueue()
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._count = threading.Lock()
        self.jobs = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, job: Job) -> None:
        """Step ``job`` now, then as it asks."""
        job.pump = self
        with self._count:
            self.jobs += 1
        self._requests.put((job, time.monotonic()))

    def hurry(self, job: Job, due: float) -> None:
        """Step ``job`` no later than ``due``."""
        self._requests.put((job, due))

    def _push(self, job: Job, due: float) -> None:
        job.due = due
        heapq.heappush(self._heap, (due, next(self._seq), job))

    def _take(self, request: tuple[Job, float]) -> None:
        job, due = request
        if due < job.due and not job.done.is_set():
            self._push(job, due)

    def _due(self) -> list[Job]:
        """Wait until something is due; everything due within ``SLACK``."""
        heap = self._heap
        requests = self._requests
        while True:
            while heap and heap[0][0] != heap[0][2].due:
                heapq.heappop(heap)  # rescheduled earlier (hurried): a stale entry
            wait = heap[0][0] - time.monotonic() if heap else None
            if wait is not None and wait <= SLACK:
                break
            try:
                self._take(requests.get(timeout=wait))
            except queue.Empty:
                continue
            while not requests.empty():
                self._take(requests.get_nowait())
        horizon = time.monotonic() + SLACK
        jobs = []
        while heap and heap[0][0] <= horizon:
            due, _, job = heapq.heappop(heap)
            if due == job.due and not job.done.is_set():
                job.due = float("inf")  # being stepped: a hurry now comes after its step
                jobs.append(job)
        return jobs

    def _run(self) -> None:
        while True:
            stepped = [(job, job.step()) for job in self._due()]
            now = time.monotonic()
            for job, pause in stepped:
                if pause is None:
                    with self._count:
                        self.jobs -= 1
                else:
                    self._push(job, self._after(now, AFTER_STOP if job.stop.is_set() else pause))

    def _after(self, now: float, pause: float) -> float:
        """When a pause of ``pause`` seconds from ``now`` ends: on this pump's nearest beat
        when it lasts a beat or more."""
        if pause < BEAT:
            return now + pause
        return math.floor((now + pause - self._phase) / BEAT + 0.5) * BEAT + self._phase


class Pumps:
    """The pump threads of a process (started as needed); ``run`` pumps one recording's steps."""

    def __init__(self, threads: int = 2) -> None:
        self._size = max(1, threads)
        self._pumps: list[_Pump] = []
        self._lock = threading.Lock()

    def run(self, job: Job) -> str:
        """Pump ``job`` until its steps end; their result, or what they (or work they deferred)
        raised. The caller runs the deferred work meanwhile, and otherwise sleeps."""
        self._least_busy().add(job)
        job.serve()
        if job.error is not None:
            raise job.error
        return job.result

    def _least_busy(self) -> _Pump:
        with self._lock:
            if len(self._pumps) < self._size:
                k = len(self._pumps)
                self._pumps.append(_Pump(f"pump-{k}", phase=BEAT * k / self._size))
                return self._pumps[-1]
            return min(self._pumps, key=lambda p: p.jobs)
