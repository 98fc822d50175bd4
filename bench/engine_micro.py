#!/usr/bin/env python3
"""CPU per packet of the engine's hot path vs a bare PyAV remux, on a file, single-threaded.

No network, no threads, no service: the sample clip (the shared harness's ``sample.flv``) is
demuxed ``--loops`` times and remuxed to FLV files split every ``--interval`` s by

  demux   demux only (the floor both share)
  pyav    the shared probe's loop: ``pkt.stream = out_stream; out.mux(pkt)``, output through
          FFmpeg's own file protocol
  engine  ``cdnrec.engine.recorder.Recorder._pump`` with the real ``CopyWriter`` (retiming,
          per-file timestamps, output through a Python file object, partial → final rename),
          a listener that does nothing

and prints µs of process CPU per packet for each (best of ``--repeat``).

    .venv/bin/python bench/engine_micro.py /tmp/cdnrec-enginebench/sample.flv
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import av

from cdnrec.engine.plan import RecordingPlan
from cdnrec.engine.pump import drive
from cdnrec.engine.recorder import Recorder
from cdnrec.engine.sources.base import AvPull

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_probe import NullListener


def demux_only(sample: str, loops: int, _out: Path, _interval: float) -> int:
    n = 0
    for _ in range(loops):
        with av.open(sample) as inp:
            for pkt in inp.demux():
                if pkt.dts is not None:
                    n += 1
    return n


def pyav(sample: str, loops: int, out: Path, interval: float) -> int:
    n = seg = 0
    for i in range(loops):
        with av.open(sample) as inp:
            streams = [s for s in inp.streams if s.type in ("video", "audio")]
            tb = {s.index: float(s.time_base) for s in streams}
            o = av.open(str(out / f"p{i}_{seg}.flv"), "w", format="flv")
            omap = {s.index: o.add_stream_from_template(s) for s in streams}
            start = None
            for pkt in inp.demux(streams):
                if pkt.dts is None:
                    continue
                t = pkt.dts * tb[pkt.stream.index]
                if start is None:
                    start = t
                elif pkt.is_keyframe and pkt.stream.type == "video" and t - start >= interval:
                    o.close()
                    seg += 1
                    o = av.open(str(out / f"p{i}_{seg}.flv"), "w", format="flv")
                    omap = {s.index: o.add_stream_from_template(s) for s in streams}
                    start = t
                pkt.stream = omap[pkt.stream.index]
                o.mux(pkt)
                n += 1
            o.close()
    return n


def engine(sample: str, loops: int, out: Path, interval: float) -> int:
    plan = RecordingPlan(
        recording_id="micro",
        app_id=1,
        stream_id="s0",
        sources=("rtmp://127.0.0.1:1/live/{stream_id}",),
        formats=("flv",),
        interval=interval,
        hls_segment=interval,
        resume_window=30.0,
        wait_for_stream=True,
        deadline=None,
        storage_root=out,
        path_template="{stream_id}/{stream_id}_{begin}_{end}.{ext}",
    )
    rec = Recorder(plan, NullListener())
    for _ in range(loops):
        drive(rec._pump(AvPull(av.open(sample)), None), threading.Event().wait)
    rec._close_all()
    return rec.packets


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("sample")
    ap.add_argument("--loops", type=int, default=6, help="passes over the sample per measurement")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--interval", type=float, default=10.0)
    a = ap.parse_args()
    rows = []
    for name, fn in (("demux", demux_only), ("pyav", pyav), ("engine", engine)):
        best = None
        for _ in range(a.repeat):
            out = Path(tempfile.mkdtemp(prefix=f"micro-{name}-"))
            t0 = time.process_time()
            n = fn(a.sample, a.loops, out, a.interval)
            dt = time.process_time() - t0
            files = sum(len(fs) for _, _, fs in os.walk(out))
            shutil.rmtree(out)
            us = 1e6 * dt / max(n, 1)
            best = us if best is None else min(best, us)
        rows.append((name, n, files, best))
    base = rows[0][3]
    print("| path | packets | files | µs CPU/packet | minus demux |")
    print("|---|---:|---:|---:|---:|")
    for name, n, files, us in rows:
        print(f"| {name} | {n} | {files} | {us:.1f} | {us - base:.1f} |")


if __name__ == "__main__":
    main()
