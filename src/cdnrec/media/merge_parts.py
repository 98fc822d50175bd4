"""What a merge needs to know about each input (one demux pass), and opening its output."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

MICRO = Fraction(1, 1_000_000)
"""A time base for a stream that names none (FFmpeg's own AV_TIME_BASE)."""


class MergeError(Exception):
    """A merge that cannot be done; `bad_input` when an input is the cause (not us)."""

    def __init__(self, message: str, *, bad_input: bool = False) -> None:
        super().__init__(message)
        self.bad_input = bad_input


class SpanError(MergeError):
    """A requested crop that holds no media (it starts after the input ends): the request's fault."""

    def __init__(self, message: str) -> None:
        super().__init__(message, bad_input=True)


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


class Extent:
    """How long a part lasts in the output: the longest of its streams, each measured from its
    own first timestamp (a B-frame delay or AAC priming does not leave a gap at the next joint).
    """

    def __init__(self) -> None:
        self._first: dict[Any, float] = {}
        self._end: dict[Any, float] = {}

    def add(self, stream: Any, start: float, end: float) -> None:
        """A packet or frame of `stream` covering [start, end) seconds."""
        self._first[stream] = min(self._first.get(stream, start), start)
        self._end[stream] = max(self._end.get(stream, end), end)

    @property
    def length(self) -> float:
        """Seconds the part takes (0 when nothing was added)."""
        return max((self._end[s] - self._first[s] for s in self._end), default=0.0)


def _params(stream: Any) -> tuple[Any, ...]:
    ctx = stream.codec_context
    extradata = bytes(ctx.extradata or b"")
    if stream.type == "video":
        fmt = ctx.format.name if ctx.format is not None else ""
        return (ctx.width, ctx.height, fmt, extradata)
    return (
        ctx.sample_rate,
        ctx.layout.nb_channels,
        ctx.format.name if ctx.format else "",
        extradata,
    )


def scan(path: Path, *, packets: bool = True) -> Scan:
    """Describe `path`: from its headers, and (with `packets`) from one demux pass (no decoding)
    that finds its exact start, length and keyframes, which cropping needs."""
    fmt = "mp3" if path.suffix == ".mp3" else None
    with av.open(str(path), format=fmt) as c:
        media = [s for s in c.streams if s.type in ("video", "audio")]
        video = next((s for s in media if s.type == "video"), None)
        facts = tuple(
            StreamFacts(s.index, s.type, s.codec_context.codec.canonical_name, _params(s))
            for s in media
        )
        if not packets and facts and c.start_time is not None:
            rate = video.average_rate if video is not None else None
            return Scan(
                path=path,
                streams=facts,
                origin=c.start_time / 1_000_000,
                duration=float("inf"),
                keyframes=(),
                frame_duration=float(1 / rate) if rate else 0.0,
            )
        first = float("inf")
        last = float("-inf")
        keys: list[float] = []
        frame = 0.0
        ticks = {s.index: float(s.time_base or MICRO) for s in media}
        video_index = video.index if video is not None else -1
        for pkt in c.demux(media):
            if pkt.dts is None or pkt.size == 0:
                continue
            tb = ticks[pkt.stream.index]
            t = (pkt.pts if pkt.pts is not None else pkt.dts) * tb
            first = min(first, t)
            d = (pkt.duration or 0) * tb
            last = max(last, t + d)
            if pkt.stream.index == video_index:
                frame = frame or d
                if pkt.is_keyframe:
                    keys.append(t)
    if not facts or first == float("inf"):
        raise ValueError("no audio or video packets")
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
