"""Files being recorded keep only their last pages in the page cache; the files stay whole."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.engine.checks import check_file
from tests.engine.conftest import Running, stream_name
from tests.engine.test_formats import ALL, wait_live
from tests.support.origins import NginxRtmp, publish
from tests.support.pages import needs_fincore, resident

from cdnrec.engine.formats import pages

EVERY = 8 << 10

pytestmark = needs_fincore


@pytest.mark.nginx
def test_growing_files_drop_their_older_pages(
    nginx: NginxRtmp,
    av_clip: Path,
    make_plan: Callable[..., object],
    running: Callable[..., Running],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every format, one long file each (M3U8: 1 s segments): while recording, each file holds
    little more than its last pages in the page cache, older segments none; the files closed
    at the end are whole and valid."""
    monkeypatch.setattr(pages, "RELEASE_EVERY", EVERY)
    monkeypatch.setattr(pages, "KEEP", EVERY)
    name = stream_name()
    pub = publish(av_clip, nginx.url(name))
    try:
        wait_live(nginx.url(name))
        plan = make_plan(
            nginx.url("{stream_id}"), stream_id=name, formats=ALL, interval=60.0, hls_segment=1.0
        )
        r = running(plan)
        r.events.wait(lambda e: "recording" in e.state_names())
        time.sleep(10.0)
        opened = {f.format: f.partial_path for f in r.events.opened}
        sizes = {fmt: path.stat().st_size for fmt, path in opened.items() if fmt != "m3u8"}
        held = {fmt: resident(opened[fmt]) for fmt in sizes}
        segments = sorted(opened["m3u8"].glob("*.ts"))
        old_segments = {s.name: resident(s) for s in segments[:-3]}
        assert r.stop() == "ended"
    finally:
        pub.stop()

    for fmt, size in sizes.items():
        assert size > 8 * EVERY, (fmt, size)
        assert held[fmt] < size / 2, (fmt, held[fmt], size)
    assert old_segments, [s.name for s in segments]
    assert not any(old_segments.values()), old_segments
    root = plan.storage_root  # type: ignore[attr-defined]
    for f in r.events.closed:
        assert not f.repaired
        kinds = ("audio",) if f.format in ("aac", "mp3") else ("video", "audio")
        check_file(f, root, kinds, last=True)
