"""Turn a partial file left by a crash into a valid final file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import av

from cdnrec.engine.formats.base import finalize
from cdnrec.engine.formats.hls import PLAYLIST, Segment, finalize_hls, parse_playlist
from cdnrec.engine.layout import (
    PARTIAL_DIR,
    Layout,
    PartialInfo,
    read_sidecar,
    remove_partial,
    sidecar_of,
)
from cdnrec.engine.plan import ClosedFile

_MUXER = {"flv": "flv", "mp4": "mp4", "aac": "adts", "mp3": "mp3", "m3u8": "mpegts"}
_OPTIONS = {"mp4": {"movflags": "frag_keyframe+empty_moov+default_base_moof"}}


def find_partials(storage_root: Path) -> list[Path]:
    """Partial files (or HLS folders) under ``storage_root`` that a crash left behind."""
    return [p.path for p in Layout(storage_root).find_partials()]


def _root_of(partial: Path) -> Path:
    # <root>/.partial/<recording>/<file>
    root = partial.resolve().parent.parent.parent
    if partial.resolve().parent.parent.name != PARTIAL_DIR:
        raise ValueError(f"{partial} is not inside a {PARTIAL_DIR} folder")
    return root


def _remux(src: Path, dst: Path, fmt: str) -> tuple[float, tuple[str, ...], int]:
    """Copy every readable packet of ``src`` into a new ``dst``: (duration, codecs, packets)."""
    try:
        inp: Any = av.open(str(src), format=None if fmt != "m3u8" else "mpegts")
    except (av.FFmpegError, OSError):
        return 0.0, (), 0
    out: Any = None
    count = 0
    first: dict[int, float] = {}
    end: dict[int, float] = {}
    try:
        streams = [s for s in inp.streams if s.type in ("video", "audio")]
        if not streams:
            return 0.0, (), 0
        out = av.open(str(dst), "w", format=_MUXER[fmt], container_options=_OPTIONS.get(fmt, {}))
        omap = {s.index: out.add_stream_from_template(s) for s in streams}
        codecs = tuple(s.codec_context.codec.canonical_name for s in streams)
        # The last packet of each stream may be cut short, except in MP4 (whole fragments).
        held: dict[int, Any] = {}
        try:
            for pkt in inp.demux(streams):
                if pkt.dts is None or pkt.size == 0 or pkt.is_corrupt:
                    continue
                i = pkt.stream.index
                prev = held.get(i)
                held[i] = pkt
                if prev is None and fmt != "mp4":
                    continue
                if fmt != "mp4":
                    pkt = prev
                tb = float(pkt.time_base)
                first.setdefault(i, pkt.dts * tb)
                end[i] = (pkt.dts + (pkt.duration or 0)) * tb
                pkt.stream = omap[i]
                out.mux_one(pkt)
                count += 1
        except (av.FFmpegError, OSError):
            pass  # the cut end of the file
    finally:
        if out is not None:
            try:
                out.close()
            except (av.FFmpegError, OSError):
                count = 0
        inp.close()
    duration = max((end[i] - first[i] for i in end), default=0.0)
    return duration, codecs, count


def repair(partial: Path, storage_root: Path | None = None) -> ClosedFile | None:
    """Finish a partial left by a crash: remux what is readable, move it to its final name.

    Returns the final file's record (``repaired=True``), or None when nothing was readable
    (then the partial is removed). Never call it on a file a running recorder still writes.
    """
    info = read_sidecar(partial)
    layout = Layout(storage_root or _root_of(info.path), info.path_template)
    if info.format == "m3u8":
        return _repair_hls(layout, info)
    if not info.path.exists():
        remove_partial(info)
        return None
    tmp = info.path.with_name(info.path.name + ".repair")
    duration, codecs, count = _remux(info.path, tmp, info.format)
    if count == 0:
        tmp.unlink(missing_ok=True)
        info.path.unlink(missing_ok=True)
        remove_partial(info)
        return None
    os.replace(tmp, info.path)
    end_ms = info.begin_ms + round(duration * 1000)
    return finalize(layout, info, end_ms, duration, codecs, (), True)


def _repair_hls(layout: Layout, info: PartialInfo) -> ClosedFile | None:
    folder = info.path
    if not folder.is_dir():
        remove_partial(info)
        return None
    pl = folder / PLAYLIST
    listed = parse_playlist(pl.read_text()) if pl.exists() else []
    known = {s.name for s in listed}
    segments = [s for s in listed if (folder / s.name).exists()]
    codecs: tuple[str, ...] = ()
    for ts in sorted(folder.glob("*.ts")):
        if ts.name in known:
            continue
        tmp = ts.with_name(ts.name + ".repair")
        duration, found, count = _remux(ts, tmp, "m3u8")
        if count:
            os.replace(tmp, ts)
            segments.append(Segment(ts.name, round(duration, 3)))
            codecs = codecs or found
        else:
            tmp.unlink(missing_ok=True)
            ts.unlink()
    if not segments:
        shutil.rmtree(folder, ignore_errors=True)
        remove_partial(info)
        return None
    if not codecs:
        with av.open(str(folder / segments[0].name)) as c:
            codecs = tuple(
                s.codec_context.codec.canonical_name
                for s in c.streams
                if s.type in ("video", "audio")
            )
    duration = sum(s.duration for s in segments)
    end_ms = info.begin_ms + round(duration * 1000)
    return finalize_hls(layout, info, segments, end_ms, codecs, (), True)


__all__ = ["find_partials", "repair", "sidecar_of"]
