"""What a merge needs to know about each input (one demux pass), and opening its output."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av


class MergeError(Exception):
    """A merge that cannot be done; `bad_input` when an input is the cause (not us)."""

    def __init__(self, message: str, *, bad_input: bool = False) -> None:
        super().__init__(message)
        self.bad_input = bad_input


@dataclass(frozen=True)
class StreamFacts:
    """One audio or video stream of an input and the parameters that must match to copy it."""

    index: int
    type: str
    codec: str
    params: tuple[Any, ...]


@dataclass(frozen=True)
class Scan:
    """An input file: its streams, where its media starts, how long it lasts, its keyframes."""

    path: Path
    streams: tuple[StreamFacts, ...]
    origin: float
    duration: float
    keyframes: tuple[float, ...]
    frame_duration: float

    @property
    def has_video(self) -> bool:
        """Whether the input holds a video stream."""
        return any(x.type == "video" for x in self.streams)

    @property
    def codecs(self) -> tuple[str, ...]:
        """Codec names in stream order."""
        return tuple(x.codec for x in self.streams)

    @property
    def signature(self) -> tuple[Any, ...]:
        """Everything that must be equal for two inputs to be concatenated without re-encoding."""
        return tuple((x.type, x.codec, x.params) for x in self.streams)

    def keyframe_at_or_before(self, t: float) -> float:
        """The last keyframe time (from the input's start) at or before `t`."""
        i = bisect.bisect_right(self.keyframes, t + 1e-6)
        return self.keyframes[i - 1] if i else 0.0


@dataclass(frozen=True)
class Part:
    """An input and the span of it [start, end) seconds (from its start) that goes in the merge."""

    scan: Scan
    start: float
    end: float


def _params(stream: Any) -> tuple[Any, ...]:
    ctx = stream.codec_context
    extradata = bytes(ctx.extradata or b"")
    if stream.type == "video":
        fmt = ctx.format.name if ctx.format is not None else ""
        return (ctx.width, ctx.height, fmt, extradata)
    return (ctx.sample_rate, ctx.layout.nb_channels, ctx.format.name if ctx.format else "", extradata)


def scan(path: Path) -> Scan:
    """Demux `path` once (no decoding) and describe it."""
    fmt = "mp3" if path.suffix == ".mp3" else None
    with av.open(str(path), format=fmt) as c:
        media = [s for s in c.streams if s.type in ("video", "audio")]
        video = next((s for s in media if s.type == "video"), None)
        facts = tuple(
            StreamFacts(s.index, s.type, s.codec_context.codec.canonical_name, _params(s))
            for s in media
        )
        first = float("inf")
        video_first = float("inf")
        last = float("-inf")
        keys: list[float] = []
        frame = 0.0
        for pkt in c.demux(media):
            if pkt.dts is None or pkt.size == 0:
                continue
            tb = pkt.time_base
            t = float((pkt.pts if pkt.pts is not None else pkt.dts) * tb)
            first = min(first, t)
            d = float((pkt.duration or 0) * tb)
            last = max(last, t + d)
            if video is not None and pkt.stream is video:
                video_first = min(video_first, t)
                frame = frame or d
                if pkt.is_keyframe:
                    keys.append(t)
    if not facts or first == float("inf"):
        raise ValueError("no audio or video packets")
    # Time 0 of an input is where its picture starts (AAC priming may start audio a bit earlier).
    if video_first != float("inf"):
        first = video_first
    if video is not None and not frame and video.average_rate:
        frame = float(1 / video.average_rate)
    return Scan(
        path=path,
        streams=facts,
        origin=first,
        duration=max(0.0, last - first),
        keyframes=tuple(sorted(k - first for k in keys)),
        frame_duration=frame,
    )


@contextmanager
def open_output(staging: Path, fmt: str, hls_segment: float) -> Iterator[Any]:
    """An output container at `staging`; for M3U8 a folder with `index.m3u8` and `segments/`."""
    if fmt == "m3u8":
        (staging / "segments").mkdir(parents=True)
        options = {
            "hls_time": str(hls_segment),
            "hls_playlist_type": "vod",
            "hls_list_size": "0",
            "hls_segment_filename": str(staging / "segments" / "%05d.ts"),
            "hls_base_url": "segments/",
        }
        container = av.open(str(staging / "index.m3u8"), "w", format="hls", options=options)
    elif fmt == "mp4":
        container = av.open(str(staging), "w", format="mp4", options={"movflags": "+faststart"})
    else:
        container = av.open(str(staging), "w", format="mp3")
    with container:
        yield container
