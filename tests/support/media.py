"""Test media: clips generated once (cached across sessions) and packet-identity checks."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

CLIP_VERSION = "v1"


def ffmpeg_exe() -> str:
    """An ffmpeg executable: the system one, else the one bundled with imageio-ffmpeg."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


# H.264 (1 s GOP, B-frames) + AAC whose audio is a chirp, so no two packets are identical.
_CLIPS: dict[str, list[str]] = {
    "av": [
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
        "-f", "lavfi", "-i", "aevalsrc=sin(2*PI*(200+40*t)*t)|sin(2*PI*(300+30*t)*t):s=48000",
        "-t", "12", "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-keyint_min", "25",
        "-sc_threshold", "0", "-b:v", "300k", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k", "-ac", "2",
    ],
    "audio": [
        "-f", "lavfi", "-i", "aevalsrc=sin(2*PI*(200+40*t)*t)|sin(2*PI*(300+30*t)*t):s=48000",
        "-t", "12", "-c:a", "aac", "-b:a", "96k", "-ac", "2",
    ],
    "av_mp3": [
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
        "-f", "lavfi", "-i", "aevalsrc=sin(2*PI*(200+40*t)*t):s=44100",
        "-t", "12", "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-keyint_min", "25",
        "-sc_threshold", "0", "-b:v", "300k", "-pix_fmt", "yuv420p",
        "-c:a", "libmp3lame", "-b:a", "96k", "-ac", "1",
    ],
    "long_gop": [
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=5",
        "-f", "lavfi", "-i", "aevalsrc=sin(2*PI*(200+40*t)*t)|sin(2*PI*(300+30*t)*t):s=48000",
        "-t", "12", "-c:v", "libx264", "-preset", "veryfast", "-g", "20", "-keyint_min", "20",
        "-sc_threshold", "0", "-b:v", "100k", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k", "-ac", "2",
    ],
    "av_2mbit": [  # x264 pads to a constant 2 Mbit/s with filler data
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
        "-f", "lavfi", "-i", "aevalsrc=sin(2*PI*(200+40*t)*t)|sin(2*PI*(300+30*t)*t):s=48000",
        "-t", "12", "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-keyint_min", "25",
        "-sc_threshold", "0", "-b:v", "2000k", "-minrate", "2000k", "-maxrate", "2000k",
        "-bufsize", "1000k", "-x264-params", "nal-hrd=cbr", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "96k", "-ac", "2",
    ],
    "video": [
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
        "-t", "12", "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-keyint_min", "25",
        "-sc_threshold", "0", "-b:v", "300k", "-pix_fmt", "yuv420p",
    ],
}  # fmt: skip


def make_clip(cache_dir: Path, name: str) -> Path:
    """Generate (once) the FLV clip ``name`` ("av", "audio", "video", "av_mp3",
    "av_2mbit", ...) in ``cache_dir``."""
    path = cache_dir / f"{name}-{CLIP_VERSION}.flv"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.flv")
        subprocess.run(
            [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", *_CLIPS[name], str(tmp)],
            check=True,
        )
        tmp.rename(path)
    return path


def packet_key(kind: str, data: bytes) -> bytes:
    """Identity of a packet by content: video by its last 32 bytes (they survive AVCC->Annex B
    rewriting), audio by a hash of the AAC payload without its ADTS header."""
    if kind == "video":
        return data[-32:]
    if len(data) > 7 and data[0] == 0xFF and (data[1] & 0xF0) == 0xF0:
        data = data[7 if data[1] & 1 else 9 :]
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass
class PacketIndex:
    """Position of every packet of a looping clip, per kind."""

    index: dict[tuple[str, bytes], int] = field(default_factory=dict)
    length: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, clip: Path) -> PacketIndex:
        """Index the packets of ``clip`` (each must be unique)."""
        idx = cls()
        with av.open(str(clip)) as c:
            for pkt in c.demux():
                if pkt.dts is None or pkt.stream.type not in ("video", "audio"):
                    continue
                kind = pkt.stream.type
                k = (kind, packet_key(kind, bytes(pkt)))
                assert k not in idx.index, f"clip has two identical {kind} packets"
                idx.index[k] = idx.length.get(kind, 0)
                idx.length[kind] = idx.index[k] + 1
        return idx


def read_packets(path: Path) -> list[Any]:
    """(kind, bytes, dts_seconds, pts_seconds, keyframe) of every media packet of a file."""
    out = []
    # Name the demuxer: a file of one or two ADTS/MP3 frames is too short to be probed.
    fmt = {".aac": "aac", ".mp3": "mp3"}.get(path.suffix)
    with av.open(str(path), format=fmt) as c:
        last = -0.001
        for pkt in c.demux():
            if pkt.size == 0 or pkt.stream.type not in ("video", "audio"):
                continue
            tb = float(pkt.time_base or 0)
            # A lone ADTS frame has no timestamp: it comes right after the previous one.
            dts = pkt.dts * tb if pkt.dts is not None else last + 0.001
            pts = pkt.pts * tb if pkt.pts is not None else dts
            last = dts
            out.append((pkt.stream.type, bytes(pkt), dts, pts, pkt.is_keyframe))
    return out


@dataclass
class Continuity:
    """Result of checking recorded packets against the looping clip."""

    packets: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    dup: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)
    jumps: dict[str, list[int]] = field(default_factory=dict)


def continuity(idx: PacketIndex, files: Iterable[Path], kinds: Iterable[str]) -> Continuity:
    """Check that the files' packets, in order, follow the clip's packets with none lost or
    repeated (modulo the loop), whatever their timestamps."""
    res = Continuity()
    prev: dict[str, int | None] = {}
    for k in kinds:
        res.packets[k] = res.lost[k] = res.dup[k] = res.unknown[k] = 0
        res.jumps[k] = []
        prev[k] = None
    for path in files:
        for kind, data, *_ in read_packets(path):
            if kind not in prev:
                continue
            pos = idx.index.get((kind, packet_key(kind, data)))
            if pos is None:
                res.unknown[kind] += 1
                continue
            res.packets[kind] += 1
            p = prev[kind]
            if p is not None:
                d = (pos - p) % idx.length[kind]
                if d == 0:
                    res.dup[kind] += 1
                elif d != 1:
                    res.lost[kind] += d - 1
                    res.jumps[kind].append(d - 1)
            prev[kind] = pos
    return res
