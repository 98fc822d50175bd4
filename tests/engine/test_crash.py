"""kill -9 of a recorder at any moment: finished files intact, partials repaired."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import pytest
from tests.engine.checks import check_file, media_files
from tests.engine.conftest import stream_name
from tests.engine.test_formats import wait_live
from tests.support.media import PacketIndex, continuity
from tests.support.origins import NginxRtmp, publish

from cdnrec.engine.layout import PARTIAL_DIR
from cdnrec.engine.plan import ClosedFile
from cdnrec.media import find_partials, probe, repair

ROOT = Path(__file__).resolve().parents[2]
ALL = ("flv", "mp4", "m3u8", "aac", "mp3")
# Reads come every POLL (1 s) from the first, which starts the recording; files split every 2 s.
# 4.6 s after the start falls just after a split; 5.5 s is half a read after the next read.
MID_FILE = 5.5


def _begin(f: ClosedFile) -> int:
    return f.begin_ms


def closed_from(ev: dict[str, Any]) -> ClosedFile:
    """A ClosedFile from the JSON the recorder subprocess printed."""
    ev = dict(ev)
    ev.pop("event")
    ev["path"] = Path(ev["path"])
    ev["codecs"] = tuple(ev["codecs"])
    ev["gaps"] = tuple(tuple(g) for g in ev["gaps"])
    return ClosedFile(**ev)


def assert_seekable(path: Path) -> None:
    """The file has a duration and a seek to its middle lands on a keyframe."""
    with av.open(str(path)) as c:
        assert c.duration
        assert c.duration > 0
        v = c.streams.video[0]
        c.seek(int(c.duration / 2 / 1_000_000 / v.time_base), stream=v)
        pkt = next(p for p in c.demux(v) if p.dts is not None)
        assert pkt.is_keyframe


@pytest.mark.nginx
@pytest.mark.parametrize("kill_after", [4.6, MID_FILE])
def test_kill_9_then_repair_every_format(
    nginx: NginxRtmp, av_clip: Path, av_index: PacketIndex, tmp_path: Path, kill_after: float
) -> None:
    """After SIGKILL, announced files are intact and every partial is repaired into a valid
    file that holds the media up to about 2 s before the kill, with nothing lost in between."""
    name = stream_name()
    pub = publish(av_clip, nginx.url(name))
    root = tmp_path / "store"
    plan = {
        "recording_id": "crash",
        "app_id": 7,
        "stream_id": name,
        "sources": [nginx.url("{stream_id}")],
        "formats": list(ALL),
        "interval": 2.0,
        "hls_segment": 1.0,
        "resume_window": 5.0,
        "wait_for_stream": False,
        "deadline": None,
        "storage_root": str(root),
    }
    closed: list[ClosedFile] = []
    try:
        wait_live(nginx.url(name))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.record_cli", json.dumps(plan)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            if json.loads(line).get("state") == "recording":
                break
        started = time.monotonic()
        time.sleep(kill_after)
        os.kill(proc.pid, signal.SIGKILL)
        elapsed = time.monotonic() - started
        out, _ = proc.communicate()
        proc.wait()
    finally:
        pub.stop()
    for line in out.splitlines():
        ev = json.loads(line)
        if ev["event"] == "closed":
            closed.append(closed_from(ev))

    partials = find_partials(root)
    # A kill just after a split keyframe, before the next read, leaves two partials of a video
    # format: the file before the split (kept open for late audio) and the one it started.
    formats = [p.name.split("_")[0] for p in partials]
    assert set(formats) == set(ALL)
    assert all(formats.count(f) == 1 or f in ("flv", "mp4") for f in ALL), formats
    repaired: dict[str, list[ClosedFile]] = {}
    for p in partials:
        f = repair(p)
        # A file opened less than a read's worth (POLL, 1 s) before the kill may hold no media.
        if f is not None:
            assert f.repaired
            repaired.setdefault(f.format, []).append(f)
    # The playlist spans the recording, so it always holds the segments written before the
    # kill. Just after a split the other new files may still be empty. Mid-file, the FLV holds
    # every read since its split (its tags are flushed after each read); the PyAV-muxed files
    # may still hold none under load (an MP4 fragment is written 1 s after it starts).
    assert "m3u8" in repaired, sorted(repaired)
    assert kill_after < MID_FILE or "flv" in repaired, sorted(repaired)
    assert find_partials(root) == []
    assert not [p for p in (root / PARTIAL_DIR).rglob("*") if p.is_file()]

    for fmt in ALL:
        kinds = ("audio",) if fmt in ("aac", "mp3") else ("video", "audio")
        files = sorted(
            [*(c for c in closed if c.format == fmt), *repaired.get(fmt, [])],
            key=lambda c: c.begin_ms,
        )
        for i, f in enumerate(files):
            check_file(f, root, kinds, last=i == len(files) - 1)
        got = sum(f.duration for f in files)
        assert got >= elapsed - 2.0, (fmt, got, elapsed)
        if fmt != "mp3":
            paths = [p for f in files for p in media_files(f)]
            res = continuity(av_index, paths, kinds)
            for k in kinds:
                assert res.lost[k] == res.dup[k] == res.unknown[k] == 0, (fmt, res)
    assert repaired["m3u8"][0].path.read_text().rstrip().endswith("#EXT-X-ENDLIST")
    mp4 = max(repaired.get("mp4") or [c for c in closed if c.format == "mp4"], key=_begin)
    assert_seekable(mp4.path)
    assert probe(mp4.path).first_is_keyframe


def test_repair_of_an_unreadable_partial_removes_it(tmp_path: Path) -> None:
    """A partial cut before any media is removed and reported as nothing."""
    from cdnrec.engine.layout import Layout, PartialInfo

    layout = Layout(tmp_path)
    path = layout.partial_path("r", "mp4", 1_700_000_000_000)
    info = PartialInfo(path, "mp4", 1, "s", 1_700_000_000_000, "r", layout.path_template)
    layout.register_partial(info)
    path.write_bytes(b"\x00\x00\x00\x18ftypisom")
    assert find_partials(tmp_path) == [path]
    assert repair(path) is None
    assert find_partials(tmp_path) == []
    assert not path.exists()
