"""The on-disk layout: final names from the template, partials and their sidecars."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdnrec.engine.layout import Layout, PartialInfo, read_sidecar, segments_dir

BEGIN_MS = 1_767_225_599_500  # 2025-12-31T23:59:59.5Z


def info_for(layout: Layout, fmt: str = "mp4", stream: str = "s-1") -> PartialInfo:
    """A registered partial of ``fmt``."""
    path = layout.partial_path("task/../1", fmt, BEGIN_MS)
    info = PartialInfo(path, fmt, 42, stream, BEGIN_MS, "task/../1", layout.path_template)
    layout.register_partial(info)
    return info


def test_final_path_follows_the_template_in_utc(tmp_path: Path) -> None:
    """Default template: app/stream/UTC date of begin/stream_begin_end.ext (seconds)."""
    layout = Layout(tmp_path)
    info = info_for(layout)
    final = layout.final_path(info, BEGIN_MS + 3_000)
    assert layout.key(final) == "42/s-1/20251231/s-1_1767225599_1767225602.mp4"


def test_partials_stay_in_the_partial_folder_with_a_sidecar(tmp_path: Path) -> None:
    """A recording ID cannot escape the partial folder; the sidecar round-trips."""
    layout = Layout(tmp_path)
    info = info_for(layout, "flv")
    assert info.path.resolve().is_relative_to((tmp_path / ".partial").resolve())
    assert read_sidecar(info.path) == info
    assert [p.path for p in layout.find_partials()] == [info.path]


def test_name_collisions_get_a_suffix(tmp_path: Path) -> None:
    """Two files with the same begin/end seconds never overwrite each other."""
    layout = Layout(tmp_path)
    info = info_for(layout)
    first = layout.final_path(info, BEGIN_MS + 100)
    first.parent.mkdir(parents=True)
    first.write_bytes(b"x")
    second = layout.final_path(info, BEGIN_MS + 100)
    assert second != first
    assert second.name.endswith("-2.mp4")


def test_template_leaving_the_root_is_refused(tmp_path: Path) -> None:
    """A template that resolves outside the storage root raises."""
    layout = Layout(tmp_path / "root", "../{stream_id}_{begin}.{ext}")
    info = info_for(layout)
    with pytest.raises(ValueError, match="storage root"):
        layout.final_path(info, BEGIN_MS)


def test_playlist_segments_live_beside_the_playlist(tmp_path: Path) -> None:
    """A playlist X.m3u8 keeps its segments in X/."""
    assert segments_dir(tmp_path / "a" / "s_1_2.m3u8") == tmp_path / "a" / "s_1_2"
