"""Fixtures of the engine tests: clips, live origins, a recording listener, recorder threads."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.media import PacketIndex, make_clip
from tests.support.origins import NginxRtmp, nginx_missing

from cdnrec.engine.plan import ClosedFile, OpenFile, RecordingPlan
from cdnrec.engine.pump import Pumps
from cdnrec.engine.recorder import Recorder

_ids = itertools.count()

PUMPS = Pumps(2)
"""Pump threads shared by the recorders of every test, as a service shares them."""


@pytest.fixture(scope="session")
def av_clip(clip_dir: Path) -> Path:
    """H.264 + AAC clip, 12 s, 1 s GOP."""
    return make_clip(clip_dir, "av")


@pytest.fixture(scope="session")
def audio_clip(clip_dir: Path) -> Path:
    """AAC-only clip."""
    return make_clip(clip_dir, "audio")


@pytest.fixture(scope="session")
def video_clip(clip_dir: Path) -> Path:
    """H.264-only clip."""
    return make_clip(clip_dir, "video")


@pytest.fixture(scope="session")
def av_index(av_clip: Path) -> PacketIndex:
    """Packet identities of the A/V clip."""
    return PacketIndex.of(av_clip)


@pytest.fixture(scope="session")
def audio_index(audio_clip: Path) -> PacketIndex:
    """Packet identities of the audio clip."""
    return PacketIndex.of(audio_clip)


@pytest.fixture(scope="session")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxRtmp]:
    """One nginx-rtmp origin for the session; tests use distinct stream names."""
    why = nginx_missing()
    if why:
        pytest.skip(f"NGINX-RTMP TESTS SKIPPED: {why}")
    origin = NginxRtmp(tmp_path_factory.mktemp("nginx"))
    yield origin
    origin.stop()


class Collector:
    """A RecordingListener that keeps every event and lets tests wait for one."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.states: list[tuple[str, str]] = []
        self.opened: list[OpenFile] = []
        self.closed: list[ClosedFile] = []
        self.closed_on: list[str] = []
        """The thread that announced each closed file."""

    def on_state(self, state: str, detail: str = "") -> None:
        """Record a state."""
        with self.cond:
            self.states.append((state, detail))
            self.cond.notify_all()

    def on_file_opened(self, f: OpenFile) -> None:
        """Record an opened file."""
        with self.cond:
            self.opened.append(f)
            self.cond.notify_all()

    def on_file_closed(self, f: ClosedFile) -> None:
        """Record a closed file."""
        with self.cond:
            self.closed.append(f)
            self.closed_on.append(threading.current_thread().name)
            self.cond.notify_all()

    def wait(self, pred: Callable[[Collector], bool], timeout: float = 20.0) -> None:
        """Wait until ``pred(self)`` holds."""
        with self.cond:
            ok = self.cond.wait_for(lambda: pred(self), timeout)
        assert ok, f"timed out; states={self.states} closed={[c.key for c in self.closed]}"

    def state_names(self) -> list[str]:
        """States in order."""
        return [s for s, _ in self.states]

    def files(self, fmt: str) -> list[ClosedFile]:
        """Closed files of ``fmt`` in order of their begin."""
        return sorted((c for c in self.closed if c.format == fmt), key=lambda c: c.begin_ms)


class Running:
    """A recorder running in its own thread, its native pulls read by the shared pump threads
    (``pumps=None``: by that thread)."""

    def __init__(self, plan: RecordingPlan, **kw: Any) -> None:
        self.plan = plan
        self.events = Collector()
        self.recorder = Recorder(plan, self.events, **{"pumps": PUMPS, **kw})
        self.result: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"rec-{plan.recording_id}")
        self.thread.start()

    def _run(self) -> None:
        self.result = self.recorder.run()

    def stop(self, timeout: float = 10.0) -> str:
        """Stop the recorder and wait for run() to return; its result."""
        self.recorder.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "recorder did not return after stop()"
        assert self.result is not None
        return self.result

    def join(self, timeout: float = 30.0) -> str:
        """Wait for run() to return by itself."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "recorder did not end"
        assert self.result is not None
        return self.result


@pytest.fixture
def make_plan(tmp_path: Path) -> Callable[..., RecordingPlan]:
    """Build a plan with test defaults (short interval, small window)."""

    def make(sources: tuple[str, ...] | str, **kw: Any) -> RecordingPlan:
        args: dict[str, Any] = {
            "recording_id": f"rec{next(_ids)}",
            "app_id": 7,
            "stream_id": "s1",
            "sources": (sources,) if isinstance(sources, str) else sources,
            "formats": ("flv",),
            "interval": 2.0,
            "hls_segment": 1.0,
            "resume_window": 5.0,
            "wait_for_stream": False,
            "deadline": None,
            "storage_root": tmp_path / "store",
        }
        args.update(kw)
        return RecordingPlan(**args)

    return make


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    """Start recorders in threads; every one is stopped at teardown."""
    started: list[Running] = []

    def start(plan: RecordingPlan, **kw: Any) -> Running:
        r = Running(plan, **kw)
        started.append(r)
        return r

    yield start
    for r in started:
        r.recorder.stop()
        r.thread.join(10)


def stream_name(prefix: str = "s") -> str:
    """A unique stream name."""
    return f"{prefix}{next(_ids)}_{int(time.time() * 1000) % 100000}"
