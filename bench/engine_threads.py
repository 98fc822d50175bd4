#!/usr/bin/env python3
"""Where cdnrec's CPU goes at low N: its threads, side by side with ``ffmpeg -c copy``.

The benchmark (``engine_bench.py``) measures each process's CPU over one 45 s window per
approach, so at N=1 a drift of the shared machine between ffmpeg's window and cdnrec's moves the
ratio. This tool reads the scheduler's nanosecond counters per thread
(``/proc/<pid>/task/<tid>/schedstat``) and alternates short windows of the two recorders on the
same live streams:

* ``ffmpeg``: one ``ffmpeg -i rtmp://… -c copy -f segment`` per stream (the harness's command);
* ``cdnrec``: one ``cdnrec serve`` (started once), StartCDNRecord before each of its windows and
  StopCDNRecord after, as ``engine_bench.py`` configures it (FLV, interval = ``--segment``);
* ``idle``: the same service with nothing recording.

With ``--account`` the service also sums its CPU by asyncio task and by SQLite call
(``bench/accounting/sitecustomize.py``). It prints (and keeps in ``bench/results/threads-<stamp>.md``) the median CPU per stream of each, their ratio, and cdnrec's CPU by thread (named by
``py-spy dump`` when py-spy is installed) with the wakes (context switches) per second::

    .venv/bin/python bench/engine_threads.py --n 1 --rounds 4 --window 30

Needs the shared harness (``../shared/bench`` or ``CDNREC_SHARED_BENCH``), nginx with the RTMP
module and ffmpeg, as ``engine_bench.py`` does.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
STEPS = "steps "
"""Before a key of the accounting: how many steps or calls it took (not CPU ns)."""
sys.path.insert(0, str(HERE))
import cdnrec_recorder as cr  # noqa: E402
from engine_bench import H, cpu_identity, per_thread  # noqa: E402  (the shared harness, loaded there)


def _counters(task: str) -> tuple[int, int]:
    with open(f"{task}/schedstat") as f:
        ns = int(f.read().split()[0])
    with open(f"{task}/status") as f:
        switches = sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
    return ns, switches


def task_counters(pid: int) -> dict[int, tuple[int, int]]:
    """Per thread of ``pid``: (CPU ns, context switches)."""
    return per_thread(pid, _counters)


def thread_names(pid: int) -> dict[int, str]:
    """OS thread id → Python thread name, from ``py-spy dump`` (empty without py-spy)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    try:
        raw = subprocess.run(
            [spy, "dump", "--pid", str(pid), "--json"], capture_output=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    names: dict[int, str] = {}
    for th in json.loads(raw):
        if th.get("os_thread_id"):
            names[int(th["os_thread_id"])] = str(th.get("thread_name") or "?")
    return names


def measure(groups: dict[str, list[int]], seconds: float) -> dict[str, dict[int, tuple[int, int]]]:
    """Per group of processes, per thread: CPU ns and switches spent during ``seconds``."""

    def now() -> dict[str, dict[int, tuple[int, int]]]:
        return {
            g: {tid: c for pid in pids for tid, c in task_counters(pid).items()}
            for g, pids in groups.items()
        }

    before = now()
    time.sleep(seconds)
    after = now()
    return {
        g: {
            tid: (ns - before[g].get(tid, (0, 0))[0], sw - before[g].get(tid, (0, 0))[1])
            for tid, (ns, sw) in threads.items()
        }
        for g, threads in after.items()
    }


def total(threads: dict[int, tuple[int, int]]) -> int:
    """CPU ns of all these threads."""
    return sum(ns for ns, _ in threads.values())


def pct(ns: int, seconds: float, n: int = 1) -> float:
    """CPU ns over ``seconds`` as % of one core per stream."""
    return 100.0 * ns / 1e9 / seconds / n


def _claim(work: Path) -> IO[str]:
    """Hold ``work`` for this run (released when the process ends): a second run on the same
    folder would delete the first one's files and share its database."""
    lock = open(f"{work}.lock", "w")  # noqa: SIM115 - held open for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another engine_threads.py run uses {work} (see --workdir)") from None
    return lock


class Run:
    """The origin, the publishers, one cdnrec service; the alternating windows."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.work = Path(args.workdir)
        self.lock = _claim(self.work)
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.procs = H.Procs()
        self.streams = [f"s{i}" for i in range(args.n)]
        self.accounts: list[tuple[bool, Counter[str]]] = []

    def start(self) -> None:
        harness_args = argparse.Namespace(
            ffmpeg="ffmpeg", sample_seconds=60, workdir=str(self.work / "harness")
        )
        self.sample = H.Bench(harness_args).sample()
        rtmp, http = H.free_port(), H.free_port()
        self.origin = H.Origin(
            self.procs, str(self.work / "nginx"), str(self.work / "nginx-rec"), rtmp, http, "nginx"
        )
        self.origin.start()
        self.urls = {s: f"rtmp://127.0.0.1:{rtmp}/live/{s}" for s in self.streams}
        for s, url in self.urls.items():
            argv = shlex.split(H.PUBLISH_CMD.format(ffmpeg="ffmpeg", sample=self.sample, url=url))
            self.procs.spawn(argv, str(self.work / f"pub-{s}.log"))
            time.sleep(2.0 / len(self.urls))
        self.receiver = cr.Receiver(self.work / "rec").start()
        self.service = cr.CdnrecService(
            workdir=self.work / "cdnrec",
            storage_root=self.work / "rec",
            source=f"rtmp://127.0.0.1:{rtmp}/live/{{stream_id}}",
            formats=["flv"],
            interval=self.a.segment,
            hls_segment=self.a.segment,
            capacity=max(200, 2 * self.a.n),
            callback_url=self.receiver.url,
        )
        if self.a.account:
            self.account = self.work / "account.json"
            os.environ["CDNREC_ACCOUNT"] = str(self.account)
            os.environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(HERE / "accounting"), os.environ.get("PYTHONPATH")) if p
            )
        self.service.spawn()
        self.service.wait_healthy()
        time.sleep(self.a.warmup)

    def ffmpeg_window(self) -> tuple[int, int]:
        """CPU ns of the ffmpeg recorders and of the origin in a window."""
        out = self.work / "ffmpeg"
        procs = []
        for s, url in self.urls.items():
            d = out / s
            d.mkdir(parents=True, exist_ok=True)
            cmd = H.FFMPEG_REC_CMD.format(
                ffmpeg="ffmpeg", url=url, segment=self.a.segment, fmt="flv", outdir=d, ext="flv"
            )
            procs.append(self.procs.spawn(shlex.split(cmd), str(self.work / f"ff-{s}.log")))
        time.sleep(self.a.settle)
        spent = measure(
            {"rec": [p.pid for p in procs], "origin": self.origin.pids()}, self.a.window
        )
        self.procs.stop(procs, signal.SIGINT, 10.0)
        shutil.rmtree(out, ignore_errors=True)
        return total(spent["rec"]), total(spent["origin"])

    def cdnrec_window(self, recording: bool) -> tuple[dict[int, tuple[int, int]], int]:
        """The service's CPU ns by thread (recording or idle) and the origin's, in a window."""
        assert self.service.proc is not None
        if recording:
            self.service.start_streams(self.streams)
        time.sleep(self.a.settle)
        before = self.accounted()
        spent = measure(
            {"rec": [self.service.proc.pid], "origin": self.origin.pids()}, self.a.window
        )
        if self.a.account:
            self.accounts.append((recording, self.accounted() - before))
        if recording:
            self.service.stop_streams(self.streams)
            time.sleep(2.0)
        return spent["rec"], total(spent["origin"])

    def accounted(self) -> Counter[str]:
        """The service's CPU ns by task and SQLite call so far, and how many steps or calls
        each took (keys with ``STEPS`` before them) (``--account``; else empty)."""
        if not self.a.account or self.service.proc is None:
            return Counter()
        self.account.unlink(missing_ok=True)
        self.service.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                sums = json.loads(self.account.read_text())
                steps = {STEPS + k: v for k, v in sums["steps"].items()}
                return Counter(sums["spent_ns"]) + Counter(steps)
            except (OSError, ValueError):
                time.sleep(0.05)
        raise RuntimeError("the service wrote no accounting (is bench/accounting on its path?)")

    def stop(self) -> None:
        self.service.shutdown(15.0)
        self.receiver.stop()
        self.procs.stop_all()


def hold(run: Run, seconds: float) -> None:
    """``--hold``: the service records the streams for ``seconds`` (Ctrl-C ends it sooner) and
    nothing is measured, so that a profiler can attach to the pid it prints."""
    assert run.service.proc is not None
    run.service.start_streams(run.streams)
    H.log(
        f"cdnrec serve (pid {run.service.proc.pid}) records {len(run.streams)} streams "
        f"in {run.a.segment:g} s files for {seconds:g} s"
    )
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        H.log("stopping")
    run.service.stop_streams(run.streams)


def ratio(a: float, b: float) -> str:
    """``a / b`` to two places, or a dash without ``b``."""
    return f"{a / b:.2f}" if b else "–"


def report(run: Run, rounds: list[dict[str, Any]], names: dict[int, str]) -> str:
    a = run.a
    w, n = a.window, a.n
    ff = [pct(r["ffmpeg"], w, n) for r in rounds]
    rec = [pct(total(r["cdnrec"]), w, n) for r in rounds]
    idle = [pct(total(r["idle"]), w) for r in rounds]
    # the origin's CPU for a recorder, beyond its CPU with the publishers alone (idle window)
    dff = [pct(r["ffmpeg_origin"] - r["idle_origin"], w, n) for r in rounds]
    drec = [pct(r["cdnrec_origin"] - r["idle_origin"], w, n) for r in rounds]
    lines = [
        f"# cdnrec threads at N={n}: {len(rounds)} rounds of {w:.0f} s windows, "
        f"{a.segment:.0f} s files",
        "",
        f"CPU: {cpu_identity()}",
        "",
        "Origin Δ: nginx's CPU in the window minus its CPU in the idle window (publishers only), "
        "as the shared harness adds it to a recorder's CPU.",
        "",
        "| round | ffmpeg %/stream | + origin Δ | cdnrec %/stream | + origin Δ | ratio "
        "| ratio with origin Δ | idle service % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, (f, df, c, dc, d) in enumerate(zip(ff, dff, rec, drec, idle, strict=True)):
        lines.append(
            f"| {i + 1} | {f:.3f} | {df:.3f} | {c:.3f} | {dc:.3f} | {ratio(c, f)} "
            f"| {ratio(c + dc, f + df)} | {d:.3f} |"
        )
    mid = statistics.median
    mf, mdf, mc, mdc = mid(ff), mid(dff), mid(rec), mid(drec)
    lines += [
        f"| median | {mf:.3f} | {mdf:.3f} | {mc:.3f} | {mdc:.3f} | {ratio(mc, mf)} "
        f"| {ratio(mc + mdc, mf + mdf)} | {mid(idle):.3f} |",
        "",
        "cdnrec by thread (median over rounds; % of a core, wakes per second):",
        "",
        "| thread | recording % | wakes/s | idle % | idle wakes/s |",
        "|---|---:|---:|---:|---:|",
    ]
    by: dict[str, dict[str, list[float]]] = {}
    for r in rounds:
        for kind in ("cdnrec", "idle"):
            sums: dict[str, tuple[int, int]] = {}
            for tid, (ns, sw) in r[kind].items():
                name = names.get(tid, f"tid {tid}")
                prev = sums.get(name, (0, 0))
                sums[name] = (prev[0] + ns, prev[1] + sw)
            for name, (ns, sw) in sums.items():
                d = by.setdefault(name, {})
                d.setdefault(kind, []).append(pct(ns, w))
                d.setdefault(kind + "_wakes", []).append(sw / w)

    def med(d: dict[str, list[float]], k: str) -> float:
        return statistics.median(d[k]) if d.get(k) else 0.0

    for name, d in sorted(by.items(), key=lambda kv: -med(kv[1], "cdnrec")):
        if med(d, "cdnrec") < 0.001 and med(d, "idle") < 0.001:
            continue
        lines.append(
            f"| {name} | {med(d, 'cdnrec'):.3f} | {med(d, 'cdnrec_wakes'):.1f} | "
            f"{med(d, 'idle'):.3f} | {med(d, 'idle_wakes'):.1f} |"
        )
    return "\n".join(lines + accounting(run)) + "\n"


def accounting(run: Run) -> list[str]:
    """``--account``: the service's CPU by asyncio task and SQLite call (median over rounds)."""
    if not run.accounts:
        return []
    w = run.a.window
    keys = {k for _, c in run.accounts for k in c if not k.startswith(STEPS)}

    def med(recording: bool, key: str) -> float:
        return statistics.median(pct(c[key], w) for r, c in run.accounts if r == recording)

    def per_min(recording: bool, key: str) -> float:
        return statistics.median(c[STEPS + key] * 60 / w for r, c in run.accounts if r == recording)

    rows = sorted(keys, key=lambda k: -med(True, k))
    lines = [
        "",
        "cdnrec's CPU by asyncio task and SQLite call (median; % of a core; what runs outside a "
        "task, the loop's callbacks and the kernel, is not in it):",
        "",
        "| task or call | recording % | idle % | steps/min recording | idle |",
        "|---|---:|---:|---:|---:|",
    ]
    for k in rows:
        if max(med(True, k), med(False, k)) >= 0.001:
            lines.append(
                f"| {k} | {med(True, k):.4f} | {med(False, k):.4f} "
                f"| {per_min(True, k):.1f} | {per_min(False, k):.1f} |"
            )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=1, help="live streams (default 1)")
    ap.add_argument("--rounds", type=int, default=4, help="alternations (default 4)")
    ap.add_argument("--window", type=float, default=30.0, help="seconds measured per window")
    ap.add_argument("--segment", type=float, default=10.0, help="file interval, s (default 10)")
    ap.add_argument("--settle", type=float, default=4.0, help="seconds before each window")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds after the service starts")
    ap.add_argument(
        "--no-ffmpeg", action="store_true", help="cdnrec only (to compare builds of cdnrec)"
    )
    ap.add_argument(
        "--account",
        action="store_true",
        help="also the service's CPU by asyncio task and SQLite call (bench/accounting)",
    )
    ap.add_argument(
        "--hold",
        type=float,
        metavar="SECONDS",
        help="measure nothing: record for SECONDS with the service's pid printed, for a "
        "profiler to attach (perf record -p, py-spy, strace)",
    )
    ap.add_argument(
        "--workdir", default=os.path.join(tempfile.gettempdir(), "cdnrec-threads"), help="scratch"
    )
    args = ap.parse_args()
    run = Run(args)
    rounds: list[dict[str, Any]] = []
    try:
        run.start()
        assert run.service.proc is not None
        if args.hold:
            hold(run, args.hold)
            return
        names = thread_names(run.service.proc.pid)
        for i in range(args.rounds):
            H.log(f"round {i + 1}/{args.rounds}")
            r: dict[str, Any] = {}
            r["ffmpeg"], r["ffmpeg_origin"] = (0, 0) if args.no_ffmpeg else run.ffmpeg_window()
            r["cdnrec"], r["cdnrec_origin"] = run.cdnrec_window(True)
            if not names or len(names) < len(r["cdnrec"]):
                names.update(thread_names(run.service.proc.pid))
            r["idle"], r["idle_origin"] = run.cdnrec_window(False)
            rounds.append(r)
    finally:
        run.stop()
    text = report(run, rounds, names)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = HERE / "results" / f"threads-{stamp}.md"
    command = "bench/engine_threads.py " + " ".join(sys.argv[1:])
    out.write_text(f"{text}\nCommand: `{command}`; load average at the end: {os.getloadavg()}\n")
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
