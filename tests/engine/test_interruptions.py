"""Source drops and returns, streams that go live late or never, stop and deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.engine.checks import check_file, media_files
from tests.engine.conftest import Collector, Running, stream_name
from tests.engine.test_formats import wait_live
from tests.support.media import PacketIndex, continuity, read_packets
from tests.support.origins import NginxRtmp, free_port, publish

from cdnrec.engine.formats.hls import parse_playlist

AV = ("video", "audio")


def n_state(ev: Collector, state: str) -> int:
    """How many times ``state`` was reported."""
    return ev.state_names().count(state)


@pytest.mark.nginx
@pytest.mark.parametrize("ts_offset", [0.0, 1000.0], ids=["ts-reset", "ts-jump-forward"])
def test_drop_inside_resume_window_continues_same_files(
    nginx: NginxRtmp,
    av_clip: Path,
    av_index: PacketIndex,
    make_plan: Callable[..., object],
    running: Callable[..., Running],
    ts_offset: float,
) -> None:
    """A publisher that comes back within the window continues the same files, with
    monotonic timestamps whatever the new timestamps are, a gap noted and an M3U8
    discontinuity where it resumed."""
    name = stream_name()
    url = nginx.url(name)
    pub = publish(av_clip, url)
    wait_live(url)
    plan = make_plan(
        nginx.url("{stream_id}"), stream_id=name, formats=("flv", "mp4", "m3u8"),
        interval=60.0, resume_window=8.0,
    )  # fmt: skip
    r = running(plan)
    try:
        r.events.wait(lambda e: "recording" in e.state_names())
        time.sleep(2.5)
        pub.stop()
        r.events.wait(lambda e: "interrupted" in e.state_names(), timeout=10)
        time.sleep(1.0)
        extra = ("-output_ts_offset", str(ts_offset), "-f", "flv") if ts_offset else ()
        pub = publish(av_clip, url, extra=extra)
        r.events.wait(lambda e: n_state(e, "recording") == 2, timeout=15)
        time.sleep(2.5)
        assert r.stop() == "ended"
    finally:
        pub.stop()
    ev = r.events
    assert "waiting" not in ev.state_names()
    root = plan.storage_root  # type: ignore[attr-defined]
    for fmt in ("flv", "mp4", "m3u8"):
        files = ev.files(fmt)
        assert len(files) == 1, f"{fmt}: the resumed recording must continue the same file"
        f = files[0]
        check_file(f, root, AV, last=True)
        assert len(f.gaps) == 1
        offset, length = f.gaps[0]
        assert 2.0 <= offset <= 4.5, f.gaps
        assert 0.5 <= length <= 8.0, f.gaps
        # No gap in the timestamps: about 2.5 s + 2.5 s of media, not the outage or the jump.
        assert 3.5 <= f.duration <= 8.0, f.duration
        res = continuity(av_index, media_files(f), AV)
        assert res.dup == {"video": 0, "audio": 0}
        assert res.unknown == {"video": 0, "audio": 0}
        assert all(len(j) <= 1 for j in res.jumps.values()), res.jumps  # only at the outage
    playlist = ev.files("m3u8")[0].path.read_text()
    assert playlist.count("#EXT-X-DISCONTINUITY") == 1
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
    segs = parse_playlist(playlist)
    assert sum(s.discontinuity for s in segs) == 1
    assert not segs[0].discontinuity


@pytest.mark.nginx
def test_drop_beyond_window_closes_files_and_waits_for_return(
    nginx: NginxRtmp,
    av_clip: Path,
    make_plan: Callable[..., object],
    running: Callable[..., Running],
) -> None:
    """Beyond the resume window the files are closed and announced during the outage; a
    waiting task records the returning stream into new files."""
    name = stream_name()
    url = nginx.url(name)
    pub = publish(av_clip, url)
    wait_live(url)
    plan = make_plan(
        nginx.url("{stream_id}"), stream_id=name, formats=("flv", "m3u8"),
        interval=60.0, resume_window=1.0, wait_for_stream=True,
    )  # fmt: skip
    r = running(plan)
    try:
        r.events.wait(lambda e: "recording" in e.state_names())
        time.sleep(2.0)
        pub.stop()
        # Closed and announced while the stream is still away.
        r.events.wait(lambda e: len(e.closed) == 2 and "waiting" in e.state_names(), 15)
        pub = publish(av_clip, url)
        r.events.wait(lambda e: n_state(e, "recording") == 2, timeout=20)
        time.sleep(2.0)
        assert r.stop() == "ended"
    finally:
        pub.stop()
    ev = r.events
    root = plan.storage_root  # type: ignore[attr-defined]
    for fmt in ("flv", "m3u8"):
        files = ev.files(fmt)
        assert len(files) == 2, fmt
        for f in files:
            check_file(f, root, AV, last=True)
            assert f.gaps == ()
        assert files[0].end_ms <= files[1].begin_ms
    for f in ev.files("m3u8"):
        assert "#EXT-X-DISCONTINUITY" not in f.path.read_text()


@pytest.mark.nginx
def test_drop_beyond_window_ends_task_that_does_not_wait(
    nginx: NginxRtmp,
    av_clip: Path,
    make_plan: Callable[..., object],
    running: Callable[..., Running],
) -> None:
    """Without wait_for_stream an outage longer than the window ends the recording."""
    name = stream_name()
    url = nginx.url(name)
    pub = publish(av_clip, url)
    wait_live(url)
    plan = make_plan(nginx.url("{stream_id}"), stream_id=name, resume_window=1.0)
    r = running(plan)
    r.events.wait(lambda e: "recording" in e.state_names())
    time.sleep(1.5)
    pub.stop()
    assert r.join(timeout=20) == "ended"
    assert r.events.state_names()[-2:] == ["interrupted", "ended"]
    assert "resume window" in r.events.states[-1][1]
    assert len(r.events.files("flv")) == 1


@pytest.mark.nginx
def test_stream_going_live_after_start_is_recorded(
    nginx: NginxRtmp,
    av_clip: Path,
    av_index: PacketIndex,
    make_plan: Callable[..., object],
    running: Callable[..., Running],
) -> None:
    """A waiting task retries until the stream appears, then records it."""
    name = stream_name()
    plan = make_plan(nginx.url("{stream_id}"), stream_id=name, wait_for_stream=True)
    r = running(plan, read_timeout=1.0)
    r.events.wait(lambda e: "waiting" in e.state_names(), timeout=10)
    pub = publish(av_clip, nginx.url(name))
    try:
        r.events.wait(lambda e: "recording" in e.state_names(), timeout=20)
        r.events.wait(lambda e: len(e.files("flv")) >= 1, timeout=10)
        assert r.stop() == "ended"
    finally:
        pub.stop()
    assert r.events.state_names()[:3] == ["connecting", "waiting", "recording"]
    files = r.events.files("flv")
    for i, f in enumerate(files):
        check_file(f, plan.storage_root, AV, last=i == len(files) - 1)  # type: ignore[attr-defined]
    res = continuity(av_index, [f.path for f in files], AV)
    assert res.lost == res.dup == {"video": 0, "audio": 0}


@pytest.mark.nginx
def test_stop_before_first_frame_returns_promptly_without_files(
    nginx: NginxRtmp, make_plan: Callable[..., object], running: Callable[..., Running]
) -> None:
    """Stop while waiting for a stream that never publishes: ends at once, no file."""
    plan = make_plan(nginx.url("{stream_id}"), stream_id=stream_name(), wait_for_stream=True)
    r = running(plan)
    time.sleep(0.7)
    t0 = time.monotonic()
    assert r.stop(timeout=5) == "ended"
    assert time.monotonic() - t0 < 4.0
    assert r.events.opened == []
    assert r.events.closed == []
    assert r.events.state_names()[-1] == "ended"


def test_unreachable_source_fails_with_a_clear_detail(
    make_plan: Callable[..., object], running: Callable[..., Running]
) -> None:
    """A task that does not wait gives up on an unreachable origin and says why."""
    url = f"rtmp://127.0.0.1:{free_port()}/live/{{stream_id}}"
    plan = make_plan(url, resume_window=1.0)
    r = running(plan)
    assert r.join(timeout=15) == "failed"
    state, detail = r.events.states[-1]
    assert state == "failed"
    assert "not live" in detail
    assert "refused" in detail.lower()
    assert r.events.opened == []


def test_waiting_task_ends_at_its_deadline(
    make_plan: Callable[..., object], running: Callable[..., Running]
) -> None:
    """A waiting task on a stream that never comes ends cleanly at its deadline."""
    url = f"rtmp://127.0.0.1:{free_port()}/live/{{stream_id}}"
    plan = make_plan(url, wait_for_stream=True, deadline=time.time() + 2.0)
    r = running(plan)
    assert r.join(timeout=15) == "ended"
    assert "waiting" in r.events.state_names()
    assert r.events.states[-1] == ("ended", "deadline reached")


@pytest.mark.nginx
def test_deadline_closes_the_recording(
    nginx: NginxRtmp,
    av_clip: Path,
    make_plan: Callable[..., object],
    running: Callable[..., Running],
) -> None:
    """At the deadline every file is closed and announced and run() returns by itself."""
    name = stream_name()
    pub = publish(av_clip, nginx.url(name))
    try:
        wait_live(nginx.url(name))
        plan = make_plan(
            nginx.url("{stream_id}"), stream_id=name, formats=("mp4", "mp3"),
            interval=60.0, deadline=time.time() + 3.0,
        )  # fmt: skip
        r = running(plan)
        assert r.join(timeout=15) == "ended"
    finally:
        pub.stop()
    assert r.events.states[-1] == ("ended", "deadline reached")
    for fmt in ("mp4", "mp3"):
        (f,) = r.events.files(fmt)
        assert 1.0 <= f.duration <= 4.0  # the origin sends a little ahead
        assert read_packets(f.path)


@pytest.mark.nginx
def test_stop_while_the_source_stalls_closes_files_promptly(
    nginx: NginxRtmp,
    av_clip: Path,
    make_plan: Callable[..., object],
    running: Callable[..., Running],
) -> None:
    """A source that stops sending mid-stream does not hold stop() beyond the read timeout."""
    import os
    import signal

    name = stream_name()
    pub = publish(av_clip, nginx.url(name))
    try:
        wait_live(nginx.url(name))
        plan = make_plan(nginx.url("{stream_id}"), stream_id=name, formats=("mp4", "m3u8"))
        r = running(plan)
        r.events.wait(lambda e: "recording" in e.state_names())
        time.sleep(1.5)
        os.kill(pub.p.pid, signal.SIGSTOP)  # the origin keeps the connection, no data flows
        time.sleep(0.3)
        t0 = time.monotonic()
        assert r.stop(timeout=10) == "ended"
        took = time.monotonic() - t0
    finally:
        os.kill(pub.p.pid, signal.SIGCONT)
        pub.stop()
    assert took < 2.5, took
    assert {f.format for f in r.events.closed} == {"mp4", "m3u8"}
    assert len(r.events.opened) == len(r.events.closed)


@pytest.mark.nginx
def test_long_gop_splits_only_on_keyframes(
    nginx: NginxRtmp,
    clip_dir: Path,
    make_plan: Callable[..., object],
    running: Callable[..., Running],
) -> None:
    """With a 4 s GOP at 5 fps and a 2 s interval, every video file starts on a keyframe and
    lasts one GOP; no packet is lost or duplicated."""
    from tests.support.media import make_clip

    clip = make_clip(clip_dir, "long_gop")
    name = stream_name()
    pub = publish(clip, nginx.url(name))
    try:
        wait_live(nginx.url(name))
        plan = make_plan(nginx.url("{stream_id}"), stream_id=name, formats=("flv", "mp4"))
        r = running(plan)
        r.events.wait(lambda e: len(e.files("mp4")) >= 2, timeout=30)
        assert r.stop() == "ended"
    finally:
        pub.stop()
    idx = PacketIndex.of(clip)
    for fmt in ("flv", "mp4"):
        files = r.events.files(fmt)
        for i, f in enumerate(files):
            check_file(f, plan.storage_root, AV, last=i == len(files) - 1)  # type: ignore[attr-defined]
        for f in files[:-1]:
            assert 3.9 <= f.duration <= 4.3, (fmt, f.duration)
        res = continuity(idx, [f.path for f in files], AV)
        assert res.lost == res.dup == {"video": 0, "audio": 0}


@pytest.mark.nginx
def test_unwritable_storage_fails_the_recording_with_the_reason(
    nginx: NginxRtmp,
    av_clip: Path,
    tmp_path: Path,
    make_plan: Callable[..., object],
    running: Callable[..., Running],
) -> None:
    """A destination error is not retried like a source error: the recording fails and says
    why."""
    name = stream_name()
    pub = publish(av_clip, nginx.url(name))
    try:
        wait_live(nginx.url(name))
        root = tmp_path / "not-a-folder"
        root.write_text("x")
        plan = make_plan(nginx.url("{stream_id}"), stream_id=name, storage_root=root)
        r = running(plan)
        assert r.join(timeout=15) == "failed"
    finally:
        pub.stop()
    state, detail = r.events.states[-1]
    assert state == "failed"
    assert "Error" in detail
    assert r.events.closed == []
