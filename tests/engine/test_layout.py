"""The on-disk layout: final names from the template, partials and their sidecars."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from cdnrec.engine.formats.base import finalize
from cdnrec.engine.layout import Layout, PartialInfo, read_sidecar, segments_dir
from cdnrec.engine.plan import ClosedFile

BEGIN_MS = 1_767_225_599_500  # 2025-12-31T23:59:59.5Z


def info_for(layout: Layout, fmt: str = "mp4", stream: str = "s-1") -> PartialInfo:
    """A registered partial of ``fmt``."""
    path = layout.partial_path("task/../1", fmt, BEGIN_MS)
    info = PartialInfo(path, fmt, 42, stream, BEGIN_MS, "task/../1", layout.path_template)
    layout.register_partial(info)
    return info


def test_final_names_follow_the_template_in_utc(tmp_path: Path) -> None:
    """Default template: app/stream/UTC date of begin/stream_begin_end.ext (seconds)."""
    layout = Layout(tmp_path)
    info = info_for(layout)
    final = layout.reserve_final(info, BEGIN_MS + 3_000)
    assert layout.key(final) == "42/s-1/20251231/s-1_1767225599_1767225602.mp4"


def test_partials_stay_in_the_partial_folder_with_a_sidecar(tmp_path: Path) -> None:
    """A recording ID cannot escape the partial folder; the sidecar round-trips."""
    layout = Layout(tmp_path)
    info = info_for(layout, "flv")
    assert info.path.resolve().is_relative_to((tmp_path / ".partial").resolve())
    assert read_sidecar(info.path) == info
    assert [p.path for p in layout.find_partials()] == [info.path]


def test_name_collisions_get_a_suffix(tmp_path: Path) -> None:
    """Two files with the same begin/end seconds never overwrite each other: a name is taken
    when it is handed out, before the file is moved there."""
    layout = Layout(tmp_path)
    info = info_for(layout)
    first = layout.reserve_final(info, BEGIN_MS + 100)
    assert first.exists()
    second = layout.reserve_final(info, BEGIN_MS + 100)
    assert second != first
    assert second.name.endswith("-2.mp4")
    playlist = layout.reserve_final(info_for(layout, "m3u8"), BEGIN_MS + 100)
    assert playlist.name.endswith(".m3u8")
    segments_dir(playlist.with_name(playlist.stem + "-2.m3u8")).mkdir()
    assert layout.reserve_final(info_for(layout, "m3u8"), BEGIN_MS + 100).name.endswith("-3.m3u8")


def test_files_closed_at_once_with_one_name_all_survive(tmp_path: Path) -> None:
    """Recordings of one stream for several vendors close files with the same name at the same
    moment, on their own threads: every file keeps its own bytes under its own name."""
    layout = Layout(tmp_path)
    start = threading.Barrier(8)
    closed: list[ClosedFile] = []

    def close(worker: int) -> None:
        start.wait()
        for i in range(25):
            path = layout.partial_path(f"rec-{worker}", "flv", BEGIN_MS + i)
            info = PartialInfo(
                path, "flv", 42, "s-1", BEGIN_MS, f"rec-{worker}", layout.path_template
            )
            layout.register_partial(info)
            path.write_bytes(f"{worker}:{i}".encode())
            closed.append(finalize(layout, info, BEGIN_MS + 2_000, 2.0, ("h264",), (), False))

    threads = [threading.Thread(target=close, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({c.key for c in closed}) == len(closed) == 200
    contents = {c.path.read_bytes() for c in closed}
    assert contents == {f"{w}:{i}".encode() for w in range(8) for i in range(25)}


def test_template_leaving_the_root_is_refused(tmp_path: Path) -> None:
    """A template that resolves outside the storage root raises."""
    layout = Layout(tmp_path / "root", "../{stream_id}_{begin}.{ext}")
    info = info_for(layout)
    with pytest.raises(ValueError, match="storage root"):
        layout.reserve_final(info, BEGIN_MS)


def test_playlist_segments_live_beside_the_playlist(tmp_path: Path) -> None:
    """A playlist X.m3u8 keeps its segments in X/."""
    assert segments_dir(tmp_path / "a" / "s_1_2.m3u8") == tmp_path / "a" / "s_1_2"
