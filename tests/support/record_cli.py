"""Run one Recorder in this process (for kill -9 tests): ``python -m tests.support.record_cli``.

Reads a plan as JSON on argv[1]; prints one JSON line per listener event, flushed.
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cdnrec.engine.plan import ClosedFile, OpenFile, RecordingPlan
from cdnrec.engine.recorder import Recorder


class _Printer:
    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        print(json.dumps({"event": kind, **data}, default=str), flush=True)

    def on_state(self, state: str, detail: str = "") -> None:
        self._emit("state", {"state": state, "detail": detail})

    def on_file_opened(self, f: OpenFile) -> None:
        self._emit("opened", asdict(f))

    def on_file_closed(self, f: ClosedFile) -> None:
        self._emit("closed", asdict(f))


def main() -> None:
    """Run the plan given as JSON until SIGTERM."""
    raw = json.loads(sys.argv[1])
    raw["storage_root"] = Path(raw["storage_root"])
    for k in ("sources", "formats"):
        raw[k] = tuple(raw[k])
    rec = Recorder(RecordingPlan(**raw), _Printer())
    signal.signal(signal.SIGTERM, lambda *_: rec.stop())
    rec.run()


if __name__ == "__main__":
    main()
