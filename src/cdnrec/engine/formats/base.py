"""The writer interface and what every writer shares: inputs, output files, finishing files."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av

from cdnrec.engine.flv.tags import Tag
from cdnrec.engine.formats.pages import PageRelease
from cdnrec.engine.layout import Layout, PartialInfo, remove_partial
from cdnrec.engine.plan import ClosedFile, OpenFile, RecordingListener

VIDEO, AUDIO = 0, 1
"""Kinds of media: index into ``Inputs.streams``."""


class WriterError(Exception):
    """An output could not be written (disk full, read-only folder, muxer refused a packet)."""


@dataclass
class FlvFeed:
    """What a pull of FLV tags adds to its inputs: sequence headers and ``onMetaData``."""

    config: list[Tag | None]
    """The sequence header tag of each kind (AVC/HEVC/AAC), written at the start of each file."""
    meta: dict[str, Any]


@dataclass
class Inputs:
    """The video and audio stream of the current pull (either may be missing)."""

    streams: list[Any]
    tb: list[Fraction]
    extradata: list[bytes | None]
    """Codec config to use instead of the stream's (AAC converted from ADTS)."""
    flv: FlvFeed | None = None
    """Set when the packets are FLV tags (a native pull) rather than PyAV packets."""
    keep: Any = None
    """Whatever owns ``streams`` (a container) and must live as long as they do."""

    @classmethod
    def of(cls, video: Any, audio: Any) -> Inputs:
        """Inputs from PyAV streams (``None`` for a missing kind)."""
        tbs = [
            Fraction(s.time_base) if s is not None else Fraction(1, 1000) for s in (video, audio)
        ]
        return cls([video, audio], tbs, [None, None])

    @classmethod
    def detached(cls, video: Any, audio: Any) -> Inputs:
        """Inputs copying the parameters of a container's streams, so that the container can be
        closed: an open input holds its probing decoder and frame buffers (about 2.4 MB of a
        720p stream). The copies are streams of an output container that is never written."""
        holder: Any = av.open("null", "w", format="null")
        copies = [
            None if s is None else holder.add_stream_from_template(s, opaque=True)
            for s in (video, audio)
        ]
        inputs = cls.of(*copies)
        inputs.keep = holder
        return inputs

    def add_output_stream(self, container: Any, kind: int) -> Any:
        """A stream in output ``container`` copying input stream ``kind``."""
        ostream = container.add_stream_from_template(self.streams[kind])
        if self.extradata[kind] is not None:
            ostream.codec_context.extradata = self.extradata[kind]
        return ostream

    def codec(self, kind: int) -> str | None:
        """Codec name of ``kind`` or None."""
        s = self.streams[kind]
        return None if s is None else str(s.codec_context.codec.canonical_name)

    def signature(self, kind: int) -> tuple[Any, ...]:
        """What must not change for a file to continue over a reconnect."""
        s = self.streams[kind]
        if s is None:
            return ()
        p = s.codec_context
        if kind == VIDEO:
            return (p.name, p.width, p.height, bytes(p.extradata or b""))
        config = self.extradata[AUDIO] or bytes(p.extradata or b"")
        return (p.name, p.sample_rate, p.channels, config)


def _now(work: Callable[[], None]) -> None:
    work()


@dataclass(frozen=True)
class WriterContext:
    """What writers of one recording share: naming, reporting and the wall clock."""

    layout: Layout
    recording_id: str
    app_id: int
    stream_id: str
    listener: RecordingListener
    wall_ms: Callable[[float], int]
    """Maps recording time (s) to wall-clock UTC ms."""
    defer: Callable[[Callable[[], None]], None] = _now
    """Runs the finishing of a closed file (rename, checksum, announcement): at once, or later
    on the recording's own thread while a pump thread writes the recording."""

    def open_partial(self, fmt: str, begin_ms: int) -> PartialInfo:
        """Create a new partial of format ``fmt`` and announce it."""
        path = self.layout.partial_path(self.recording_id, fmt, begin_ms)
        while path.exists():
            begin_ms += 1
            path = self.layout.partial_path(self.recording_id, fmt, begin_ms)
        info = PartialInfo(
            path=path,
            format=fmt,
            app_id=self.app_id,
            stream_id=self.stream_id,
            begin_ms=begin_ms,
            recording_id=self.recording_id,
            path_template=self.layout.path_template,
        )
        self.layout.register_partial(info)
        self.listener.on_file_opened(OpenFile(fmt, path, begin_ms))
        return info


def as_av(pkt: Any) -> Any:
    """The PyAV packet of ``pkt``: itself, or the packet made once from an FLV tag."""
    if type(pkt) is not Tag:
        return pkt
    p = pkt.av
    if p is None:
        p = pkt.av = av.Packet(pkt.body[pkt.payload_offset() :])
        p.is_keyframe = pkt.is_keyframe()
    return p


class Writer(Protocol):
    """Writes one output format of a recording, file after file."""

    format: str

    def configure(self, inputs: Inputs) -> None:
        """A new pull starts; closes the current file if its codecs cannot continue."""
        ...

    def write(self, pkt: Any, kind: int, dts: int, pts: int, dur: int, key: bool) -> None:
        """Write a packet; ``dts``/``pts``/``dur`` are recording-time ticks of the input time base."""
        ...

    def gap(self, at: float, length: float) -> None:
        """A resumed interruption of ``length`` s happened at recording time ``at``."""
        ...

    def close(self) -> None:
        """Close and announce the current file; the next packet starts a new one."""
        ...

    def flush(self) -> None:
        """Hand what is buffered to the OS: the pull is about to wait for more packets."""
        ...


class Timeline:
    """Where one output file stands: its start in recording time and what it holds so far.

    ``base`` is the file's origin in input ticks per kind; ``last``/``end`` the last dts and the
    end of the last packet written, relative to it.
    """

    def __init__(self, fmt: str, inputs: Inputs, kinds: tuple[int, ...], t: float) -> None:
        self.format = fmt
        self.kinds = kinds
        self.begin_t = t
        self.base = [round(t / tb) for tb in inputs.tb]
        self.last = [-1, -1]
        self.end = [0, 0]
        self.gaps: list[tuple[float, float]] = []
        self.codecs = tuple(str(inputs.codec(k)) for k in kinds)

    def duration(self, tb: list[Fraction]) -> float:
        """Seconds from the file's start to the end of its last packet."""
        return max(float(max(self.end[k], self.last[k]) * tb[k]) for k in self.kinds)

    def announce(self, ctx: WriterContext, info: PartialInfo, duration: float) -> None:
        """Move the closed file ``info`` to its final name and announce it."""
        finish_file(
            ctx,
            info,
            end_ms=ctx.wall_ms(self.begin_t + duration),
            duration=duration,
            codecs=self.codecs,
            gaps=tuple(self.gaps),
        )


def buffer_size(inputs: Inputs, kinds: tuple[int, ...]) -> int:
    """About half a second of bytes: what a kill -9 may lose from the I/O buffer."""
    rate = 0
    for k in kinds:
        s = inputs.streams[k]
        if s is not None:
            br = int(s.codec_context.bit_rate or 0)
            rate += br if br > 0 else (256_000 if k == VIDEO else 64_000)
    return max(4096, min(256 * 1024, rate // 16))


class Output:
    """One output container written through our own file object.

    FFmpeg's file protocol buffers 256 KiB, which is minutes of audio; here the I/O buffer is
    sized to about half a second of media and FFmpeg writes it out whenever it fills. What was
    written leaves the page cache a little behind (``release_written``, decision 0011).
    """

    def __init__(self, path: Path, fmt: str, options: dict[str, str], bufsize: int) -> None:
        self.path = path
        self.fh: io.FileIO = open(path, "w+b", buffering=0)  # noqa: SIM115 - closed in close()
        opts = {"flush_packets": "0", **options}
        try:
            self.c: Any = av.open(
                self.fh, "w", format=fmt, container_options=opts, buffer_size=bufsize
            )
        except Exception:
            self.fh.close()
            raise
        self.pages = PageRelease(self.fh.fileno())

    def release_written(self) -> None:
        """Let the older part of what FFmpeg wrote leave the page cache."""
        self.pages.grown(self.fh.tell())

    def close(self) -> None:
        """Write the trailer and close the file."""
        try:
            self.c.close()
        finally:
            self.fh.close()


def finish_file(
    ctx: WriterContext,
    info: PartialInfo,
    *,
    end_ms: int,
    duration: float,
    codecs: tuple[str, ...],
    gaps: tuple[tuple[float, float], ...] = (),
    repaired: bool = False,
) -> None:
    """Move a closed single-file partial to its final path and announce it (``ctx.defer``: on
    the recording's own thread, not on a pump thread)."""

    def finish() -> None:
        closed = finalize(ctx.layout, info, end_ms, duration, codecs, gaps, repaired)
        ctx.listener.on_file_closed(closed)

    ctx.defer(finish)


def finalize(
    layout: Layout,
    info: PartialInfo,
    end_ms: int,
    duration: float,
    codecs: tuple[str, ...],
    gaps: tuple[tuple[float, float], ...],
    repaired: bool,
) -> ClosedFile:
    """Rename a complete single-file partial to its final name; returns its record."""
    final = layout.reserve_final(info, end_ms)
    os.replace(info.path, final)
    remove_partial(info)
    return ClosedFile(
        format=info.format,
        path=final,
        key=layout.key(final),
        begin_ms=info.begin_ms,
        end_ms=end_ms,
        duration=round(duration, 3),
        size=final.stat().st_size,
        codecs=codecs,
        gaps=gaps,
        repaired=repaired,
    )
