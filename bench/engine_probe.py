#!/usr/bin/env python3
"""cdnrec's recording engine without the service: a diagnostic for ``engine_bench.py``.

One process, one ``cdnrec.engine.recorder.Recorder`` thread per stream and the native pulls read
by shared pump threads (as ``cdnrec serve`` runs them; ``--pump-threads 0``: each by its recorder
thread), with a listener that does nothing: no API, no database, no supervisor, no publisher, no callbacks. The difference between
this approach (``engine_bare``) and ``cdnrec`` in the same run is what the service around the
engine costs; the difference between it and ``pyav`` is what the engine adds to a bare PyAV remux.

    engine_probe.py STREAMS_TSV [--segment 10] [--formats flv] [--pump-threads 2]

STREAMS_TSV as for the shared harness (``name<TAB>url<TAB>outdir``, outdirs ``<P>/<name>``); files
are written with the same layout as ``cdnrec_recorder.py`` uses (storage root ``P``). Stops on
SIGINT/SIGTERM; every file is closed (and renamed to its final name) before exit.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from cdnrec.engine.plan import ClosedFile, OpenFile, RecordingPlan
from cdnrec.engine.pump import Pumps
from cdnrec.engine.recorder import Recorder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cdnrec_recorder import PATH_TEMPLATE, read_streams


class NullListener:
    """Counts what a recorder reports and does nothing else."""

    def __init__(self) -> None:
        self.closed = 0

    def on_state(self, state: str, detail: str = "") -> None:
        return

    def on_file_opened(self, f: OpenFile) -> None:
        return

    def on_file_closed(self, f: ClosedFile) -> None:
        self.closed += 1


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("streams_tsv")
    ap.add_argument("--segment", type=float, default=10.0, help="interval (and hls_segment), s")
    ap.add_argument("--formats", default="flv")
    ap.add_argument(
        "--pump-threads", type=int, default=2, help="threads reading native pulls (0: one each)"
    )
    a = ap.parse_args()
    rows = read_streams(a.streams_tsv)
    parents = {str(Path(d).resolve().parent) for _, _, d in rows}
    if len(parents) != 1 or any(Path(d).name != n for n, _, d in rows):
        raise SystemExit("engine_probe: every outdir must be <same parent>/<stream name>")
    root = Path(parents.pop())
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    listener = NullListener()
    pumps = Pumps(a.pump_threads) if a.pump_threads else None
    recorders = []
    for i, (name, url, _) in enumerate(rows):
        plan = RecordingPlan(
            recording_id=f"bare-{i}-{name}",
            app_id=1,
            stream_id=name,
            sources=(url.rsplit("/", 1)[0] + "/{stream_id}",),
            formats=tuple(a.formats.split(",")),
            interval=a.segment,
            hls_segment=a.segment,
            resume_window=30.0,
            wait_for_stream=True,
            deadline=time.time() + 3600,
            storage_root=root,
            path_template=PATH_TEMPLATE,
        )
        recorders.append(Recorder(plan, listener, pumps=pumps))
    threads = [
        threading.Thread(target=r.run, name=f"rec-{r.plan.stream_id}", daemon=True)
        for r in recorders
    ]
    for t in threads:
        t.start()
    stop.wait()
    for r in recorders:
        r.stop()
    deadline = time.monotonic() + 12
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = sum(t.is_alive() for t in threads)
    print(
        f"engine_probe: {listener.closed} files closed, {alive} recorders still running",
        file=sys.stderr,
    )
    return 1 if alive else 0


if __name__ == "__main__":
    sys.exit(main())
