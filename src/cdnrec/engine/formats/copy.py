"""FLV, MP4 and ADTS-AAC files with codecs copied, split every interval."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from cdnrec.engine.formats.base import (
    AUDIO,
    VIDEO,
    Inputs,
    Output,
    WriterContext,
    WriterError,
    buffer_size,
    finish_file,
)
from cdnrec.engine.layout import PartialInfo

# Fragmented MP4 with ~1 s fragments: a kill -9 loses at most the fragment being built.
_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "1000000"}
_MUX = {"flv": ("flv", {}), "mp4": ("mp4", _MP4), "aac": ("adts", {})}
_NO_TS = -(1 << 62)


class CopyWriter:
    """Copies packets into files of one container format, split by ``interval`` seconds.

    A file containing video starts on a video keyframe and is split on the first keyframe at
    or after its deadline; an audio-only file is split at the first packet past its deadline.
    Each file's timestamps start at 0.
    """

    def __init__(self, ctx: WriterContext, fmt: str, interval: float) -> None:
        self.format = fmt
        self.ctx = ctx
        self.interval = interval
        self.muxer, self.options = _MUX[fmt]
        self.audio_only = fmt == "aac"
        self.inputs: Inputs | None = None
        self.out: Output | None = None
        self.info: PartialInfo | None = None
        self.takes = [not self.audio_only, True]
        self.split_kind = VIDEO
        self.split_at = 0
        self.base = [0, 0]
        self.last = [_NO_TS, _NO_TS]
        self.end = [0, 0]
        self.ostreams: list[Any] = [None, None]
        self.mux: Any = None
        self.tb = [Fraction(1, 1000), Fraction(1, 1000)]
        self.begin_t = 0.0
        self.gaps: list[tuple[float, float]] = []
        self.codecs: tuple[str, ...] = ()
        self.signature: tuple[Any, ...] = ()

    def configure(self, inputs: Inputs) -> None:
        """Use a new pull's streams; a codec change starts a new file."""
        sig = (inputs.signature(VIDEO) if self.takes[VIDEO] else (), inputs.signature(AUDIO))
        if self.out is not None and sig != self.signature:
            self.close()
        self.signature = sig
        if self.out is not None and self.inputs is not None:
            # Same codecs, maybe another time base: keep the file's origin in seconds.
            for k in (VIDEO, AUDIO):
                old, new = self.inputs.tb[k], inputs.tb[k]
                if old != new:
                    self.base[k] = round(self.base[k] * old / new)
                    self.last[k] = round(self.last[k] * old / new)
                    self.end[k] = round(self.end[k] * old / new)
            self.split_at = round((self.begin_t + self.interval) / inputs.tb[self.split_kind])
        self.inputs = inputs
        self.tb = inputs.tb
        has_video = self.takes[VIDEO] and inputs.streams[VIDEO] is not None
        self.split_kind = VIDEO if has_video else AUDIO

    def _open(self, dts: int, kind: int) -> None:
        inputs = self.inputs
        assert inputs is not None
        t = float(dts * inputs.tb[kind])
        kinds = tuple(k for k in (VIDEO, AUDIO) if self.takes[k] and inputs.streams[k] is not None)
        info = self.ctx.open_partial(self.format, self.ctx.wall_ms(t))
        try:
            out = Output(info.path, self.muxer, self.options, buffer_size(inputs, kinds))
            self.ostreams = [None, None]
            for k in kinds:
                self.ostreams[k] = inputs.add_output_stream(out.c, k)
        except Exception as e:
            raise WriterError(f"{self.format}: cannot open {info.path}: {e}") from e
        self.out, self.info, self.begin_t = out, info, t
        self.mux, self.tb = out.c.mux_one, inputs.tb
        self.codecs = tuple(str(inputs.codec(k)) for k in kinds)
        for k in (VIDEO, AUDIO):
            self.base[k] = round(t / inputs.tb[k])
            self.last[k] = -1
            self.end[k] = 0
        self.split_at = round((t + self.interval) / inputs.tb[self.split_kind])
        self.gaps = []

    def write(self, pkt: Any, kind: int, dts: int, pts: int, dur: int, key: bool) -> None:
        """Mux one packet, starting or splitting files as needed."""
        if not self.takes[kind]:
            return
        if self.out is None:
            if kind != self.split_kind or not key:
                return  # a file starts on a keyframe of its leading stream
            self._open(dts, kind)
        elif kind == self.split_kind and key and dts >= self.split_at:
            self.close()
            self._open(dts, kind)
        base = self.base[kind]
        d = dts - base
        p = pts - base
        last = self.last[kind]
        if d <= last:  # keep dts strictly increasing inside the file
            p += last + 1 - d
            d = last + 1
        self.last[kind] = d
        self.end[kind] = d + (dur if dur > 0 else d - last)
        pkt.stream = self.ostreams[kind]
        pkt.time_base = self.tb[kind]  # another writer may have rebased the packet
        pkt.dts = d
        pkt.pts = p
        pkt.duration = dur
        try:
            self.mux(pkt)
        except Exception as e:
            raise WriterError(f"{self.format}: {type(e).__name__}: {e}") from e

    def gap(self, at: float, length: float) -> None:
        """Record a resumed interruption in the current file."""
        if self.out is not None:
            self.gaps.append((round(at - self.begin_t, 3), round(length, 3)))

    def duration(self) -> float:
        """Media duration of the current file from its timestamps."""
        assert self.inputs is not None
        return max(
            float(max(self.end[k], self.last[k]) * self.inputs.tb[k])
            for k in (VIDEO, AUDIO)
            if self.takes[k] and self.inputs.streams[k] is not None
        )

    def close(self) -> None:
        """Close the current file and announce it."""
        if self.out is None or self.info is None:
            return
        out, info, self.out, self.info = self.out, self.info, None, None
        duration = self.duration()
        try:
            out.close()
        except Exception as e:
            raise WriterError(f"{self.format}: closing {info.path}: {e}") from e
        finish_file(
            self.ctx,
            info,
            end_ms=self.ctx.wall_ms(self.begin_t + duration),
            duration=duration,
            codecs=self.codecs,
            gaps=tuple(self.gaps),
        )
