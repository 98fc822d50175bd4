#!/usr/bin/env python3
"""cdnrec's recording engine side by side with the shared recording baselines, in one run.

Runs the shared harness (``../shared/bench/bench.py``, found relative to this repository, or at
``$CDNREC_SHARED_BENCH``) with its own origin, publishers, sequence, CPU/memory accounting,
loss check and report, and adds cdnrec as approaches next to its ``floor``, ``nginx``,
``ffmpeg`` and ``pyav``:

  cdnrec      ``cdnrec serve`` recording FLV only, ``interval`` = the harness's segment length
  cdnrec_all  the same recording FLV + MP4 + M3U8 (``hls_segment`` = the segment length)
  NAME        ``--cdnrec NAME=fmt,fmt`` adds more
  engine_bare diagnostic: ``engine_probe.py``, the engine's Recorder threads without the service
              (no API, store, supervisor or callbacks); started by spawning it, like ``pyav``

For a cdnrec approach, "start" is: write a config (one app, vendor Tencent, source = the
origin's rtmp template, ``limits.media_rps`` 1000, ``recorder.capacity`` ≥ N, storage root = the
approach's outdir, path template ``{stream_id}/{stream_id}_{begin}_{end}.{ext}``, callbacks to a
receiver in this process), start ``cdnrec serve`` and wait for /healthz (not timed as start), then
call StartCDNRecord (≤ 100 streams per call). "Stop" is StopCDNRecord, a wait for every file to be
closed and announced, then SIGINT to the service; all within the harness's 15 s.

What differs from the harness run with ``--custom`` (and why this file exists):

* **Start to first byte** runs from the StartCDNRecord call that contained the stream (the harness
  would time from spawning a command, i.e. including the service's start-up).
* **Files being written are counted.** cdnrec writes under ``<root>/.partial/<recording>/`` and
  renames a file into the stream's outdir only when it is complete; the harness looks at the top
  level of each outdir only. For cdnrec approaches the harness's ``dir_bytes`` (first byte, first
  256 KiB, written bytes, not-growing) is replaced by: final files under the outdir (recursively,
  i.e. with M3U8 segments) + that stream's partial files. Baselines use the original function.
* **Loss check per format.** The harness's loss column for a cdnrec approach reads its FLV files
  only (``losscheck.media_files`` is hooked to list them in recording order); every format is
  then checked on its own (MP4 files; M3U8 = each playlist's TS segments in playlist order).
* **Callbacks.** Each ``record`` callback's arrival is timed against the final file's mtime (when
  its last byte was written; the file is complete from then) and against its ``end_time``.
* Memory per recording is also given as (RSS at the end of the window − RSS of the idle service
  before StartCDNRecord) / N, and split into anonymous memory and mapped files; the target is
  judged on the anonymous part (decision 0013).

* **CPU in nanoseconds.** The harness's meter is read from each process's CPU clock
  (``ClockCpuMeter``) rather than from utime + stime in 10 ms ticks; for every approach.

Everything else (origin, publishers, windows, CPU groups, floor Δ, busy %, report) is the
harness's code, imported unchanged. Results: ``bench/results/engine-<stamp>.{json,md}``.

    .venv/bin/python bench/engine_bench.py                       # N=1,10,50,100 (~25 min)
    .venv/bin/python bench/engine_bench.py --n 50 \
        --approaches floor,ffmpeg,pyav,engine_bare,cdnrec,cdnrec_all   # extra formats (~9 min)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib.util
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

HERE = Path(__file__).resolve().parent
T = TypeVar("T")
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import cdnrec_recorder as cr  # noqa: E402


def _shared_bench() -> Path:
    env = os.environ.get("CDNREC_SHARED_BENCH")
    path = Path(env) if env else REPO.parent / "shared" / "bench"
    if not (path / "bench.py").is_file() or not (path / "losscheck.py").is_file():
        raise SystemExit(
            f"engine_bench: the shared recording harness is not at {path} (expected bench.py and "
            "losscheck.py there: the 'shared' folder next to this repository). "
            "Set CDNREC_SHARED_BENCH to its folder."
        )
    return path


SHARED = _shared_bench()
_spec = importlib.util.spec_from_file_location("recbench_harness", SHARED / "bench.py")
assert _spec is not None
assert _spec.loader is not None
H: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(H)  # also puts SHARED on sys.path and imports losscheck
L: Any = sys.modules["losscheck"]

DEFAULT_CDNREC = {"cdnrec": "flv", "cdnrec_all": "flv,mp4,m3u8"}
DEFAULT_APPROACHES = "floor,nginx,ffmpeg,pyav,engine_bare,cdnrec"
CALLBACK_TARGET_S = 1.0
MEM_TARGET_MB = 10.0
START_SLACK_S = 0.5
PACE_TARGET = 0.97
"""A recorder that keeps the live pace writes about what the origin published in the window
(ffmpeg 1.005); one that fell behind loses the stream's tail at Stop without a gap inside what it
recorded, which the loss check cannot see (a cdnrec run wrote 0.60 of it, decision 0012)."""

# ----------------------------------------------------------------------------- harness hooks
# Keyed by directory; only directories of cdnrec approaches are registered, so the baselines go
# through the harness's own functions.
SIZE_HOOKS: dict[str, Callable[[], int]] = {}
FILE_HOOKS: dict[str, Callable[[], list[str]]] = {}
_dir_bytes = H.dir_bytes
_media_files = L.media_files


def _hooked_dir_bytes(directory: str, prefix: str = "") -> int:
    hook = SIZE_HOOKS.get(directory)
    return hook() if hook is not None and not prefix else int(_dir_bytes(directory, prefix))


def _hooked_media_files(directory: str, prefix: str = "") -> list[str]:
    hook = FILE_HOOKS.get(directory)
    return hook() if hook is not None and not prefix else list(_media_files(directory, prefix))


H.dir_bytes = _hooked_dir_bytes
L.media_files = _hooked_media_files


def cpu_clock(pid: int) -> int:
    """The clock ID of process `pid`'s CPU time: all its threads, the exited ones too, in
    nanoseconds (Linux's ``clock_getcpuclockid``: ``CPUCLOCK_SCHED`` of the process)."""
    return ((~pid) << 3) | 2


class ClockCpuMeter(H.CpuMeter):  # type: ignore[misc]
    """The harness's meter, read from each process's CPU clock instead of its utime + stime,
    which /proc gives in 10 ms ticks: at N=1 a 45 s window of cdnrec is about 10 ticks and the
    origin's share 3-5, so one tick either way moved the ratio by several hundredths."""

    def _read(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for pid in self.pid_fn():
            with contextlib.suppress(OSError):  # the process is gone
                out[pid] = time.clock_gettime(cpu_clock(pid))
        return out


H.CpuMeter = ClockCpuMeter

_NAME = re.compile(r"_(\d+)_(\d+)(?:-(\d+))?\.[a-z0-9]+$")


def ordered(paths: list[str]) -> list[str]:
    """Final files of one stream in recording order: begin, end (from the name), then mtime."""

    def key(p: str) -> tuple[int, int, int, float]:
        m = _NAME.search(p)
        mt = os.stat(p).st_mtime if os.path.exists(p) else 0.0
        if m is None:
            return (1 << 62, 0, 0, mt)
        return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 1), mt)

    return sorted(paths, key=key)


def files_of(stream_dir: str, ext: str) -> list[str]:
    """A stream's final files of one format, in order (M3U8: its playlists' segments)."""
    tops = ordered([p for p in cr.final_files(stream_dir) if p.endswith("." + ext)])
    if ext != "m3u8":
        return tops
    segs: list[str] = []
    for pl in tops:
        base = os.path.dirname(pl)
        with open(pl) as f:
            segs += [
                os.path.join(base, ln.strip()) for ln in f if ln.strip() and not ln.startswith("#")
            ]
    return segs


def pctl(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))]


def per_thread(pid: int, read: Callable[[str], T]) -> dict[int, T]:
    """``read(<the thread's /proc folder>)`` for every thread of ``pid`` (threads that end
    meanwhile, or whose files do not parse, are left out)."""
    out: dict[int, T] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            out[int(t)] = read(f"/proc/{pid}/task/{t}")
    return out


def _cpu_seconds(task: str) -> float:
    with open(f"{task}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_times(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of ``pid``."""
    return per_thread(pid, _cpu_seconds)


def cpu_identity() -> dict[str, str]:
    """What tells two machines with the same model name apart ("Intel(R) Xeon(R) Processor" on
    two hosts ran Python a quarter apart in speed, session 18): family, model, stepping, clock and
    cache of the first CPU in /proc/cpuinfo."""
    keys = ("cpu family", "model", "stepping", "cpu MHz", "cache size")
    out: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            key = key.strip()
            if key in keys and key not in out:
                out[key] = value.strip()
            if not line.strip() and out:
                break
    return out


def added_kinds(result: dict[str, Any], n: int) -> dict[str, float]:
    """Resident memory by kind that a cdnrec approach's ``n`` recordings added to its idle
    service, per recording, from the approach's window `result` (empty when a reading is
    missing)."""
    kinds = result.get("cdnrec_rss_kinds_mb")
    idle = (result.get("cdnrec") or {}).get("idle_rss_kinds_mb")
    if not kinds or not idle:
        return {}
    return {k: (kinds[k] - idle.get(k, 0.0)) / n for k in kinds}


def rss_kinds(pid: int) -> dict[str, float]:
    """Resident memory of ``pid`` by kind, in MB: ``anon`` (heap, stacks: what recordings
    allocate) and ``file`` (mapped files, mostly library code paged in once per process and
    shared with any other process mapping it), from ``/proc/<pid>/status``."""
    kinds = {"RssAnon:": "anon", "RssFile:": "file", "RssShmem:": "shmem"}
    out: dict[str, float] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            fields = line.split()  # "RssAnon:", "1234", "kB"
            if fields and fields[0] in kinds:
                out[kinds[fields[0]]] = int(fields[1]) / 1024
    return out


def ctx_switches(pids: list[int]) -> dict[str, int]:
    """Context switches of every thread of these processes (threads that ended are not counted)."""
    out = {"voluntary": 0, "nonvoluntary": 0}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in tids:
            try:
                with open(f"/proc/{pid}/task/{t}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches"):
                            out["voluntary"] += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            out["nonvoluntary"] += int(line.split()[1])
            except OSError:
                pass
    return out


def gop_seconds(sample: str) -> float:
    """Keyframe interval of the sample's video (median)."""
    import av

    with av.open(sample) as c:
        v = c.streams.video[0]
        keys = [
            float(p.dts * v.time_base) for p in c.demux(v) if p.dts is not None and p.is_keyframe
        ]
    gaps = [b - a for a, b in itertools.pairwise(keys)]
    return round(statistics.median(gaps), 3) if gaps else 2.0


def register_hooks(
    rec: Any,
    names: list[str],
    formats: list[str],
    partials: cr.PartialIndex,
    opened: dict[str, float],
) -> None:
    """Point the harness's size and file listing for these streams at cdnrec's layout."""
    fmt = "flv" if "flv" in formats else formats[0]
    for name in names:
        d = os.path.join(rec.outdir, name)

        def size(name: str = name, d: str = d) -> int:
            if name not in opened and partials.has_files(name):
                opened[name] = time.monotonic()
            f1 = cr.tree_bytes(d)
            for _ in range(3):  # a file renamed from partial to final between two looks
                f0, p, f1 = f1, partials.bytes_of(name), cr.tree_bytes(d)
                if f0 == f1:
                    break
            return f1 + p

        SIZE_HOOKS[d] = size
        FILE_HOOKS[d] = lambda d=d: files_of(d, fmt)


def drop_hooks(prefix: str) -> None:
    for hooks in (SIZE_HOOKS, FILE_HOOKS):
        for d in [d for d in hooks if d.startswith(prefix)]:
            del hooks[d]


class EngineProbeRecorder(H.CommandRecorder):  # type: ignore[misc]
    """engine_probe.py: the engine's Recorder threads without the service (diagnostic)."""

    def __init__(self, bench: Any, outdir: str, name: str, formats: list[str]) -> None:
        cmd = (
            "{python} " + str(HERE / "engine_probe.py") + " {streams} --segment {segment} "
            "--formats " + ",".join(formats)
        )
        super().__init__(bench, outdir, name, cmd)
        self.formats = formats
        self.partials = cr.PartialIndex(Path(outdir).resolve())
        self.opened_at: dict[str, float] = {}

    def start(self, streams: dict[str, str]) -> dict[str, float]:
        register_hooks(self, list(streams), self.formats, self.partials, self.opened_at)
        return dict(super().start(streams))


# ----------------------------------------------------------------------------- the approach
class CdnrecRecorder(H.Recorder):  # type: ignore[misc]
    """cdnrec serve, as one of the harness's recorders."""

    def __init__(self, bench: Any, outdir: str, name: str, formats: list[str]) -> None:
        super().__init__(bench, outdir)
        self.name = name
        self.formats = formats
        self.root = Path(outdir).resolve()
        self.info: dict[str, Any] = {"formats": formats}
        self.streams: list[str] = []
        self.svc: cr.CdnrecService | None = None
        self.receiver: cr.Receiver | None = None
        self.t_stop_wall: float | None = None
        self.opened_at: dict[str, float] = {}  # monotonic: first partial file seen (polled)
        self.sent: dict[str, float] = {}

    def _dir(self, name: str) -> str:
        return os.path.join(self.outdir, name)

    def start(self, streams: dict[str, str]) -> dict[str, float]:
        a = self.b.args
        self.streams = list(streams)
        for n in self.streams:
            os.makedirs(self._dir(n), exist_ok=True)
        prefixes = {u.rsplit("/", 1)[0] for u in streams.values()}
        assert len(prefixes) == 1, "streams come from one origin application"
        source = prefixes.pop() + "/{stream_id}"
        self.receiver = cr.Receiver(self.root).start()
        self.partials = cr.PartialIndex(self.root)
        work = Path(self.b.work) / "cdnrec" / f"N{len(streams)}-{self.name}"
        work.mkdir(parents=True, exist_ok=True)
        self.svc = cr.CdnrecService(
            workdir=work,
            storage_root=self.root,
            source=source,
            formats=self.formats,
            interval=a.segment,
            hls_segment=a.hls_segment,
            capacity=max(200, len(streams)),
            callback_url=self.receiver.url,
            python=sys.executable,
        )
        proc = self.svc.spawn()
        self.b.procs.started.append(proc)  # stopped by PID with everything else on error
        self.procs.append(proc)
        self.info["config"] = self.svc.config.read_text()
        self.info["service_healthy_s"] = round(self.svc.wait_healthy(), 3)
        time.sleep(0.5)
        idle = H.CpuMeter(self.pids).memory()
        self.info["idle_rss_mb"], self.info["idle_pss_mb"] = idle["rss_mb"], idle["pss_mb"]
        self.info["idle_rss_kinds_mb"] = rss_kinds(proc.pid)
        register_hooks(self, self.streams, self.formats, self.partials, self.opened_at)
        sent = self.svc.start_streams(self.streams)
        self.sent = dict(sent)
        self.info["api_calls"] = list(self.svc.calls)
        return sent

    def stop(self) -> int:
        assert self.svc is not None
        assert self.receiver is not None
        t0 = time.monotonic()
        self.t_stop_wall = time.time()
        self.svc.stop_streams(self.streams)
        self.info["after_stop"] = cr.wait_all_announced(
            self.receiver, self.root, [self._dir(n) for n in self.streams], timeout=10.0
        )
        clean = self.svc.shutdown(grace=max(1.0, 15.0 - (time.monotonic() - t0)))
        self.info["service_exit"] = self.svc.proc.returncode if self.svc.proc else None
        self.info["api_calls"] = list(self.svc.calls)
        self.receiver.stop()
        return 0 if clean else 1

    def report(self, sample: str) -> dict[str, Any]:
        """Callbacks, per-format loss and service health, after the harness's own checks."""
        out = dict(self.info)
        events = self.receiver.snapshot() if self.receiver else []
        t_stop = self.t_stop_wall or float("inf")
        by_key: dict[str, int] = {}
        lat_win, lat_stop, lat_end = [], [], []
        missing_mtime = 0
        for ev in events:
            by_key[ev.get("key", "")] = by_key.get(ev.get("key", ""), 0) + 1
            if ev.get("mtime") is None:
                missing_mtime += 1
                continue
            d = ev["arrived"] - ev["mtime"]
            (lat_win if ev["mtime"] < t_stop else lat_stop).append(d)
            if ev.get("end_time"):
                lat_end.append(ev["arrived"] - ev["end_time"])
        finals = {
            fmt: sum(
                len(files_of(self._dir(n), fmt))
                if fmt != "m3u8"
                else len([p for p in cr.final_files(self._dir(n)) if p.endswith(".m3u8")])
                for n in self.streams
            )
            for fmt in self.formats
        }

        def stats(v: list[float]) -> dict[str, Any]:
            return {
                "n": len(v),
                "p50": pctl(v, 0.5),
                "p95": pctl(v, 0.95),
                "max": max(v) if v else None,
                "min": min(v) if v else None,
            }

        out["callbacks"] = {
            "received": len(events),
            "final_files": finals,
            "duplicate_keys": sum(1 for c in by_key.values() if c > 1),
            "missing_file_at_arrival": missing_mtime,
            "errors": [ev["error"] for ev in events if "error" in ev][:3],
            "after_mtime_in_window_s": stats(lat_win),
            "after_mtime_at_stop_s": stats(lat_stop),
            "after_end_time_s": stats(lat_end),
            "events": [
                [ev.get("key"), ev.get("mtime"), round(ev["arrived"], 4), ev.get("end_time")]
                for ev in events
            ],
        }
        index, length = L.build_index(sample)
        loss: dict[str, Any] = {}
        for fmt in self.formats:
            tot: dict[str, int] = {"files": 0, "streams_with_loss": 0, "errors": 0}
            for n in self.streams:
                r = L.check_stream(files_of(self._dir(n), fmt), index, length)
                tot["files"] += r["files"]
                tot["errors"] += len(r["errors"])
                if any(r[k]["lost"] for k in length):
                    tot["streams_with_loss"] += 1
                for kind in length:
                    for f in ("packets", "lost", "dup", "unknown"):
                        tot[f"{kind}_{f}"] = tot.get(f"{kind}_{f}", 0) + r[kind][f]
            loss[fmt] = tot
        out["loss_by_format"] = loss
        opened = [self.opened_at[s] - self.sent[s] for s in self.streams if s in self.opened_at]
        out["start_phases"] = {
            "to_partial_file_p50_s": pctl(opened, 0.5),
            "to_partial_file_max_s": max(opened) if opened else None,
            "streams": len(opened),
        }
        if self.svc is not None and self.svc.log_path.exists():
            text = self.svc.log_path.read_text(errors="replace")
            lines = text.splitlines()
            t_call = min(self.svc.start_wall.values()) if self.svc.start_wall else None
            claimed = []
            for ln in lines:
                if "supervisor.recording" in ln and t_call is not None:
                    try:
                        ts = datetime.datetime.fromisoformat(ln.split()[0].replace("Z", "+00:00"))
                        claimed.append(ts.timestamp() - t_call)
                    except ValueError:
                        pass
            out["start_phases"].update(
                {
                    "to_claimed_p50_s": pctl(claimed, 0.5),
                    "to_claimed_max_s": max(claimed) if claimed else None,
                }
            )
            bad = [
                ln
                for ln in lines
                if re.search(r"\[(error|warning|critical)", ln, re.I) or "Traceback" in ln
            ]
            out["service_log"] = {
                "lines": len(lines),
                "warnings_or_errors": len(bad),
                "examples": bad[:5],
            }
        return out


# ----------------------------------------------------------------------------- the bench
class EngineBench(H.Bench):  # type: ignore[misc]
    cdnrec: ClassVar[dict[str, list[str]]] = {}
    bare: ClassVar[dict[str, list[str]]] = {"engine_bare": ["flv"]}

    def make_recorder(self, ap: str, outdir: str) -> Any:
        if ap in self.bare:
            os.makedirs(outdir, exist_ok=True)
            return EngineProbeRecorder(self, outdir, ap, self.bare[ap])
        if ap in self.cdnrec:
            os.makedirs(outdir, exist_ok=True)
            rec = CdnrecRecorder(self, outdir, ap, self.cdnrec[ap])
            self._recs[ap] = rec
            return rec
        return super().make_recorder(ap, outdir)

    def run_n(self, n: int) -> dict[str, Any]:
        keep = self.args.keep
        self.args.keep = True  # the harness would delete the files before our checks
        self._recs: dict[str, CdnrecRecorder] = {}
        try:
            out = super().run_n(n)
        finally:
            self.args.keep = keep
        for ap, rec in self._recs.items():
            if ap in out["approaches"]:
                H.log(f"N{n}: {ap}: callbacks and per-format loss")
                out["approaches"][ap]["cdnrec"] = rec.report(self.sample_path)
        drop_hooks(os.path.join(self.work, "rec", f"N{n}"))
        if not keep:
            shutil.rmtree(os.path.join(self.work, "rec", f"N{n}"), ignore_errors=True)
        return out

    def window(self, duration: float, recorder: Any = None, streams: Any = ()) -> dict[str, Any]:
        """The harness's window, plus the recorder's context switches and, for cdnrec, its CPU
        per thread (main vs others)."""
        pids = (
            list(recorder.pids())
            if recorder is not None and not recorder.origin_is_recorder
            else []
        )
        svc_pid = (
            recorder.svc.proc.pid
            if isinstance(recorder, CdnrecRecorder) and recorder.svc and recorder.svc.proc
            else None
        )
        t0, w0 = time.monotonic(), time.time()
        cs0 = ctx_switches(pids)
        a = thread_times(svc_pid) if svc_pid else {}
        res = dict(super().window(duration, recorder, streams))
        wall = time.monotonic() - t0
        if pids:
            cs1 = ctx_switches(pids)
            res["recorder_ctx_switches_per_s"] = {
                k: (cs1[k] - cs0[k]) / wall for k in ("voluntary", "nonvoluntary")
            }
        if svc_pid:
            b = thread_times(svc_pid)
            d = {t: b[t] - a.get(t, 0.0) for t in b}
            main = d.pop(svc_pid, 0.0)
            others = sorted(d.values(), reverse=True)
            res["cdnrec_rss_kinds_mb"] = rss_kinds(svc_pid)
            res["cdnrec_threads"] = {
                "main_pct": 100 * main / wall,
                "other_threads": len(others),
                "other_pct": 100 * sum(others) / wall,
                "top_other_pct": [round(100 * x / wall, 3) for x in others[:3]],
                "median_other_pct": 100 * others[len(others) // 2] / wall if others else None,
                "wall_start": w0,
                "wall_end": w0 + wall,
            }
        return res

    def versions(self) -> dict[str, Any]:
        v: dict[str, Any] = super().versions()

        def git(*argv: str) -> str:
            try:
                r = subprocess.run(
                    ["git", "-C", str(REPO), *argv], capture_output=True, text=True, timeout=20
                )
                return r.stdout.strip()
            except (OSError, subprocess.TimeoutExpired) as e:
                return f"unavailable ({e})"

        diff = git("diff", "HEAD", "--", "src")
        v["cdnrec_git_head"] = git("rev-parse", "--short", "HEAD")
        v["cdnrec_src_uncommitted"] = {
            "files": git("diff", "HEAD", "--name-only", "--", "src").split(),
            "untracked": git("ls-files", "--others", "--exclude-standard", "--", "src").split(),
            "diff_sha1": hashlib.sha1(diff.encode(), usedforsecurity=False).hexdigest()[:12],
        }
        v["gop_s"] = gop_seconds(self.sample_path)
        v["cdnrec_approaches"] = self.cdnrec
        v["cdnrec_engine"] = engine_build()
        v["cpu_identity"] = cpu_identity()
        return v


def engine_build() -> str:
    """How the engine runs in the processes this benchmark starts: compiled (mypyc) or not."""
    code = (
        "import cdnrec.engine.recorder\nfrom cdnrec import native\n"
        "m = native.compiled_modules()\n"
        "print(f'compiled ({len(m)} modules)' if m else 'interpreted')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return r.stdout.strip() or f"unknown ({r.stderr.strip()[-200:]})"


# ----------------------------------------------------------------------------- report
def _f(v: Any, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def engine_report(result: dict[str, Any]) -> str:
    """The harness's report, then cdnrec's figures against its targets."""
    base = H._orig_report(result)
    v = result["versions"]
    gop = v.get("gop_s", 2.0)
    cd = v.get("cdnrec_approaches", DEFAULT_CDNREC)
    src = v.get("cdnrec_src_uncommitted", {})
    lines = [
        base,
        "## cdnrec",
        "",
        f"- cdnrec at {v.get('cdnrec_git_head')} + uncommitted src changes "
        f"{src.get('files', [])} {src.get('untracked', [])} (diff {src.get('diff_sha1')}); "
        f"engine {v.get('cdnrec_engine', 'not recorded')}",
        f"- CPU: {v.get('cpu_identity', 'not recorded')}",
        f"- cdnrec approaches: {cd}; GOP {gop} s; targets: CPU ≤ 1/3 × ffmpeg (product.md §7) "
        f"and ≤ 1.1 × pyav (RESULTS.md), < {MEM_TARGET_MB:.0f} MB per recording, first byte "
        f"≤ GOP + {START_SLACK_S} s = {gop + START_SLACK_S:.1f} s, callback ≤ "
        f"{CALLBACK_TARGET_S:.0f} s after the file is complete, 0 lost/duplicated packets.",
        "- other load = machine busy − (publishers + origin + recorder + driver), in % of one "
        "core: CPU used by processes outside this benchmark (other users of the box).",
        "- callback latency = arrival at the receiver − mtime of the final file (its last "
        "byte written); 'in window' = files split every interval while recording, 'at stop' "
        "= the last file of every stream, closed by StopCDNRecord at once.",
        "",
        "| N | approach | total Δ %core/stream | ÷ ffmpeg | ÷ pyav | rec CPU ÷ ffmpeg / ÷ pyav "
        "| RSS MB/rec (PSS) | idle RSS MB; (end−idle)/N | first byte p50/max s "
        "| callback p50/max s in window (n) | at stop p50/max (n) | lost v/a (dup) per format "
        "| busy % | other load %core |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for run in result["runs"]:
        n = run["n"]
        rows = H.summarize(run)
        aps = run["approaches"]
        for ap, row in rows.items():
            if ap.startswith("floor") or ap == "nginx":
                continue
            g = aps[ap]["groups"]
            other = aps[ap]["system"]["busy_cores"] * 100 - sum(
                x["cpu_pct_of_core"] for x in g.values()
            )
            tot = row.get("total_pct_per_stream")
            ff, py = rows.get("ffmpeg", {}), rows.get("pyav", {})
            r_ff = (
                tot / ff["total_pct_per_stream"] if tot and ff.get("total_pct_per_stream") else None
            )
            r_py = (
                tot / py["total_pct_per_stream"] if tot and py.get("total_pct_per_stream") else None
            )
            rr_ff = (
                row["rec_pct_per_stream"] / ff["rec_pct_per_stream"]
                if ff.get("rec_pct_per_stream")
                else None
            )
            rr_py = (
                row["rec_pct_per_stream"] / py["rec_pct_per_stream"]
                if py.get("rec_pct_per_stream")
                else None
            )
            c = aps[ap].get("cdnrec")
            idle = marg = None
            cb_w = cb_s = {}
            lossfmt = (
                f"{row.get('lost_video_pkts')}/{row.get('lost_audio_pkts')} ({row.get('dup_pkts')})"
            )
            if c:
                idle = c.get("idle_rss_mb")
                marg = (g["recorder"]["rss_mb"] - idle) / n if idle is not None else None
                cb_w = c["callbacks"]["after_mtime_in_window_s"]
                cb_s = c["callbacks"]["after_mtime_at_stop_s"]
                lossfmt = "; ".join(
                    f"{fmt} {lf['video_lost']}/{lf['audio_lost']} ({lf['video_dup'] + lf['audio_dup']})"
                    for fmt, lf in c["loss_by_format"].items()
                )
            rss = f"{_f(row.get('rec_rss_mb_per_stream'), '.1f')} ({_f(row.get('rec_pss_mb_per_stream'), '.1f')})"
            lines.append(
                f"| {n} | {ap} | {_f(tot)} | {_f(r_ff)} | {_f(r_py)} | {_f(rr_ff)} / {_f(rr_py)} | "
                f"{rss} | {_f(idle, '.0f')}; {_f(marg, '.1f')} | "
                f"{_f(row.get('first_byte_p50_s'))}/{_f(row.get('first_byte_max_s'))} | "
                f"{_f(cb_w.get('p50'))}/{_f(cb_w.get('max'))} ({cb_w.get('n', '–')}) | "
                f"{_f(cb_s.get('p50'))}/{_f(cb_s.get('max'))} ({cb_s.get('n', '–')}) | {lossfmt} | "
                f"{_f(row['busy_pct_machine'], '.0f')} | {_f(other, '.0f')} |"
            )
            if ap in cd and c:
                lost = sum(
                    lf["video_lost"] + lf["audio_lost"] + lf["video_dup"] + lf["audio_dup"]
                    for lf in c["loss_by_format"].values()
                )
                unk = sum(
                    lf["video_unknown"] + lf["audio_unknown"] for lf in c["loss_by_format"].values()
                )
                cbmax = max(
                    [x for x in (cb_w.get("max"), cb_s.get("max")) if x is not None], default=None
                )
                anon = added_kinds(aps[ap], n).get("anon")
                pace = row.get("written_over_published")

                def pf(ok: bool | None) -> str:
                    return "–" if ok is None else ("pass" if ok else "FAIL")

                verdicts.append(
                    f"| {n} | {ap} | {_f(r_ff)} {pf(None if r_ff is None else r_ff <= 1 / 3)} | "
                    f"{_f(r_py)} {pf(None if r_py is None else r_py <= 1.1)} | "
                    f"{_f(anon, '.2f')} {pf(None if anon is None else anon < MEM_TARGET_MB)} "
                    f"(RSS {_f(marg, '.1f')}) | "
                    f"{_f(row.get('first_byte_max_s'))} "
                    f"{pf(None if row.get('first_byte_max_s') is None else row['first_byte_max_s'] <= gop + START_SLACK_S)} | "
                    f"{_f(cbmax)} {pf(None if cbmax is None else cbmax <= CALLBACK_TARGET_S)} | "
                    f"{lost} {pf(lost == 0 and row.get('no_first_byte') == 0)} (unknown {unk}) | "
                    f"{_f(pace, '.3f')} {pf(None if pace is None else pace >= PACE_TARGET)} |"
                )
    lines += [
        "",
        "Targets (cdnrec approaches). Memory: what the recordings added to the idle service, per "
        "recording: anonymous memory (heap, stacks), with the resident set's growth in brackets, "
        "which also counts the library code a process pages in once, as big as the page cache's "
        "folios of those files make it (decision 0013):",
        "",
        "| N | approach | CPU total ÷ ffmpeg ≤ 0.33 | ÷ pyav ≤ 1.1 | MB added per recording < 10 "
        "| first byte max ≤ GOP+0.5 s | callback max ≤ 1 s | lost + dup = 0 "
        f"| kept the live pace: written ÷ published ≥ {PACE_TARGET} |",
        "|---|---|---|---|---|---|---|---|---|",
        *verdicts,
        "",
    ]
    details = []
    for run in result["runs"]:
        for ap, r in run["approaches"].items():
            c = r.get("cdnrec")
            if not c:
                continue
            cbs = c["callbacks"]
            th = r.get("cdnrec_threads")
            if th:
                n = run["n"]
                closed = sum(
                    1
                    for e in cbs.get("events", [])
                    if e[1] is not None and th["wall_start"] <= e[1] <= th["wall_end"]
                )
                per_file = (
                    f"; main-thread CPU per file closed in the window "
                    f"{1000 * th['main_pct'] / 100 * (th['wall_end'] - th['wall_start']) / closed:.1f} ms "
                    f"({closed} files)"
                    if closed
                    else ""
                )
                slices: dict[int, list[float]] = {}
                for e in cbs.get("events", []):
                    if e[1] is not None and th["wall_start"] <= e[1] <= th["wall_end"]:
                        slices.setdefault(int((e[1] - th["wall_start"]) // 10), []).append(
                            e[2] - e[1]
                        )
                if slices:
                    details.append(
                        f"- N={n} {ap}: callback latency (arrival − mtime) by 10 s of the window, "
                        "max: "
                        + ", ".join(
                            f"{k * 10}–{k * 10 + 10} s {max(v):.2f}"
                            for k, v in sorted(slices.items())
                        )
                    )
                details.append(
                    f"- N={n} {ap}: service CPU by thread: main (event loop: API, store, publisher, "
                    f"callbacks) {th['main_pct'] / n:.3f} %core/stream; the {th['other_threads']} other "
                    f"threads (recorders, SQLite, executors) {th['other_pct'] / n:.3f} %core/stream "
                    f"(median thread {_f(th['median_other_pct'], '.3f')}, top {th['top_other_pct']})"
                    + per_file
                )
            idle_kinds = c.get("idle_rss_kinds_mb") or {}
            added = added_kinds(r, run["n"])
            if added:
                details.append(
                    f"- N={run['n']} {ap}: resident memory the recordings added to the idle "
                    f"service, per recording: {added.get('anon', 0.0):.2f} MB anonymous (heap, "
                    f"stacks), {added.get('file', 0.0):.2f} MB of mapped files (library code "
                    f"paged in, once per process); idle service {idle_kinds.get('anon', 0.0):.1f} "
                    f"MB anonymous + {idle_kinds.get('file', 0.0):.1f} MB files"
                )
            details.append(
                f"- N={run['n']} {ap}: service healthy after {_f(c.get('service_healthy_s'))} s; "
                f"from Start: task claimed by the supervisor p50/max "
                f"{_f(c.get('start_phases', {}).get('to_claimed_p50_s'))}/{_f(c.get('start_phases', {}).get('to_claimed_max_s'))} s, "
                f"partial file created {_f(c.get('start_phases', {}).get('to_partial_file_p50_s'))}/"
                f"{_f(c.get('start_phases', {}).get('to_partial_file_max_s'))} s (first byte: table above); "
                f"Start calls {[x['seconds'] for x in c.get('api_calls', []) if x['action'] == 'StartCDNRecord']} s; "
                f"after Stop: {c.get('after_stop')}; callbacks {cbs['received']} for files {cbs['final_files']}, "
                f"duplicate keys {cbs['duplicate_keys']}, file missing at arrival {cbs['missing_file_at_arrival']}; "
                f"arrival − end_time p50/max {_f(cbs['after_end_time_s']['p50'])}/{_f(cbs['after_end_time_s']['max'])} s; "
                f"service log {c.get('service_log', {}).get('warnings_or_errors')} warning/error lines"
                + (
                    f", e.g. `{c['service_log']['examples'][0][:160]}`"
                    if c.get("service_log", {}).get("examples")
                    else ""
                )
            )
    for run in result["runs"]:
        cs = {
            ap: r["recorder_ctx_switches_per_s"]
            for ap, r in run["approaches"].items()
            if r.get("recorder_ctx_switches_per_s")
        }
        if cs:
            details.append(
                f"- N={run['n']}: recorder context switches per s per stream "
                "(voluntary + involuntary): "
                + ", ".join(
                    f"{ap} {(c['voluntary'] + c['nonvoluntary']) / run['n']:.0f}"
                    for ap, c in cs.items()
                )
            )
    if details:
        lines += ["Details:", "", *details, ""]
    return "\n".join(lines)


H._orig_report = H.report
H.report = engine_report


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__ + "\nEvery other option is the shared harness's (bench.py --help).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    ap.add_argument(
        "--cdnrec",
        action="append",
        default=[],
        metavar="NAME=FMT,FMT",
        help="a cdnrec approach recording these formats (defaults: "
        + ", ".join(f"{k}={v}" for k, v in DEFAULT_CDNREC.items())
        + ")",
    )
    ap.add_argument(
        "--hls-segment",
        type=float,
        default=None,
        help="cdnrec hls_segment, s (default: the segment length)",
    )
    ap.add_argument("--report", metavar="JSON", help="only rewrite JSON's .md report and print it")
    ap.add_argument("--help-engine", action="store_true", help="this help")
    mine, rest = ap.parse_known_args()
    if mine.help_engine:
        ap.print_help()
        return
    if mine.report:
        with open(mine.report) as f:
            text = engine_report(json.load(f))
        Path(mine.report).with_suffix(".md").write_text(text)
        print(text)
        return
    cdnrec = {k: v.split(",") for k, v in DEFAULT_CDNREC.items()}
    cdnrec.update({k: v.split(",") for k, v in (c.split("=", 1) for c in mine.cdnrec)})
    if not any(x == "--approaches" or x.startswith("--approaches=") for x in rest):
        rest += ["--approaches", DEFAULT_APPROACHES]
    if not any(x == "--out" or x.startswith("--out=") for x in rest):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        rest += ["--out", str(HERE / "results" / f"engine-{stamp}.json")]
    if not any(x == "--workdir" or x.startswith("--workdir=") for x in rest) and not os.environ.get(
        "BENCH_WORKDIR"
    ):  # not the harness's default: a concurrent shared-harness run would delete our files
        rest += ["--workdir", os.path.join(tempfile.gettempdir(), "cdnrec-enginebench")]
    EngineBench.cdnrec = cdnrec
    hls = mine.hls_segment

    class Bench(EngineBench):
        def __init__(self, args: Any) -> None:
            super().__init__(args)
            args.hls_segment = hls if hls is not None else args.segment

    H.Bench = Bench
    sys.argv = [sys.argv[0], *rest]
    H.main()


if __name__ == "__main__":
    main()
