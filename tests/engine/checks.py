"""Assertions on recorded files shared by the engine tests."""

from __future__ import annotations

import itertools
from pathlib import Path

from tests.support.media import read_packets

from cdnrec.engine.formats.hls import parse_playlist
from cdnrec.engine.layout import PARTIAL_DIR, segments_dir
from cdnrec.engine.plan import ClosedFile


def media_files(f: ClosedFile) -> list[Path]:
    """The media files behind a closed file (the segments of a playlist)."""
    if f.format != "m3u8":
        return [f.path]
    folder = segments_dir(f.path)
    return [folder / s.name for s in parse_playlist(f.path.read_text())]


def check_file(f: ClosedFile, root: Path, kinds: tuple[str, ...], *, last: bool = False) -> None:
    """A closed file is where it says, described truthfully, and plays from 0 in order.

    The last file of a recording may end right after a keyframe and so hold one kind only.
    """
    assert f.path.is_file()
    assert f.path.resolve().is_relative_to(root.resolve())
    assert f.key == f.path.resolve().relative_to(root.resolve()).as_posix()
    assert PARTIAL_DIR not in f.key
    files = media_files(f)
    assert f.size == sum(p.stat().st_size for p in files) + (
        f.path.stat().st_size if f.format == "m3u8" else 0
    )
    assert f.end_ms >= f.begin_ms
    assert f"_{f.begin_ms // 1000}_{f.end_ms // 1000}" in f.path.name
    total = 0.0
    for i, path in enumerate(files):
        pkts = read_packets(path)
        assert pkts, f"{path} has no packets"
        present = {p[0] for p in pkts}
        assert present <= set(kinds), path
        assert present == set(kinds) or (last and i == len(files) - 1), path
        if "video" in present:
            first_video = next(p for p in pkts if p[0] == "video")
            assert first_video[4], f"{path} does not start on a keyframe"
        for kind in present:
            dts = [p[2] for p in pkts if p[0] == kind]
            assert all(a < b for a, b in itertools.pairwise(dts)), f"{path} {kind} dts"
            if f.format != "m3u8":
                assert -0.05 <= dts[0] < 0.3, f"{path} {kind} starts at {dts[0]}"
            elif i == 0:
                assert dts[0] < 2.0
        span = max(p[2] for p in pkts) - min(p[2] for p in pkts)
        total += span
    assert abs(total - f.duration) < 0.2 * len(files) + 0.15, (total, f.duration)
