"""Benchmark (not a test): CPU of N live recordings, side by side in one run.

    .venv/bin/python -m tests.support.bench_engine_cpu N SECONDS [SAMPLE.flv]

One nginx-rtmp origin and N looping publishers of SAMPLE (default: the test clip), then in
turn on the same origin and publishers: the shared PyAV probe (/work/shared/bench), the cdnrec
Recorder with a few format sets (env FMTS="flv;mp4,m3u8"), and N ``ffmpeg -c copy -f segment``
processes. Prints % of one core per stream (utime+stime of the recorder processes over the
window) and RSS per stream. Compare numbers within one run only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.support.media import ffmpeg_exe, make_clip
from tests.support.origins import NginxRtmp, publish

PROBE = Path(os.environ.get("PYAV_PROBE", "/work/shared/bench/pyav_recorder.py"))
RECORDER = r"""
import signal, sys, threading
from pathlib import Path
from cdnrec.engine.plan import RecordingPlan
from cdnrec.engine.recorder import Recorder

class Quiet:
    def on_state(self, s, d=""): pass
    def on_file_opened(self, f): pass
    def on_file_closed(self, f): pass

url, n, fmts, out = sys.argv[1], int(sys.argv[2]), tuple(sys.argv[3].split(",")), sys.argv[4]
recs = [
    Recorder(RecordingPlan(f"r{i}", 1, f"s{i}", (url,), fmts, 10.0, 10.0, 5.0, False, None,
                           Path(out)), Quiet())
    for i in range(n)
]
threads = [threading.Thread(target=r.run) for r in recs]
for t in threads:
    t.start()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
stop.wait()
for r in recs:
    r.stop()
for t in threads:
    t.join(10)
"""


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User+system CPU of the processes."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def measure(name: str, popens: list[subprocess.Popen[bytes]], n: int, window: float) -> None:
    """Settle, measure one window, stop the processes, print one line."""
    procs = [psutil.Process(p.pid) for p in popens]
    time.sleep(6)
    c0, t0 = cpu_seconds(procs), time.monotonic()
    time.sleep(window)
    c1, t1 = cpu_seconds(procs), time.monotonic()
    rss = sum(p.memory_info().rss for p in procs)
    for p in popens:
        p.terminate()
    for p in popens:
        p.wait(20)
    pct = 100 * (c1 - c0) / (t1 - t0) / n
    print(f"{name:36s} {pct:6.2f} %core/stream  RSS {rss / 1e6 / n:6.1f} MB/stream", flush=True)


def main() -> None:
    """Run the comparison."""
    n, window = int(sys.argv[1]), float(sys.argv[2])
    work = Path("/tmp/cdnrec-bench")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sample = Path(sys.argv[3]) if len(sys.argv) > 3 else make_clip(work / "clips", "av")
    origin = NginxRtmp(work / "nginx")
    pubs = [publish(sample, origin.url(f"s{i}")) for i in range(n)]
    env = {**os.environ, "PYTHONPATH": f"{Path.cwd() / 'src'}"}
    try:
        time.sleep(4)
        tsv = work / "streams.tsv"
        tsv.write_text(
            "".join(f"s{i}\t{origin.url(f's{i}')}\t{work}/probe/s{i}\n" for i in range(n))
        )
        probe = [sys.executable, str(PROBE), str(tsv), "--segment", "10"]
        measure("pyav probe (flv)", [subprocess.Popen(probe, stderr=subprocess.DEVNULL)], n, window)
        script = work / "rec.py"
        script.write_text(RECORDER)
        for fmts in os.environ.get("FMTS", "flv;mp4,m3u8;flv,mp4,m3u8,aac").split(";"):
            argv = [sys.executable, str(script), origin.url("{stream_id}"), str(n), fmts]
            rec = subprocess.Popen([*argv, str(work / "store")], env=env)
            measure(f"cdnrec Recorder ({fmts})", [rec], n, window)
        ff = []
        for i in range(n):
            (work / f"ff{i}").mkdir()
            ff.append(
                subprocess.Popen(
                    [
                        ffmpeg_exe(),
                        "-nostdin",
                        "-loglevel",
                        "error",
                        "-i",
                        origin.url(f"s{i}"),
                        "-c",
                        "copy",
                        "-f",
                        "segment",
                        "-segment_time",
                        "10",
                        "-segment_format",
                        "flv",
                        f"{work}/ff{i}/seg%05d.flv",
                    ]
                )
            )
        measure("ffmpeg -c copy per stream", ff, n, window)
    finally:
        for p in pubs:
            p.stop()
        origin.stop()


if __name__ == "__main__":
    main()
