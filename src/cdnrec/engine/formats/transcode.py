"""Audio-only files re-encoded from the source audio: MP3 always, AAC when the source is not AAC."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av

from cdnrec.engine.formats.base import (
    AUDIO,
    Inputs,
    Output,
    WriterContext,
    WriterError,
    as_av,
    finish_file,
)
from cdnrec.engine.layout import PartialInfo

_CODEC = {"mp3": ("libmp3lame", "mp3", "s16p"), "aac": ("aac", "adts", "fltp")}
_RATES = {
    "libmp3lame": (48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000),
    "aac": (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000),
}


class TranscodeWriter:
    """Decodes the source audio and encodes it into audio-only files split every interval.

    One encoder runs for the whole recording, so no samples are lost or repeated at a split;
    files are cut at the first encoded packet at or after the deadline.
    """

    def __init__(self, ctx: WriterContext, fmt: str, interval: float) -> None:
        self.format = fmt
        self.ctx = ctx
        self.interval = interval
        self.codec_name, self.muxer, self.sample_fmt = _CODEC[fmt]
        self.decoder: Any = None
        self.encoder: Any = None
        self.resampler: Any = None
        self.rate = 0
        self.layout = "stereo"
        self.samples = 0
        self.t0 = 0.0
        self.out: Output | None = None
        self.ostream: Any = None
        self.info: PartialInfo | None = None
        self.file_start = 0
        self.file_end = 0
        self.held: tuple[Any, int] | None = None
        self.split_at = 0
        self.gaps: list[tuple[float, float]] = []
        self.signature: tuple[Any, ...] = ()
        self.tb = Fraction(1, 1000)

    def configure(self, inputs: Inputs) -> None:
        """Set up decoding of a new pull's audio; a codec change starts a new file."""
        sig = inputs.signature(AUDIO)
        if sig != self.signature:
            self.close()
        self.signature = sig
        self.tb = inputs.tb[AUDIO]
        src = inputs.streams[AUDIO]
        if src is None:
            self.decoder = None
            return
        cc = src.codec_context
        self.decoder = av.CodecContext.create(cc.name, "r")
        config = inputs.extradata[AUDIO] or cc.extradata
        if config:
            self.decoder.extradata = config
        if cc.sample_rate:
            self.decoder.sample_rate = cc.sample_rate
        if self.encoder is None:
            rates = _RATES[self.codec_name]
            self.rate = cc.sample_rate if cc.sample_rate in rates else 44100
            self.layout = "mono" if cc.channels == 1 else "stereo"
            self.encoder = self._new_encoder()
            size = self.encoder.frame_size or 1152
            self.resampler = av.AudioResampler(
                format=self.sample_fmt, layout=self.layout, rate=self.rate, frame_size=size
            )

    def _new_encoder(self) -> Any:
        enc: Any = av.CodecContext.create(self.codec_name, "w")
        enc.sample_rate = self.rate
        enc.layout = self.layout
        enc.format = self.sample_fmt
        enc.bit_rate = 128_000
        enc.time_base = Fraction(1, self.rate)
        enc.open()
        return enc

    def write(self, pkt: Any, kind: int, dts: int, pts: int, dur: int, key: bool) -> None:
        """Decode an audio packet and write what the encoder returns."""
        if kind != AUDIO or self.decoder is None:
            return
        if self.samples == 0 and self.out is None:
            self.t0 = float(dts * self.tb)
        try:
            frames = self.decoder.decode(as_av(pkt))
        except av.FFmpegError:
            return  # a corrupt packet is skipped, not fatal
        for frame in frames:
            frame.pts = None
            for rf in self.resampler.resample(frame):
                self._encode(rf)

    def _encode(self, frame: Any) -> None:
        frame.pts = self.samples
        frame.time_base = self.encoder.time_base
        self.samples += frame.samples
        for out_pkt in self.encoder.encode(frame):
            self._mux(out_pkt)

    def _mux(self, out_pkt: Any) -> None:
        """Write an encoded packet; a new file opens only once it has two packets.

        No decoder can open a file of one encoded frame, which is what a recording stopped
        right after a split would leave behind; such a frame is dropped instead.
        """
        pts = out_pkt.pts if out_pkt.pts is not None else self.samples
        if self.out is not None and pts >= self.split_at:
            self._close_file()
        if self.out is None:
            if self.held is None:
                self.held = (out_pkt, pts)
                return
            (first, first_pts), self.held = self.held, None
            self._open(first_pts)
            self._write(first, first_pts)
        self._write(out_pkt, pts)

    def _write(self, out_pkt: Any, pts: int) -> None:
        out_pkt.pts = out_pkt.dts = pts - self.file_start
        out_pkt.stream = self.ostream
        self.file_end = pts + (out_pkt.duration or 0)
        try:
            self.out.c.mux_one(out_pkt)  # type: ignore[union-attr]
        except Exception as e:
            raise WriterError(f"{self.format}: {type(e).__name__}: {e}") from e

    def _open(self, pts: int) -> None:
        t = self.t0 + pts / self.rate
        info = self.ctx.open_partial(self.format, self.ctx.wall_ms(t))
        try:
            out = Output(info.path, self.muxer, {}, 4096)
            self.ostream = out.c.add_stream(self.codec_name, rate=self.rate, layout=self.layout)
            self.ostream.bit_rate = 128_000
            self.ostream.codec_context.format = self.sample_fmt
            self.ostream.time_base = Fraction(1, self.rate)
        except Exception as e:
            raise WriterError(f"{self.format}: cannot open {info.path}: {e}") from e
        self.out, self.info = out, info
        self.file_start = self.file_end = pts
        self.split_at = pts + round(self.interval * self.rate)
        self.gaps = []

    def gap(self, at: float, length: float) -> None:
        """Record a resumed interruption in the current file."""
        if self.out is not None:
            begin = self.t0 + self.file_start / self.rate
            self.gaps.append((round(at - begin, 3), round(length, 3)))

    def _close_file(self) -> None:
        if self.out is None or self.info is None:
            return
        out, info, self.out, self.info = self.out, self.info, None, None
        duration = (self.file_end - self.file_start) / self.rate
        try:
            out.close()
        except Exception as e:
            raise WriterError(f"{self.format}: closing {info.path}: {e}") from e
        begin_t = self.t0 + self.file_start / self.rate
        finish_file(
            self.ctx,
            info,
            end_ms=self.ctx.wall_ms(begin_t + duration),
            duration=duration,
            codecs=("mp3" if self.format == "mp3" else "aac",),
            gaps=tuple(self.gaps),
        )

    def flush(self) -> None:
        """FFmpeg's I/O buffer is written out when full (about 0.5 s of media); the file's older
        pages leave the page cache as it grows."""
        if self.out is not None:
            self.out.release_written()

    def close(self) -> None:
        """Drain the encoder into the current file, then close and announce it."""
        if self.encoder is not None:
            try:
                for rf in self.resampler.resample(None):
                    self._encode(rf)
                for out_pkt in self.encoder.encode(None):
                    self._mux(out_pkt)
            except (av.FFmpegError, ValueError):
                pass
            self.encoder = None
        self.held = None
        self._close_file()
