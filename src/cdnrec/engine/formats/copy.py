"""FLV, MP4 and ADTS-AAC files with codecs copied, split every interval."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from cdnrec.engine.formats.base import (
    AUDIO,
    VIDEO,
    Inputs,
    Output,
    Timeline,
    WriterContext,
    WriterError,
    as_av,
    buffer_size,
)
from cdnrec.engine.formats.flvtag import TagFile
from cdnrec.engine.layout import PartialInfo

# Fragmented MP4 with ~1 s fragments: a kill -9 loses at most the fragment being built.
_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "1000000"}
_MUX = {"flv": ("flv", {}), "mp4": ("mp4", _MP4), "aac": ("adts", {})}
_LATE = 1.0  # s: how long a finished file waits for packets older than the split


class _File(Timeline):
    """One output file: its container, its time origin and what has been written."""

    def __init__(
        self, w: CopyWriter, inputs: Inputs, kinds: tuple[int, ...], t: float, bufsize: int
    ) -> None:
        self.info: PartialInfo = w.ctx.open_partial(w.format, w.ctx.wall_ms(t))
        try:
            self.out = Output(self.info.path, w.muxer, w.options, bufsize)
            self.ostreams: list[Any] = [None, None]
            for k in kinds:
                self.ostreams[k] = inputs.add_output_stream(self.out.c, k)
        except Exception as e:
            raise WriterError(f"{w.format}: cannot open {self.info.path}: {e}") from e
        self.mux = self.out.c.mux_one
        super().__init__(w.format, inputs, kinds, t)

    def write(self, pkt: Any, kind: int, dts: int, pts: int, dur: int, tb: Any, nudge: int) -> None:
        """Mux a packet with timestamps relative to this file's start."""
        base = self.base[kind]
        d = dts - base
        p = pts - base
        last = self.last[kind]
        if d <= last:  # keep dts strictly increasing inside the file
            p += last + nudge - d
            d = last + nudge
        self.last[kind] = d
        self.end[kind] = d + (dur if dur > 0 else d - last)
        pkt = as_av(pkt)
        pkt.stream = self.ostreams[kind]
        pkt.time_base = tb  # another writer may have rebased the packet
        pkt.dts = d
        pkt.pts = p
        pkt.duration = dur
        try:
            self.mux(pkt)
        except Exception as e:
            raise WriterError(f"{self.format}: {type(e).__name__}: {e}") from e

    def flush(self) -> None:
        """FFmpeg's I/O buffer is written out when full (about 0.5 s of media); the file's older
        pages leave the page cache as it grows."""
        self.out.release_written()

    def rebase(self, old: list[Fraction], new: list[Fraction]) -> None:
        """Express this file's counters in a new pull's time bases."""
        for k in (VIDEO, AUDIO):
            if old[k] != new[k]:
                self.base[k] = round(self.base[k] * old[k] / new[k])
                self.last[k] = round(self.last[k] * old[k] / new[k])
                self.end[k] = round(self.end[k] * old[k] / new[k])

    def finish(self, ctx: WriterContext, tb: list[Fraction]) -> None:
        """Close the container, move the file to its final name and announce it."""
        duration = self.duration(tb)
        try:
            self.out.close()
        except Exception as e:
            raise WriterError(f"{self.format}: closing {self.info.path}: {e}") from e
        self.announce(ctx, self.info, duration)


class CopyWriter:
    """Copies packets into files of one container format, split by ``interval`` seconds.

    A file containing video starts on a video keyframe and is split on the first keyframe at
    or after its deadline; an audio-only file is split at the first packet past its deadline.
    Audio that arrives after the split keyframe but is older than it (MPEG-TS sources
    interleave loosely) still goes to the previous file, which stays open until the audio
    passes the split point. Each file's timestamps start at 0.
    """

    def __init__(self, ctx: WriterContext, fmt: str, interval: float) -> None:
        self.format = fmt
        self.ctx = ctx
        self.interval = interval
        self.muxer, self.options = _MUX[fmt]
        self.takes = [fmt != "aac", True]
        self.inputs: Inputs | None = None
        self.cur: _File | TagFile | None = None
        self.prev: _File | TagFile | None = None
        self.file_class: type[_File] | type[TagFile] = _File
        self.prev_end = [0, 0]
        self.prev_limit = 0
        self.split_kind = VIDEO
        self.split_at = 0
        self.tb = [Fraction(1, 1000), Fraction(1, 1000)]
        self.nudge = [1, 1]
        self.kinds: tuple[int, ...] = ()
        self.signature: tuple[Any, ...] = ()

    def configure(self, inputs: Inputs) -> None:
        """Use a new pull's streams; a codec change starts a new file."""
        self._finish_prev()
        tags = self.format == "flv" and inputs.flv is not None
        self.file_class = TagFile if tags else _File
        sig = (
            inputs.signature(VIDEO) if self.takes[VIDEO] else (),
            inputs.signature(AUDIO),
            tags,
        )
        if self.cur is not None and sig != self.signature:
            self.close()
        self.signature = sig
        if self.cur is not None and self.inputs is not None:
            self.cur.rebase(self.inputs.tb, inputs.tb)
        self.inputs = inputs
        self.tb = inputs.tb
        self.nudge = [max(1, round(Fraction(1, 1000) / tb)) for tb in inputs.tb]
        self.kinds = tuple(
            k for k in (VIDEO, AUDIO) if self.takes[k] and inputs.streams[k] is not None
        )
        self.split_kind = VIDEO if VIDEO in self.kinds else AUDIO
        if self.cur is not None:
            self.split_at = round((self.cur.begin_t + self.interval) / self.tb[self.split_kind])

    def _open(self, dts: int, kind: int) -> _File | TagFile:
        assert self.inputs is not None
        t = float(dts * self.tb[kind])
        f = self.file_class(self, self.inputs, self.kinds, t, buffer_size(self.inputs, self.kinds))
        self.split_at = round((t + self.interval) / self.tb[self.split_kind])
        self.cur = f
        return f

    def _split(self, dts: int, kind: int) -> _File | TagFile:
        old = self.cur
        assert old is not None
        self._finish_prev()
        t = float(dts * self.tb[kind])
        self.cur = None
        if len(self.kinds) > 1:
            self.prev = old
            self.prev_end = [round(t / tb) for tb in self.tb]
            self.prev_limit = dts + round(_LATE / self.tb[kind])
        else:
            old.finish(self.ctx, self.tb)
        return self._open(dts, kind)

    def _finish_prev(self) -> None:
        prev, self.prev = self.prev, None
        if prev is not None:
            prev.finish(self.ctx, self.tb)

    def write(self, pkt: Any, kind: int, dts: int, pts: int, dur: int, key: bool) -> None:
        """Mux one packet, starting or splitting files as needed."""
        if not self.takes[kind]:
            return
        cur = self.cur
        if cur is None:
            if kind != self.split_kind or not key:
                return  # a file starts on a keyframe of its leading stream
            cur = self._open(dts, kind)
        elif kind == self.split_kind:
            if key and dts >= self.split_at:
                cur = self._split(dts, kind)
            elif self.prev is not None and dts >= self.prev_limit:
                self._finish_prev()  # the other streams are not coming back to the old file
        elif self.prev is not None:
            if dts < self.prev_end[kind]:
                self.prev.write(pkt, kind, dts, pts, dur, self.tb[kind], self.nudge[kind])
                return
            self._finish_prev()
        cur.write(pkt, kind, dts, pts, dur, self.tb[kind], self.nudge[kind])

    def gap(self, at: float, length: float) -> None:
        """Record a resumed interruption in the current file."""
        if self.cur is not None:
            self.cur.gaps.append((round(at - self.cur.begin_t, 3), round(length, 3)))

    def flush(self) -> None:
        """Write out what the open files buffer (FFmpeg-muxed files flush on their own)."""
        for f in (self.prev, self.cur):
            if f is not None:
                f.flush()

    def close(self) -> None:
        """Close and announce the current file (and one still taking late packets)."""
        self._finish_prev()
        cur, self.cur = self.cur, None
        if cur is not None:
            cur.finish(self.ctx, self.tb)
