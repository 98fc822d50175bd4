"""All formats from one live pull: valid files, splits, no packet lost or duplicated."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.engine.checks import check_file, media_files
from tests.engine.conftest import Running, stream_name
from tests.support.media import PacketIndex, continuity
from tests.support.origins import NginxRtmp, publish

from cdnrec.engine.layout import PARTIAL_DIR
from cdnrec.engine.sources import probe_live

ALL = ("flv", "mp4", "m3u8", "aac", "mp3")


def wait_live(url: str) -> None:
    """Wait until the origin serves ``url``."""
    for _ in range(20):
        if probe_live(url, 2.0):
            return
    raise AssertionError(f"{url} never went live")


@pytest.mark.nginx
def test_all_formats_split_valid_and_gapless(
    nginx: NginxRtmp,
    av_clip: Path,
    av_index: PacketIndex,
    make_plan: Callable[..., object],
    running: Callable[..., Running],
) -> None:
    """One RTMP pull writes every format; files split at the interval on keyframes, and the
    packets of each format's files are exactly the source's, in order."""
    name = stream_name()
    pub = publish(av_clip, nginx.url(name))
    try:
        wait_live(nginx.url(name))
        plan = make_plan(nginx.url("{stream_id}"), stream_id=name, formats=ALL, interval=2.0)
        r = running(plan)
        r.events.wait(lambda e: len(e.files("flv")) >= 3, timeout=30)
        assert r.stop() == "ended"
    finally:
        pub.stop()
    ev = r.events
    assert ev.state_names() == ["connecting", "recording", "ended"]
    root = plan.storage_root  # type: ignore[attr-defined]
    # Every opened file was closed once, nothing partial is left behind.
    assert len(ev.opened) == len(ev.closed)
    assert not [p for p in (root / PARTIAL_DIR).rglob("*") if p.is_file()]

    av_kinds = ("video", "audio")
    for fmt in ALL:
        files = ev.files(fmt)
        assert files, fmt
        for i, f in enumerate(files):
            kinds = ("audio",) if fmt in ("aac", "mp3") else av_kinds
            check_file(f, root, kinds, last=i == len(files) - 1)
            expected = {"mp3": ("mp3",), "aac": ("aac",)}.get(fmt, ("h264", "aac"))
            assert f.codecs == expected
            assert f.gaps == ()
            assert not f.repaired

    # Split rule: video files last the interval up to the next keyframe (1 s GOP);
    # audio-only files are cut at the deadline.
    for fmt in ("flv", "mp4"):
        for f in ev.files(fmt)[:-1]:
            assert 2.0 <= f.duration <= 3.1, (fmt, f.duration)
    for fmt in ("aac", "mp3"):
        for f in ev.files(fmt)[:-1]:
            assert 2.0 <= f.duration <= 2.1, (fmt, f.duration)
    assert len(ev.files("m3u8")) == 1

    # Packet identity: nothing lost, nothing duplicated, across all splits.
    counts = {}
    for fmt in ("flv", "mp4", "m3u8", "aac"):
        kinds = ("audio",) if fmt == "aac" else av_kinds
        paths = [p for f in ev.files(fmt) for p in media_files(f)]
        res = continuity(av_index, paths, kinds)
        for k in kinds:
            assert (res.lost[k], res.dup[k], res.unknown[k]) == (0, 0, 0), (fmt, res)
        counts[fmt] = res.packets
    assert counts["flv"] == counts["mp4"] == counts["m3u8"]
    assert counts["aac"]["audio"] == counts["flv"]["audio"]

    # Durations add up across formats.
    total = {fmt: sum(f.duration for f in ev.files(fmt)) for fmt in ALL}
    assert abs(total["flv"] - total["mp4"]) < 0.1
    assert abs(total["m3u8"] - total["flv"]) < 0.3
    assert abs(total["mp3"] - total["aac"]) < 0.2
    # Consecutive files follow each other in wall-clock time.
    for fmt in ALL:
        files = ev.files(fmt)
        for a, b in itertools.pairwise(files):
            assert abs(b.begin_ms - a.end_ms) < 300, fmt
