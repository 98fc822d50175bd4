"""Read facts about a media file back with PyAV."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds: codecs in stream order, duration from packet timestamps, packets."""

    codecs: tuple[str, ...]
    duration: float
    packets: int
    first_is_keyframe: bool


def probe(path: Path, fmt: str | None = None) -> MediaInfo:
    """Demux every packet of ``path``; raises av.FFmpegError/OSError if it cannot be opened."""
    with av.open(str(path), format=fmt) as c:
        streams = [s for s in c.streams if s.type in ("video", "audio")]
        codecs = tuple(s.codec_context.codec.canonical_name for s in streams)
        first: dict[int, float] = {}
        end: dict[int, float] = {}
        count = 0
        first_key: bool | None = None
        try:
            for pkt in c.demux(streams):
                if pkt.dts is None or pkt.size == 0:
                    continue
                tb = float(pkt.time_base)
                t = pkt.dts * tb
                i = pkt.stream.index
                first.setdefault(i, t)
                end[i] = t + (pkt.duration or 0) * tb
                count += 1
                if first_key is None and pkt.stream.type == "video":
                    first_key = pkt.is_keyframe
        except (av.FFmpegError, OSError):
            pass  # a cut file: what was read so far counts
    duration = max((end[i] - first[i] for i in end), default=0.0)
    return MediaInfo(codecs, round(duration, 3), count, first_key is not False)
