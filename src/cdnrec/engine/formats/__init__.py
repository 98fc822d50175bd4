"""Output formats: one writer interface (``Writer``), chosen from a registry by format name."""

from __future__ import annotations

from collections.abc import Callable

from cdnrec.engine.formats.base import Inputs, Writer, WriterContext, WriterError
from cdnrec.engine.formats.copy import CopyWriter
from cdnrec.engine.formats.hls import HlsWriter
from cdnrec.engine.formats.transcode import TranscodeWriter
from cdnrec.engine.plan import RecordingPlan

WriterFactory = Callable[[WriterContext, RecordingPlan, str | None], Writer]


def _aac(ctx: WriterContext, plan: RecordingPlan, audio_codec: str | None) -> Writer:
    if audio_codec in (None, "aac"):
        return CopyWriter(ctx, "aac", plan.interval)
    return TranscodeWriter(ctx, "aac", plan.interval)


_REGISTRY: dict[str, WriterFactory] = {
    "flv": lambda ctx, plan, _a: CopyWriter(ctx, "flv", plan.interval),
    "mp4": lambda ctx, plan, _a: CopyWriter(ctx, "mp4", plan.interval),
    "aac": _aac,
    "mp3": lambda ctx, plan, _a: TranscodeWriter(ctx, "mp3", plan.interval),
    "m3u8": lambda ctx, plan, _a: HlsWriter(ctx, plan.hls_segment),
}


def formats() -> tuple[str, ...]:
    """Names of every registered format."""
    return tuple(_REGISTRY)


def writer_for(
    fmt: str, ctx: WriterContext, plan: RecordingPlan, audio_codec: str | None
) -> Writer:
    """A writer of ``fmt`` for this recording (``audio_codec`` decides copy vs re-encode)."""
    try:
        return _REGISTRY[fmt](ctx, plan, audio_codec)
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}") from None


__all__ = ["Inputs", "Writer", "WriterContext", "WriterError", "formats", "writer_for"]
