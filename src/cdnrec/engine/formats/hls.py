"""M3U8: one VOD playlist per recording over MPEG-TS segments split at keyframes."""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

from cdnrec.engine.formats.base import (
    AUDIO,
    VIDEO,
    Inputs,
    Output,
    WriterContext,
    WriterError,
    as_av,
    buffer_size,
)
from cdnrec.engine.formats.pages import release_pages
from cdnrec.engine.layout import Layout, PartialInfo, remove_partial, segments_dir
from cdnrec.engine.plan import ClosedFile

PLAYLIST = "index.m3u8"
_NO_TS = -(1 << 62)


@dataclass(frozen=True)
class Segment:
    """One entry of a playlist."""

    name: str
    duration: float
    discontinuity: bool = False


def render_playlist(segments: list[Segment], ended: bool, prefix: str = "") -> str:
    """The text of an HLS media playlist over ``segments`` (URIs are ``prefix + name``)."""
    target = max([1, *(math.ceil(s.duration) for s in segments)])
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        f"#EXT-X-PLAYLIST-TYPE:{'VOD' if ended else 'EVENT'}",
    ]
    for s in segments:
        if s.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines += [f"#EXTINF:{s.duration:.3f},", prefix + s.name]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def parse_playlist(text: str) -> list[Segment]:
    """Segments of a playlist written by ``render_playlist``."""
    out, dur, disc = [], 0.0, False
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            dur = float(line[8:].split(",")[0])
        elif line == "#EXT-X-DISCONTINUITY":
            disc = True
        elif line and not line.startswith("#"):
            out.append(Segment(line.rsplit("/", 1)[-1], dur, disc))
            disc = False
    return out


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def finalize_hls(
    layout: Layout,
    info: PartialInfo,
    segments: list[Segment],
    end_ms: int,
    codecs: tuple[str, ...],
    gaps: tuple[tuple[float, float], ...],
    repaired: bool,
) -> ClosedFile:
    """Move a partial HLS folder to its final place under a VOD playlist with ENDLIST."""
    final = layout.reserve_final(info, end_ms)
    segdir = segments_dir(final)
    (info.path / PLAYLIST).unlink(missing_ok=True)
    for extra in info.path.iterdir():
        if extra.name not in {s.name for s in segments}:
            extra.unlink()
    text = render_playlist(segments, ended=True, prefix=segdir.name + "/")
    tmp = final.with_name(final.name + ".tmp")
    tmp.write_text(text)
    shutil.move(str(info.path), str(segdir))
    os.replace(tmp, final)
    remove_partial(info)
    size = final.stat().st_size + sum(p.stat().st_size for p in segdir.iterdir())
    return ClosedFile(
        format="m3u8",
        path=final,
        key=layout.key(final),
        begin_ms=info.begin_ms,
        end_ms=end_ms,
        duration=round(sum(s.duration for s in segments), 3),
        size=size,
        codecs=codecs,
        gaps=gaps,
        repaired=repaired,
    )


class HlsWriter:
    """Writes one playlist per recording; each segment is its own MPEG-TS file."""

    format = "m3u8"

    def __init__(self, ctx: WriterContext, segment: float) -> None:
        self.ctx = ctx
        self.segment = segment
        self.inputs: Inputs | None = None
        self.info: PartialInfo | None = None
        self.segments: list[Segment] = []
        self.out: Output | None = None
        self.ostreams: list[Any] = [None, None]
        self.mux: Any = None
        self.tb = [Fraction(1, 1000), Fraction(1, 1000)]
        self.nudge = [1, 1]
        self.seg_t = 0.0
        self.split_kind = VIDEO
        self.split_at = 0
        self.last = [_NO_TS, _NO_TS]
        self.end = [0, 0]
        self.base = [0, 0]
        self.discontinuity = False
        self.gaps: list[tuple[float, float]] = []
        self.begin_t = 0.0
        self.codecs: tuple[str, ...] = ()
        self.signature: tuple[Any, ...] = ()

    def configure(self, inputs: Inputs) -> None:
        """A new pull: a codec or time-base change continues after a discontinuity."""
        sig = (inputs.signature(VIDEO), inputs.signature(AUDIO))
        if self.info is not None and sig != self.signature:
            self._close_segment()
            self.discontinuity = True
            self.last = [_NO_TS, _NO_TS]
        if self.info is not None and self.inputs is not None:
            for k in (VIDEO, AUDIO):  # keep the playlist's origin over a time-base change
                old, new = self.inputs.tb[k], inputs.tb[k]
                if old != new:
                    self.base[k] = round(self.base[k] * old / new)
                    if self.last[k] != _NO_TS:
                        self.last[k] = round(self.last[k] * old / new)
        self.signature = sig
        self.inputs = inputs
        self.nudge = [max(1, round(Fraction(1, 1000) / tb)) for tb in inputs.tb]
        self.split_kind = VIDEO if inputs.streams[VIDEO] is not None else AUDIO
        self.kinds = tuple(k for k in (VIDEO, AUDIO) if inputs.streams[k] is not None)

    def _open_segment(self, dts: int, kind: int) -> None:
        inputs = self.inputs
        assert inputs is not None
        t = float(dts * inputs.tb[kind])
        if self.info is None:
            self.info = self.ctx.open_partial("m3u8", self.ctx.wall_ms(t))
            self.info.path.mkdir(parents=True, exist_ok=True)
            self.segments, self.gaps, self.begin_t = [], [], t
            self.last = [_NO_TS, _NO_TS]
            self.base = [round(t / tb) for tb in inputs.tb]
            self.codecs = tuple(str(inputs.codec(k)) for k in self.kinds)
        path = self.info.path / f"{len(self.segments):05d}.ts"
        try:
            out = Output(path, "mpegts", {}, buffer_size(inputs, self.kinds))
            self.ostreams = [None, None]
            for k in self.kinds:
                self.ostreams[k] = inputs.add_output_stream(out.c, k)
        except Exception as e:
            raise WriterError(f"m3u8: cannot open {path}: {e}") from e
        self.out, self.seg_t = out, t - self.begin_t
        self.mux, self.tb = out.c.mux_one, inputs.tb
        self.end = [0, 0]
        self.split_at = round((t + self.segment) / inputs.tb[self.split_kind])

    def _close_segment(self) -> None:
        if self.out is None or self.info is None or self.inputs is None:
            return
        out, self.out = self.out, None
        try:
            out.close()
        except Exception as e:
            raise WriterError(f"m3u8: closing {out.path}: {e}") from e
        self._release(out.path)
        end = max(float(self.end[k] * self.inputs.tb[k]) for k in self.kinds)
        self.segments.append(Segment(out.path.name, max(0.0, end - self.seg_t), self.discontinuity))
        self.discontinuity = False
        write_atomic(self.info.path / PLAYLIST, render_playlist(self.segments, ended=False))

    def _release(self, closed: Path) -> None:
        """Let a closed segment and the one before it leave the page cache (the first ask
        writes a segment back, the second drops it), on the recording's own thread."""
        self.ctx.defer(partial(release_pages, closed))
        if self.segments:
            self.ctx.defer(partial(release_pages, closed.with_name(self.segments[-1].name)))

    def write(self, pkt: Any, kind: int, dts: int, pts: int, dur: int, key: bool) -> None:
        """Mux a packet into the current segment, starting a new one at a due keyframe."""
        if self.out is None:
            if kind != self.split_kind or not key:
                return
            self._open_segment(dts, kind)
        elif kind == self.split_kind and key and dts >= self.split_at:
            self._close_segment()
            self._open_segment(dts, kind)
        base = self.base[kind]
        dts -= base
        pts -= base
        last = self.last[kind]
        if dts <= last:
            pts += last + self.nudge[kind] - dts
            dts = last + self.nudge[kind]
        self.last[kind] = dts
        self.end[kind] = dts + (dur if dur > 0 else min(dts - last, 1 << 30))
        pkt = as_av(pkt)
        pkt.stream = self.ostreams[kind]
        pkt.time_base = self.tb[kind]  # another writer may have rebased the packet
        pkt.dts = dts
        pkt.pts = pts
        pkt.duration = dur
        try:
            self.mux(pkt)
        except Exception as e:
            raise WriterError(f"m3u8: {type(e).__name__}: {e}") from e

    def gap(self, at: float, length: float) -> None:
        """A resumed interruption: the next segment starts after a discontinuity."""
        if self.info is not None:
            self._close_segment()
            self.discontinuity = True
            self.gaps.append((round(sum(s.duration for s in self.segments), 3), round(length, 3)))

    def flush(self) -> None:
        """FFmpeg's I/O buffer is written out when full (about 0.5 s of media); the segment's
        older pages leave the page cache as it grows."""
        if self.out is not None:
            self.out.release_written()

    def close(self) -> None:
        """Close the last segment and finish the playlist with ENDLIST."""
        self._close_segment()
        if self.info is None:
            return
        info, self.info = self.info, None
        segments = [s for s in self.segments if (info.path / s.name).stat().st_size > 0]
        if not segments:
            shutil.rmtree(info.path, ignore_errors=True)
            remove_partial(info)
            return
        duration = sum(s.duration for s in segments)
        closed = finalize_hls(
            self.ctx.layout,
            info,
            segments,
            self.ctx.wall_ms(self.begin_t + duration),
            self.codecs,
            tuple(self.gaps),
            repaired=False,
        )
        self.ctx.listener.on_file_closed(closed)
