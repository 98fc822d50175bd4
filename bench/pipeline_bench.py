#!/usr/bin/env python3
"""Close-to-callback latency of the file pipeline, without media.

The real service (``cdnrec.app.build_service``: supervisor, publisher, callback sender, SQLite in
a temp folder, local storage) runs in this process; a callback receiver runs in a child process
on loopback (as a customer's backend would, it does not share our GIL). The supervisor claims K
tasks and starts one thread per task as it always does, but with a stand-in for the Recorder
(``BurstRecorder``) that writes small real files into the storage root and reports them through
the same listener and queue the real recorder threads use (``OpenFile``/``ClosedFile``). Every
`--period` seconds, each of the K recordings closes one file at a random moment within
`--spread` seconds (a burst of K files), `--bursts` times.

Reported: close->callback latency per file (from the moment the file was complete on disk to
the moment the receiver got its `record` callback; p50, p90, max, overall and per burst) and to
the outbox (the delivery's created_ms); per file: CPU of the event-loop thread (its idle polling,
measured before the bursts, taken out) and of the process (the `--busy` threads taken
out), SQL statements and commits (`--statements N`: the N most frequent statements, per file).
Idle cost (event-loop CPU per second, SQL statements and commits per second) is measured for
`--idle` seconds before the bursts, with every recording open. `--busy N` runs N pure-Python threads that compete for the GIL as busy recorder threads do (at
the 0.5 ms switch interval `cdnrec serve` sets); the loop runs on uvloop as `cdnrec serve` does.
The first burst also pays for first-time work (task cache, new connections to the receiver).

Usage: .venv/bin/python bench/pipeline_bench.py [--streams 100] [--bursts 3] [--period 10]
       [--spread 1] [--busy 0] [--size 65536] [--idle 4] [--no-keep-alive] [--log-level info]
       [--profile N] [--profile-sort tottime|cumulative] [--statements N]
       [--switch-interval MS]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import json
import logging
import multiprocessing
import os
import pstats
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import event

import cdnrec.engine.supervisor as supervisor_module
from cdnrec.app import Service, build_service
from cdnrec.cli.common import run_service
from cdnrec.config import Settings, Vendor
from cdnrec.engine.layout import Layout, PartialInfo
from cdnrec.engine.plan import ClosedFile, OpenFile, RecordingListener, RecordingPlan
from cdnrec.server import SWITCH_INTERVAL, configure_logging
from cdnrec.store import Task, TaskState
from cdnrec.store.ids import new_id

APP_ID = 1234567
SECRET = "0123456789abcdef0123456789abcdef"


# -- the callback receiver (a child process) --------------------------------------------------


def _receive(port: int, arrivals: Any, keep_alive: bool) -> None:
    """Answer 200 to every POST; report (stream, begin, arrival time) of `record` callbacks."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            arrived = time.time()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            if body.get("event") == "record":
                arrivals.put((body["stream_alias"], int(body["begin_time"]), arrived))

        def log_message(self, format: str, *args: Any) -> None:
            return

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256  # a burst of connections is not refused (the default is 5)

    Server(("127.0.0.1", port), Handler).serve_forever()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the stand-in recorder --------------------------------------------------------------------


@dataclass
class Conductor:
    """When each recording closes its files, and when each file was complete on disk."""

    streams: int
    bursts: int
    period: float
    spread: float
    size: int
    start: float = 0.0
    ready: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    go: threading.Event = field(default_factory=threading.Event)
    closed: dict[tuple[str, int], tuple[float, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close_at(self, stream_index: int, burst: int) -> float:
        """The moment a recording closes its file of a burst (seeded: the same in every run)."""
        offset = random.Random(stream_index * 1000 + burst).uniform(0, self.spread)
        return self.start + burst * self.period + offset

    def record_close(self, stream_id: str, begin_s: int, at: float, burst: int) -> None:
        """A file of a burst is complete on disk."""
        with self.lock:
            self.closed[(stream_id, begin_s)] = (at, burst)


CONDUCTOR: Conductor | None = None


class BurstRecorder:
    """Stands in for the Recorder: one format, a small real file closed at each burst."""

    def __init__(self, plan: RecordingPlan, listener: RecordingListener, **_: Any) -> None:
        assert CONDUCTOR is not None
        self.plan = plan
        self.listener = listener
        self.conductor = CONDUCTOR
        self.layout = Layout(plan.storage_root, plan.path_template)
        self.index = int(plan.stream_id.removeprefix("bench"))
        self._stop = threading.Event()

    def stop(self) -> None:
        """Return from run() (the open file is left for the supervisor to discard)."""
        self._stop.set()

    def _open(self, begin_ms: int) -> None:
        partial = self.layout.partial_path(self.plan.recording_id, "mp4", begin_ms)
        self.listener.on_file_opened(OpenFile("mp4", partial, begin_ms))

    def _close(self, begin_ms: int, end_ms: int) -> ClosedFile:
        info = PartialInfo(
            Path("x.part"),
            "mp4",
            self.plan.app_id,
            self.plan.stream_id,
            begin_ms,
            self.plan.recording_id,
            self.plan.path_template,
        )
        path = self.layout.reserve_final(info, end_ms)
        data = os.urandom(self.conductor.size)
        path.write_bytes(data)
        return ClosedFile(
            format="mp4",
            path=path,
            key=self.layout.key(path),
            begin_ms=begin_ms,
            end_ms=end_ms,
            duration=(end_ms - begin_ms) / 1000,
            size=len(data),
            codecs=("h264", "aac"),
        )

    def run(self) -> str:
        """Open a file, then close it and open the next at each burst, until stopped."""
        self.listener.on_state("recording")
        begin_ms = int(time.time() * 1000)
        self._open(begin_ms)
        self.conductor.ready.release()
        self.conductor.go.wait()
        for burst in range(self.conductor.bursts):
            wait = self.conductor.close_at(self.index, burst) - time.time()
            if self._stop.wait(max(0.0, wait)):
                return "ended"
            end_ms = int(time.time() * 1000)
            closed = self._close(begin_ms, end_ms)
            self.conductor.record_close(self.plan.stream_id, begin_ms // 1000, time.time(), burst)
            self._open(end_ms)  # at a split the next file opens before the previous one closes
            self.listener.on_file_closed(closed)
            begin_ms = end_ms
        self._stop.wait()
        return "ended"


# -- the service ------------------------------------------------------------------------------


def _settings(data_dir: Path, callback_url: str, streams: int) -> Settings:
    app = {
        "app_id": APP_ID,
        "server_secret": SECRET,
        "callback_url": callback_url,
        "vendors": {
            "Tencent": {
                "sources": ["rtmp://127.0.0.1:1/live/{stream_id}"],
                "formats": ["mp4"],
                "interval": "10s",
            }
        },
    }
    server = {"listen": "127.0.0.1:1", "public_url": "http://127.0.0.1:1", "data_dir": data_dir}
    recorder = {"capacity": streams + 10}
    return Settings.model_validate({"server": server, "recorder": recorder, "apps": [app]})


async def _start_tasks(service: Service, streams: int) -> None:
    app = await service.apps.get(APP_ID)
    assert app is not None
    now_ms = int(time.time() * 1000)
    for n in range(streams):
        task = Task(
            id=new_id(),
            app_id=APP_ID,
            vendor=Vendor.TENCENT,
            stream_id=f"bench{n}",
            refs={"TaskId": f"T{n}"},
            config=app.vendors[Vendor.TENCENT],
            state=TaskState.PENDING,
            created_ms=now_ms,
            deadline_ms=now_ms + 3_600_000,
        )
        await service.store.tasks.start(task)
    assert service.supervisor is not None
    service.supervisor.nudge()


@dataclass
class Counts:
    """SQL statements (by text) and commits."""

    statements: int = 0
    commits: int = 0
    by_text: collections.Counter[str] = field(default_factory=collections.Counter)


@contextmanager
def _counting(service: Service) -> Iterator[Counts]:
    counts = Counts()
    engine = service.store.engine.sync_engine

    def statement(_conn: Any, _cursor: Any, text: str, *_: Any) -> None:
        counts.statements += 1
        counts.by_text[" ".join(text.split())[:100]] += 1

    def commit(*_: Any) -> None:
        counts.commits += 1

    hooks = {"before_cursor_execute": statement, "commit": commit}
    for name, hook in hooks.items():
        event.listen(engine, name, hook)
    try:
        yield counts
    finally:
        for name, hook in hooks.items():
            event.remove(engine, name, hook)


def _spin(stop: threading.Event, spent: list[float]) -> None:
    """Hold the GIL as much as a pure-Python thread can (a busy recorder)."""
    x = 0
    while not stop.is_set():
        for i in range(2000):
            x += i
    spent.append(time.thread_time())


async def _collect(arrivals: Any, expected: int, within: float) -> dict[tuple[str, int], float]:
    """Callbacks as they arrive, until every expected one did (or `within` seconds passed)."""
    got: dict[tuple[str, int], float] = {}
    deadline = time.monotonic() + within
    while len(got) < expected and time.monotonic() < deadline:
        while not arrivals.empty():
            stream, begin, at = arrivals.get()
            got.setdefault((stream, begin), at)
        await asyncio.sleep(0.05)
    return got


async def _run(args: argparse.Namespace, arrivals: Any, callback_url: str, work: Path) -> None:
    global CONDUCTOR
    conductor = Conductor(args.streams, args.bursts, args.period, args.spread, args.size)
    CONDUCTOR = conductor
    supervisor_module.Recorder = BurstRecorder  # type: ignore[misc,assignment]
    with (work / "service.log").open("w") as log_file:
        configure_logging(logging.getLevelName(args.log_level.upper()), log_file)
        service = await build_service(_settings(work / "data", callback_url, args.streams))
        await service.start()
        await _start_tasks(service, args.streams)
        for _ in range(args.streams):
            await asyncio.to_thread(conductor.ready.acquire, timeout=60)
        await asyncio.sleep(1.0)  # the recordings' first reports are written
        idle = await _idle(service, args.idle)
        measured = await _measure(args, service, conductor, arrivals)
        queued, retried = await _queued_at(service)
        await service.close()
    measured.total_loop_cpu = measured.loop_cpu
    measured.loop_cpu -= idle.loop_cpu / idle.window * measured.window
    _report(args, conductor, measured)
    _report_idle(idle)
    stage = [queued[k] - at for k, (at, _) in conductor.closed.items() if k in queued]
    _print_latencies("to outbox", stage)
    print(f"deliveries attempted more than once: {retried}")


async def _idle(service: Service, seconds: float) -> Measured:
    """What the service costs while its recordings write but no file closes: its polls and
    timers (event-loop CPU, SQL statements and commits over `seconds`)."""
    with _counting(service) as counts:
        loop0 = time.thread_time()
        await asyncio.sleep(seconds)
        loop_cpu = time.thread_time() - loop0
    return Measured({}, loop_cpu, 0.0, seconds, counts, None)


def _report_idle(idle: Measured) -> None:
    counts, window = idle.counts, idle.window
    print(
        f"idle ({window:g} s before the bursts): event-loop CPU "
        f"{idle.loop_cpu / window * 1000:.2f} ms/s, {counts.statements / window:.1f} SQL "
        f"statements/s, {counts.commits / window:.1f} commits/s"
    )


@dataclass
class Measured:
    """What one run measured."""

    got: dict[tuple[str, int], float]
    loop_cpu: float
    process_cpu: float
    window: float
    counts: Counts
    profile: cProfile.Profile | None
    total_loop_cpu: float = 0.0
    """The event-loop thread's CPU over the window, before the idle polling is taken out."""


async def _measure(
    args: argparse.Namespace, service: Service, conductor: Conductor, arrivals: Any
) -> Measured:
    """Start the bursts (and the busy threads) and collect callbacks until all arrived."""
    stop_busy, busy_cpu = threading.Event(), list[float]()
    busy = [
        threading.Thread(target=_spin, args=(stop_busy, busy_cpu), daemon=True)
        for _ in range(args.busy)
    ]
    for thread in busy:
        thread.start()
    process = psutil.Process()
    profile = cProfile.Profile() if args.profile else None
    with _counting(service) as counts:
        cpu0, loop0 = process.cpu_times(), time.thread_time()
        conductor.start = time.time() + 0.5
        conductor.go.set()
        if profile is not None:
            profile.enable()
        expected = args.streams * args.bursts
        got = await _collect(arrivals, expected, args.bursts * args.period + 120)
        if profile is not None:
            profile.disable()
        cpu1, loop1 = process.cpu_times(), time.thread_time()
        window = time.time() - conductor.start
    stop_busy.set()
    for thread in busy:
        thread.join()
    process_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system) - sum(busy_cpu)
    return Measured(got, loop1 - loop0, process_cpu, window, counts, profile)


async def _queued_at(service: Service) -> tuple[dict[tuple[str, int], float], int]:
    """When each file's callback was put in the outbox (its delivery's created_ms); how many
    deliveries needed more than one attempt."""
    queued: dict[tuple[str, int], float] = {}
    retried = 0
    for delivery in await service.store.deliveries.recent(limit=100_000):
        begin = int(delivery.payload["begin_time"])
        queued[(delivery.payload["stream_alias"], begin)] = delivery.created_ms / 1000
        retried += delivery.attempts > 1
    return queued, retried


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def _print_latencies(what: str, latencies: list[float]) -> None:
    if latencies:
        print(
            f"close->callback, {what:10}  p50 {statistics.median(latencies) * 1000:6.0f} ms  "
            f"p90 {_pct(latencies, 0.9) * 1000:6.0f} ms  max {max(latencies) * 1000:6.0f} ms"
        )


def _report(args: argparse.Namespace, conductor: Conductor, measured: Measured) -> None:
    got, counts = measured.got, measured.counts
    latencies = [got[k] - at for k, (at, _) in conductor.closed.items() if k in got]
    files = max(1, len(conductor.closed))
    print(
        f"streams={args.streams} bursts={args.bursts} period={args.period}s "
        f"spread={args.spread}s busy={args.busy} keep-alive={not args.no_keep_alive} "
        f"log={args.log_level} switchinterval={sys.getswitchinterval() * 1000:.1f}ms "
        f"load={os.getloadavg()[0]:.1f}"
    )
    print(f"files closed {len(conductor.closed)}, callbacks received {len(got)}")
    _print_latencies("all bursts", latencies)
    for burst in range(args.bursts):
        one = [got[k] - at for k, (at, b) in conductor.closed.items() if k in got and b == burst]
        _print_latencies(f"burst {burst + 1}", one)
    print(
        f"per file: event-loop CPU {measured.loop_cpu / files * 1000:.2f} ms (idle polling "
        f"taken out), process CPU {measured.process_cpu / files * 1000:.2f} ms (busy threads "
        f"taken out), {counts.statements / files:.1f} SQL statements, "
        f"{counts.commits / files:.1f} commits"
    )
    for text, n in counts.by_text.most_common(args.statements):
        print(f"  {n / files:5.2f} per file: {text}")
    print(
        f"event-loop CPU over the window, idle polling included: {measured.total_loop_cpu:.3f} s "
        f"in {measured.window:.1f} s ({measured.total_loop_cpu / measured.window * 100:.2f} % "
        f"of a core)"
    )
    if measured.profile is not None:
        pstats.Stats(measured.profile).sort_stats(args.profile_sort).print_stats(args.profile)


def main() -> None:
    """Run the benchmark once and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--period", type=float, default=10.0)
    parser.add_argument("--spread", type=float, default=1.0)
    parser.add_argument("--busy", type=int, default=0)
    parser.add_argument("--size", type=int, default=64 * 1024)
    parser.add_argument(
        "--idle", type=float, default=4.0, help="seconds of idle measured before the bursts"
    )
    parser.add_argument(
        "--no-keep-alive", action="store_true", help="the receiver closes every connection"
    )
    parser.add_argument("--log-level", default="info", help="the service's log level")
    parser.add_argument(
        "--profile", type=int, default=0, help="print the N costliest functions of the event loop"
    )
    parser.add_argument(
        "--profile-sort",
        default="tottime",
        help="how --profile orders functions (pstats: tottime, cumulative, ncalls, …)",
    )
    parser.add_argument(
        "--statements", type=int, default=0, help="print the N most frequent SQL statements"
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=SWITCH_INTERVAL * 1000,
        help="the GIL switch interval, ms (default: what `cdnrec serve` sets)",
    )
    args = parser.parse_args()
    port = _free_port()
    arrivals: Any = multiprocessing.get_context("spawn").Queue()
    receiver = multiprocessing.get_context("spawn").Process(
        target=_receive, args=(port, arrivals, not args.no_keep_alive), daemon=True
    )
    receiver.start()
    sys.setswitchinterval(args.switch_interval / 1000)
    try:
        with tempfile.TemporaryDirectory(prefix="cdnrec-pipeline-") as work:
            # on uvloop when installed, as `cdnrec serve` runs
            run_service(_run(args, arrivals, f"http://127.0.0.1:{port}/zego", Path(work)))
    finally:
        receiver.terminate()


if __name__ == "__main__":
    main()
