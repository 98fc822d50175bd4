"""Merging media files into one: concatenate (Type 0) or crop then concatenate (Type 1).

Pure media work (PyAV, no asyncio, no SQL). Inputs that share codecs and codec parameters are
remuxed packet by packet (no re-encoding) with their timestamps re-based so that the result plays
straight through; anything else is decoded and encoded once. Outputs are written next to their
final path and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import av

from cdnrec.media.merge_encode import encode_parts
from cdnrec.media.merge_parts import (
    MICRO,
    Extent,
    MergeError,
    Part,
    Scan,
    SpanError,
    open_output,
    scan,
)

Format = Literal["mp4", "mp3", "m3u8"]
Span = tuple[float | None, float | None]
FORMATS: tuple[str, ...] = ("mp4", "mp3", "m3u8")
HLS_SEGMENT = 4.0
__all__ = ["FORMATS", "Format", "MergeError", "MergeResult", "Span", "SpanError", "merge"]


@dataclass(frozen=True)
class MergeResult:
    """What a merge produced and how: copied packets, or re-encoded (and why)."""

    duration: float  # seconds, the sum of what each part contributed
    size: int
    codecs: tuple[str, ...]
    sha256: str
    reencoded: bool
    reason: str
    spans: tuple[tuple[float, float], ...]


def merge(
    inputs: list[Path],
    output: Path,
    fmt: Format,
    spans: list[Span] | None = None,
    *,
    frame_accurate: bool = True,
) -> MergeResult:
    """Merge `inputs` in order into `output` (an M3U8 also gets its segments in `output` minus
    `.m3u8`); `spans` crops each input to [start, end) seconds from its own start first.

    Cropping with `frame_accurate` re-encodes the spans, so cuts land on the requested frames;
    without it, packets are copied and a cut starts at the keyframe at or before the start.
    """
    if fmt not in FORMATS:
        raise MergeError(f"unsupported output format {fmt!r}")
    if not inputs:
        raise MergeError("nothing to merge", bad_input=True)
    if spans is not None and len(spans) != len(inputs):
        raise MergeError("one span per input is needed")
    scans = [_scan(path, packets=spans is not None) for path in inputs]
    parts = [
        Part(s, *_resolve(s, spans[i] if spans else (None, None))) for i, s in enumerate(scans)
    ]
    reason = _reencode_reason(scans, fmt, cropped=spans is not None and frame_accurate)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.partial")
    _remove_output(staging)
    try:
        with open_output(staging, fmt, HLS_SEGMENT) as out:
            kept, duration = encode_parts(out, parts, fmt) if reason else _copy_parts(out, parts)
            codecs = tuple(st.codec_context.codec.canonical_name for st in out.streams)
    except MergeError:
        _remove_output(staging)
        raise
    except Exception as exc:  # FFmpeg, the disk, or PyAV refusing a frame: no half output
        _remove_output(staging)
        raise MergeError(f"writing the merge failed: {type(exc).__name__}: {exc}") from exc
    _move_output(staging, output)
    return MergeResult(
        duration=round(duration, 3),
        size=_size(output),
        codecs=codecs,
        sha256=_sha256(output),
        reencoded=bool(reason),
        reason=reason,
        spans=tuple(kept),
    )


def _scan(path: Path, *, packets: bool) -> Scan:
    try:
        return scan(path, packets=packets)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MergeError(f"cannot read {path.name}: {exc}", bad_input=True) from exc


def _resolve(s: Scan, span: Span) -> tuple[float, float]:
    start, end = span
    lo = max(0.0, start or 0.0)
    hi = s.duration if end is None else min(end, s.duration)
    if hi <= lo:
        raise SpanError(f"{s.path.name}: span [{start}, {end}] holds no media")
    return lo, hi


def _reencode_reason(scans: list[Scan], fmt: str, *, cropped: bool) -> str:
    """Why the inputs cannot simply be remuxed into `fmt` ("" when they can)."""
    first = scans[0]
    if any(not s.streams for s in scans):
        return "an input has no audio or video"
    if fmt == "mp3" and [x.codec for x in first.streams] != ["mp3"]:
        return "MP3 output from non-MP3 audio"
    if fmt != "mp3" and any(x.codec not in ("h264", "hevc", "aac", "mp3") for x in first.streams):
        return f"codecs {first.codecs} cannot be copied into {fmt}"
    for other in scans[1:]:
        if other.signature != first.signature:
            return f"{other.path.name} differs from {first.path.name} in codecs or parameters"
    if cropped:
        return "frame-accurate crop"
    return ""


def _copy_parts(out: Any, parts: list[Part]) -> tuple[list[tuple[float, float]], float]:
    """Remux every part's packets, shifted so each part starts where the previous one ended."""
    template = parts[0].scan
    with av.open(str(template.path)) as first:
        ostreams = [out.add_stream_from_template(first.streams[x.index]) for x in template.streams]
    offset = 0.0
    last_dts: dict[int, int] = {}
    kept: list[tuple[float, float]] = []
    for part in parts:
        offset, span = _copy_one(out, ostreams, part, offset, last_dts)
        kept.append(span)
    return kept, offset


def _copy_one(
    out: Any, ostreams: list[Any], part: Part, offset: float, last_dts: dict[int, int]
) -> tuple[float, tuple[float, float]]:
    scan_ = part.scan
    # A copied video part must start on a keyframe: the one at or before the requested start.
    start = scan_.keyframe_at_or_before(part.start) if scan_.has_video else part.start
    base = scan_.origin + start
    end_t = scan_.origin + part.end
    shift = offset - base
    extent = Extent()
    with av.open(str(scan_.path)) as src:
        wanted = {x.index: n for n, x in enumerate(scan_.streams)}
        # Per stream, in its own ticks (Fraction arithmetic per packet costs more than the copy).
        ticks = {i: float(src.streams[i].time_base or MICRO) for i in wanted}
        lows = {i: base / tb - 0.5 for i, tb in ticks.items()}
        highs = {i: end_t / tb - 0.5 for i, tb in ticks.items()}
        deltas = {i: round(shift / tb) for i, tb in ticks.items()}
        for pkt in src.demux([src.streams[i] for i in wanted]):
            dts = pkt.dts
            if dts is None or pkt.size == 0:
                continue
            i = pkt.stream.index
            pts = pkt.pts
            shown = pts if pts is not None else dts
            if shown < lows[i] or dts >= highs[i]:
                continue
            n = wanted[i]
            delta = deltas[i]
            dts += delta
            floor = last_dts.get(n)
            if floor is not None and dts <= floor:  # never hand the muxer a backward DTS
                delta += floor + 1 - dts
                dts = floor + 1
            pkt.dts = dts
            if pts is not None:
                pkt.pts = max(pts + delta, dts)
            last_dts[n] = dts
            at = (pts + delta if pts is not None else dts) * ticks[i]
            extent.add(n, at, at + (pkt.duration or 0) * ticks[i])
            pkt.stream = ostreams[n]
            out.mux(pkt)
    if not extent.length:
        raise MergeError(f"{scan_.path.name} holds no media to copy", bad_input=True)
    return offset + extent.length, (start, min(part.end, start + extent.length))


def _move_output(staging: Path, output: Path) -> None:
    """Rename a finished merge into place (an M3U8's segment folder first, its playlist last)."""
    if output.suffix == ".m3u8":
        segments = output.with_suffix("")
        shutil.rmtree(segments, ignore_errors=True)
        os.replace(staging / "segments", segments)
        text = (staging / "index.m3u8").read_text()
        (staging / "index.m3u8").write_text(text.replace("segments/", f"{segments.name}/"))
        os.replace(staging / "index.m3u8", output)
        shutil.rmtree(staging, ignore_errors=True)
    else:
        os.replace(staging, output)


def _remove_output(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _size(output: Path) -> int:
    size = output.stat().st_size
    segments = output.with_suffix("")
    if output.suffix == ".m3u8" and segments.is_dir():
        size += sum(p.stat().st_size for p in segments.iterdir())
    return size


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
