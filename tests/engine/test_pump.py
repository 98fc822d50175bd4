"""Pump threads: many recordings' reading loops stepped by a few threads."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.engine.checks import check_file
from tests.engine.conftest import Running, stream_name
from tests.engine.test_formats import wait_live
from tests.support.media import PacketIndex, continuity
from tests.support.origins import NginxRtmp, publish

from cdnrec.engine.pump import BEAT, Job, Pumps, Steps, drive


def counting(n: int, pause: float, seen: list[str]) -> Steps:
    """Steps that record the thread of each step and end after ``n`` pauses."""
    for _ in range(n):
        seen.append(threading.current_thread().name)
        yield pause
    seen.append(threading.current_thread().name)
    return f"ended after {n}"


def test_pumps_step_many_jobs_on_their_own_threads() -> None:
    """Eight jobs on two pumps: each returns its result to its caller; only the two pump
    threads ever step them, both of them."""
    pumps = Pumps(2)
    seen: list[list[str]] = [[] for _ in range(8)]
    results: list[str] = [""] * 8

    def caller(i: int) -> None:
        results[i] = pumps.run(Job(counting(5, 0.01, seen[i]), threading.Event()))

    callers = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(20)
    assert results == ["ended after 5"] * 8
    assert all(len(s) == 6 for s in seen)
    assert {name for s in seen for name in s} == {"pump-0", "pump-1"}


def test_reads_a_beat_apart_fall_on_the_pumps_beat() -> None:
    """Two jobs that pause a beat between steps, started 0.3 s apart on one pump: after their
    first step both are stepped in the same wake, each pause lasting a beat give or take half."""
    steps_at: list[list[float]] = [[], []]

    def beating(i: int) -> Steps:
        for _ in range(3):
            steps_at[i].append(time.monotonic())
            yield BEAT
        steps_at[i].append(time.monotonic())
        return "ended"

    pumps = Pumps(1)
    out: list[str] = []
    callers = [
        threading.Thread(
            target=lambda i=i: out.append(pumps.run(Job(beating(i), threading.Event())))
        )
        for i in range(2)
    ]
    # pump-0's beats fall on whole seconds of the monotonic clock: start just after one, so that
    # both first pauses (ending 0.05 and 0.35 s after the next) end nearest that same beat
    now = time.monotonic()
    time.sleep(math.ceil(now / BEAT) * BEAT + 0.05 - now)
    callers[0].start()
    time.sleep(0.3)
    callers[1].start()
    for t in callers:
        t.join(20)
    assert out == ["ended", "ended"]
    first, second = steps_at
    assert second[0] - first[0] > 0.25  # started apart
    for a, b in zip(first[1:], second[1:], strict=True):
        assert abs(a - b) < 0.1, steps_at  # then stepped together
    for times in steps_at:
        pauses = [b - a for a, b in itertools.pairwise(times)]
        assert all(0.45 * BEAT < p < 1.6 * BEAT for p in pauses), steps_at


def test_a_stop_steps_a_waiting_job_at_once() -> None:
    """A job that asked to wait a minute is stepped again soon after its stop is asked (the
    recorder's stop()), then at short intervals until it ends."""
    stop = threading.Event()
    steps_at: list[float] = []

    def waiting() -> Steps:
        while not (stop.is_set() and len(steps_at) >= 3):
            steps_at.append(time.monotonic())
            yield 60.0
        return "stopped"

    job = Job(waiting(), stop)
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(Pumps(1).run(job)))
    t.start()
    time.sleep(0.3)
    assert len(steps_at) == 1  # it waits its minute
    stop.set()
    job.poke()
    t.join(20)
    assert out == ["stopped"]
    assert steps_at[-1] - steps_at[0] < 30  # far less than the two minutes it asked for


def test_what_the_steps_raise_reaches_the_caller() -> None:
    """An error inside the steps (a writer failing) is raised in the waiting thread, and the
    pump goes on stepping other jobs."""

    def failing() -> Steps:
        yield 0.01
        raise OSError("disk full")

    pumps = Pumps(1)
    with pytest.raises(OSError, match="disk full"):
        pumps.run(Job(failing(), threading.Event()))
    seen: list[str] = []
    assert pumps.run(Job(counting(2, 0.01, seen), threading.Event())) == "ended after 2"


def test_deferred_work_runs_in_order_on_the_waiting_thread() -> None:
    """What the steps defer (finishing a closed file) runs in the thread that waits in
    ``Pumps.run``, in the order deferred, all of it before ``run`` returns."""
    done: list[tuple[int, str]] = []
    job: Job

    def note(i: int) -> Callable[[], None]:
        return lambda: done.append((i, threading.current_thread().name))

    def deferring() -> Steps:
        for i in range(4):
            job.defer(note(i))
            yield 0.01
        return "ended"

    job = Job(deferring(), threading.Event())
    assert Pumps(1).run(job) == "ended"
    assert done == [(i, threading.current_thread().name) for i in range(4)]


def test_failing_deferred_work_stops_the_steps_and_is_raised() -> None:
    """Deferred work that raises (a file that cannot be renamed) stops the steps, as a stop
    would, and the caller gets the error once they ended."""
    stop = threading.Event()
    job: Job

    def rename() -> None:
        raise OSError("cannot rename")

    def steps() -> Steps:
        job.defer(rename)
        while not stop.is_set():
            yield 60.0
        return "stopped"

    job = Job(steps(), stop)
    with pytest.raises(OSError, match="cannot rename"):
        Pumps(1).run(job)
    assert stop.is_set()
    assert job.done.is_set()


def test_drive_steps_in_the_calling_thread() -> None:
    """Without pumps the caller steps its own loop, sleeping the pauses."""
    seen: list[str] = []
    assert drive(counting(3, 0.01, seen), threading.Event().wait) == "ended after 3"
    assert set(seen) == {threading.current_thread().name}


@pytest.mark.nginx
@pytest.mark.parametrize("pumped", [True, False], ids=["pump-threads", "own-thread"])
def test_native_pull_records_the_same_on_pumps_and_on_its_own_thread(
    pumped: bool,
    nginx: NginxRtmp,
    av_clip: Path,
    av_index: PacketIndex,
    make_plan: Callable[..., object],
    running: Callable[..., Running],
) -> None:
    """Three streams recorded at once, read by the shared pump threads or each by its own
    thread: either way every FLV file is valid and each recording's packets are the source's,
    without a gap or a repeat across its splits."""
    names = [stream_name() for _ in range(3)]
    pubs = [publish(av_clip, nginx.url(n)) for n in names]
    try:
        for n in names:
            wait_live(nginx.url(n))
        kw = {} if pumped else {"pumps": None}
        runs = [running(make_plan(nginx.url("{stream_id}"), stream_id=n), **kw) for n in names]
        for r in runs:
            r.events.wait(lambda e: len(e.files("flv")) >= 2, timeout=30)
        assert [r.stop() for r in runs] == ["ended"] * 3
    finally:
        for p in pubs:
            p.stop()
    kinds = ("video", "audio")
    for r in runs:
        # every file is finished (renamed, checksummed, announced) by its recording's thread
        assert set(r.events.closed_on) == {r.thread.name}
        files = r.events.files("flv")
        assert len(files) >= 2
        for i, f in enumerate(files):
            check_file(f, r.plan.storage_root, kinds, last=i == len(files) - 1)
        res = continuity(av_index, [f.path for f in files], kinds)
        for k in kinds:
            assert res.packets[k] > 0
            assert (res.lost[k], res.dup[k], res.unknown[k]) == (0, 0, 0), res
