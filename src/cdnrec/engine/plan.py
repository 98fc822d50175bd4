"""What a recording is asked to do and what it reports back (the engine's boundary)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

FORMATS = ("m3u8", "flv", "mp4", "aac", "mp3")
"""Every output format the engine can write."""

DEFAULT_PATH_TEMPLATE = "{app_id}/{stream_id}/{date}/{stream_id}_{begin}_{end}.{ext}"
"""Default final-file layout under the storage root; begin/end are UTC unix seconds."""

STATES = ("connecting", "recording", "interrupted", "waiting", "ended", "failed")
"""States a recorder reports through ``RecordingListener.on_state``."""


@dataclass(frozen=True)
class RecordingPlan:
    """An immutable, validated description of one recording task."""

    recording_id: str
    app_id: int
    stream_id: str
    sources: tuple[str, ...]
    formats: tuple[str, ...]
    interval: float
    hls_segment: float
    resume_window: float
    wait_for_stream: bool
    deadline: float | None
    storage_root: Path
    path_template: str = DEFAULT_PATH_TEMPLATE
    native_pull: bool = True
    """Pull plain rtmp:// and http:// FLV sources with cdnrec's own client (False: FFmpeg's)."""

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("a recording needs at least one source")
        if not self.formats or any(f not in FORMATS for f in self.formats):
            raise ValueError(f"formats must be a non-empty subset of {FORMATS}")
        if self.interval <= 0 or self.hls_segment <= 0 or self.resume_window < 0:
            raise ValueError("interval and hls_segment must be > 0, resume_window >= 0")

    def source_urls(self) -> tuple[str, ...]:
        """The source URL templates with the stream ID filled in."""
        return tuple(s.replace("{stream_id}", self.stream_id) for s in self.sources)


@dataclass(frozen=True)
class OpenFile:
    """A file the recorder has started writing (still partial)."""

    format: str
    partial_path: Path
    begin_ms: int


@dataclass(frozen=True)
class ClosedFile:
    """A complete file at its final path, ready to be stored and announced."""

    format: str
    path: Path
    key: str
    begin_ms: int
    end_ms: int
    duration: float
    size: int
    codecs: tuple[str, ...]
    gaps: tuple[tuple[float, float], ...] = ()
    repaired: bool = False


class RecordingListener(Protocol):
    """Receives a recorder's reports; called from the recorder thread, so it must be cheap."""

    def on_state(self, state: str, detail: str = "") -> None:
        """The recorder entered ``state`` (one of ``STATES``)."""

    def on_file_opened(self, f: OpenFile) -> None:
        """A new partial file exists on disk."""

    def on_file_closed(self, f: ClosedFile) -> None:
        """A file is complete at its final path."""
