"""What a recorder's transactions carry: at a split, the next file's record with the previous
file's close (decision 0015); the checksums read back and, when half due, the heartbeat with the
next file transaction (decision 0016)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import event

from tests.e2e.helpers import recording_settings
from tests.support.origins import NginxRtmp, publish
from tests.support.receiver import Receiver
from tests.support.service import RunningService, wait_for


class _Transactions:
    """What each transaction of a SQLAlchemy engine did: files opened (inserted) and closed
    (updated with their facts), checksums written, heartbeats (the recorder's upsert)."""

    def __init__(self, engine: Any) -> None:
        self.number = 0
        self.done: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_KINDS, 0))
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "commit", self._next)
        event.listen(engine, "rollback", self._next)

    def _statement(self, _conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        rows = len(params) if isinstance(params, list) else 1
        if sql.startswith("INSERT INTO files"):
            self.done[self.number]["opened"] += rows
        elif sql.startswith("UPDATE files") and "duration=" in sql:
            self.done[self.number]["closed"] += rows
        elif sql.startswith("UPDATE files SET sha256="):
            self.done[self.number]["checksums"] += rows
        elif sql.startswith("INSERT INTO recorders"):
            self.done[self.number]["beat"] += 1

    def _next(self, _conn: Any) -> None:
        self.number += 1

    def written(self) -> list[dict[str, int]]:
        """Transactions that opened or closed files, in order (what they opened and closed)."""
        return [
            {"opened": t["opened"], "closed": t["closed"]}
            for _, t in sorted(self.done.items())
            if t["opened"] or t["closed"]
        ]

    def all(self) -> list[dict[str, int]]:
        """Every transaction that did any of these, in order."""
        return [dict(t) for _, t in sorted(self.done.items()) if any(t.values())]


_KINDS = ("opened", "closed", "checksums", "beat")


def _record_2s_files(
    tmp_path: Path, origin: NginxRtmp, av_clip: Path, receiver: Receiver, stream_id: str, n: int
) -> tuple[_Transactions, list[dict[str, int]]]:
    """Record ``stream_id`` in 2 s FLV files until ``n`` callbacks came, then stop the service;
    its transactions, and all of them that did something before the shutdown began."""
    publisher = publish(av_clip, origin.url(stream_id))
    settings = recording_settings(tmp_path, origin, receiver.url, formats=("flv",), interval=2.0)
    service = RunningService(settings).start()
    assert service.service is not None
    seen = _Transactions(service.service.store.engine.sync_engine)
    try:
        with service.client() as client:
            answer = client.call("StartCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Tencent"})
        assert answer["Code"] == 0, answer
        wait_for(lambda: len(receiver.records()) >= n, 40)
        before_stop = seen.all()
    finally:
        service.stop()
        publisher.stop()
    return seen, before_stop


def test_the_next_file_is_recorded_with_the_close_of_the_one_before(
    tmp_path: Path, origin: NginxRtmp, av_clip: Path, receiver: Receiver, stream_id: str
) -> None:
    seen, _ = _record_2s_files(tmp_path, origin, av_clip, receiver, stream_id, 3)
    written = seen.written()
    splits = [t for t in written if t["closed"] and t["opened"]]
    assert len(splits) >= 3, written
    # the first file opens alone; every later one opens with the close of the one before
    # (the close at shutdown has no file after it)
    assert written[0] == {"opened": 1, "closed": 0}, written
    assert [t for t in written[1:-1] if t != {"opened": 1, "closed": 1}] == [], written


def test_checksums_and_heartbeats_ride_with_the_file_transactions(
    tmp_path: Path, origin: NginxRtmp, av_clip: Path, receiver: Receiver, stream_id: str
) -> None:
    # lease 3 s (recording_settings): a heartbeat every second; a split carries it unless one
    # was written less than BEAT_APART before. The shutdown writes what is left alone.
    _, recorded = _record_2s_files(tmp_path, origin, av_clip, receiver, stream_id, 4)
    files = [t for t in recorded if t["opened"] or t["closed"]]
    sums = [t for t in recorded if t["checksums"]]
    assert sum(t["checksums"] for t in sums) >= 2, recorded
    # no checksum has a transaction of its own: it waits for a file change or a heartbeat
    assert [t for t in sums if not (t["opened"] or t["closed"] or t["beat"])] == [], recorded
    # file transactions carry the heartbeat
    assert [t for t in files if t["beat"]], recorded
