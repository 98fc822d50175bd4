"""The re-encoding path of a merge: decode each part, trim it to its span, encode once.

Used when inputs cannot be remuxed (different codecs or parameters), for MP3 output from other
audio, and for frame-accurate crops. Video becomes H.264 (the first input's size and frame rate),
audio AAC (MP3 for MP3 output) at the first input's sample rate, stereo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av

from cdnrec.media.merge_parts import Extent, MergeError, Part

VIDEO_TB = Fraction(1, 90000)
EPS = 1e-3


@dataclass
class _Encoders:
    """The output's encoders and the running timestamps of each."""

    video: Any = None
    audio: Any = None
    fifo: Any = None
    size: tuple[int, int] = (0, 0)
    frame: float = 0.04
    last_vpts: int = -1
    audio_fed: int = 0
    audio_out: int = 0
    kept: list[tuple[float, float]] = field(default_factory=list)


def _first(parts: list[Part], kind: str) -> Any:
    for part in parts:
        for facts in part.scan.streams:
            if facts.type == kind:
                return part, facts
    return None


def _open_encoders(out: Any, parts: list[Part], fmt: str) -> _Encoders:
    enc = _Encoders()
    video = _first(parts, "video") if fmt != "mp3" else None
    audio = _first(parts, "audio")
    if video is None and audio is None:
        raise MergeError(f"no {'audio' if fmt == 'mp3' else 'media'} to merge", bad_input=True)
    if video is not None:
        part, facts = video
        width, height = facts.params[0], facts.params[1]
        rate = (
            Fraction(1 / part.scan.frame_duration).limit_denominator(1001)
            if (part.scan.frame_duration)
            else Fraction(25)
        )
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        ctx = stream.codec_context
        ctx.time_base = VIDEO_TB
        ctx.gop_size = max(1, round(float(rate) * 2))
        ctx.options = {"preset": "veryfast", "crf": "20"}
        enc.video, enc.size, enc.frame = stream, (width, height), float(1 / rate)
    if audio is not None:
        sample_rate = int(audio[1].params[0]) or 48000
        if fmt == "mp3" and sample_rate not in (32000, 44100, 48000):
            sample_rate = 44100
        stream = out.add_stream("libmp3lame" if fmt == "mp3" else "aac", rate=sample_rate)
        stream.layout = "stereo"
        stream.codec_context.bit_rate = 128_000
        stream.codec_context.open()
        enc.audio = stream
        enc.fifo = av.AudioFifo()
    return enc


def encode_parts(out: Any, parts: list[Part], fmt: str) -> tuple[list[tuple[float, float]], float]:
    """Decode, trim and encode every part into `out`; the span kept of each part, the length."""
    enc = _open_encoders(out, parts, fmt)
    offset = 0.0
    for part in parts:
        offset = _encode_one(out, enc, part, offset)
    if enc.video is not None:
        for pkt in enc.video.encode(None):
            out.mux(pkt)
    if enc.audio is not None:
        rest = enc.fifo.read()
        if rest is not None:
            _encode_audio(out, enc, rest)
        for pkt in enc.audio.encode(None):
            out.mux(pkt)
    return enc.kept, offset


def _encode_one(out: Any, enc: _Encoders, part: Part, offset: float) -> float:
    scan = part.scan
    base = scan.origin + part.start
    end = scan.origin + part.end
    extent = Extent()
    resampler = None
    if enc.audio is not None:
        ctx = enc.audio.codec_context
        resampler = av.AudioResampler(format=ctx.format, layout="stereo", rate=ctx.sample_rate)
        _pad_audio(out, enc, round(offset * ctx.sample_rate))
    fed = 0
    with av.open(str(scan.path), format="mp3" if scan.path.suffix == ".mp3" else None) as src:
        kinds = {"video"} if enc.video is not None else set()
        kinds |= {"audio"} if enc.audio is not None else set()
        streams = [src.streams[x.index] for x in scan.streams if x.type in kinds]
        streams = [s for s in streams if s.type == "video"][:1] + [
            s for s in streams if s.type == "audio"
        ][:1]
        if part.start > 1.0:
            src.seek(int(base * av.time_base), backward=True)
        for frame in src.decode(*streams):
            if not isinstance(frame, av.VideoFrame | av.AudioFrame) or frame.time is None:
                continue
            t = frame.time
            if isinstance(frame, av.VideoFrame):
                if base - EPS <= t < end - EPS:
                    _encode_video(out, enc, frame, offset + t - base)
                    extent.add("video", t, t + enc.frame)
            elif isinstance(frame, av.AudioFrame):
                length = frame.samples / frame.sample_rate
                if resampler is not None and base <= t + length / 2 < end:
                    frame.pts = fed
                    frame.time_base = Fraction(1, frame.sample_rate)
                    fed += frame.samples
                    for chunk in resampler.resample(frame):
                        _push_audio(out, enc, chunk)
                    extent.add("audio", t, t + length)
    if resampler is not None:
        for chunk in resampler.resample(None):
            _push_audio(out, enc, chunk)
    if not extent.length:
        raise MergeError(f"{scan.path.name} holds no media to encode", bad_input=True)
    enc.kept.append((part.start, min(part.end, part.start + extent.length)))
    return offset + extent.length


def _encode_video(out: Any, enc: _Encoders, frame: Any, at: float) -> None:
    width, height = enc.size
    image = frame.reformat(width=width, height=height, format="yuv420p")
    pts = max(round(at / VIDEO_TB), enc.last_vpts + 1)
    enc.last_vpts = pts
    image.pts = pts
    image.time_base = VIDEO_TB
    image.pict_type = av.video.frame.PictureType.NONE
    for pkt in enc.video.encode(image):
        out.mux(pkt)


def _pad_audio(out: Any, enc: _Encoders, target: int) -> None:
    """Silence up to sample `target`, so a part whose audio ended early (or had none) does not
    pull the next part's sound ahead of its picture."""
    missing = target - enc.audio_fed
    if missing <= 0:
        return
    ctx = enc.audio.codec_context
    silence = av.AudioFrame(format=ctx.format.name, layout="stereo", samples=missing)
    for plane in silence.planes:
        plane.update(bytes(plane.buffer_size))
    silence.sample_rate = ctx.sample_rate
    _push_audio(out, enc, silence)


def _push_audio(out: Any, enc: _Encoders, frame: Any) -> None:
    """Queue audio in the encoder's format; encode it in frames of the encoder's size."""
    frame.pts = None
    enc.fifo.write(frame)
    enc.audio_fed += frame.samples
    size = enc.audio.codec_context.frame_size or 1024
    while (chunk := enc.fifo.read(size)) is not None:
        _encode_audio(out, enc, chunk)


def _encode_audio(out: Any, enc: _Encoders, frame: Any) -> None:
    frame.pts = enc.audio_out
    frame.time_base = Fraction(1, enc.audio.codec_context.sample_rate)
    enc.audio_out += frame.samples
    for pkt in enc.audio.encode(frame):
        out.mux(pkt)
