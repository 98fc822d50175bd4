"""The pure merge core on generated clips: copy concat, MP3, M3U8, re-encode fallback, crops."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import av
import pytest

from cdnrec.media.merge import MergeError, merge
from cdnrec.media.probe import probe
from tests.support.media import ffmpeg_exe, read_packets

FRAME = 1 / 25
GOP = 1.0
CLIP_VERSION = "m1"


def _clip(cache: Path, name: str, seconds: float, size: str = "320x240", tone: int = 300) -> Path:
    """An MP4 (H.264 with B-frames, 1 s GOP, + AAC) generated once into the pytest cache."""
    path = cache / f"merge-{CLIP_VERSION}-{name}.mp4"
    if not path.exists():
        tmp = path.with_suffix(".tmp.mp4")
        args = [
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25",
            "-f", "lavfi", "-i", f"sine=f={tone}:sample_rate=48000",
            "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", "25",
            "-keyint_min", "25", "-sc_threshold", "0", "-bf", "2", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-ac", "2", "-b:a", "96k",
        ]  # fmt: skip
        subprocess.run(
            [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", *args, str(tmp)], check=True
        )
        tmp.rename(path)
    return path


@pytest.fixture(scope="module")
def clips(clip_dir: Path) -> dict[str, Path]:
    """Three compatible clips of 3, 4 and 5 s, and one of another size."""
    cache = clip_dir
    return {
        "a": _clip(cache, "a", 3, tone=300),
        "b": _clip(cache, "b", 4, tone=500),
        "c": _clip(cache, "c", 5, tone=700),
        "wide": _clip(cache, "wide", 3, size="480x270", tone=900),
    }


def _media_packets(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, *_ in read_packets(path):
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _check_timeline(path: Path) -> None:
    packets = read_packets(path)
    for kind in ("video", "audio"):
        dts = [p[2] for p in packets if p[0] == kind]
        assert all(b > a for a, b in itertools.pairwise(dts)), f"{kind} DTS not rising"
    assert next(p for p in packets if p[0] == "video")[4], "first video packet is no keyframe"


def test_copy_concat_keeps_every_packet(clips: dict[str, Path], tmp_path: Path) -> None:
    inputs = [clips["a"], clips["b"], clips["c"]]
    out = tmp_path / "joined.mp4"
    result = merge(inputs, out, "mp4")
    assert not result.reencoded
    assert result.reason == ""
    assert result.codecs == ("h264", "aac")
    expected = sum(probe(p).duration for p in inputs)
    assert abs(result.duration - expected) <= (len(inputs) - 1) * FRAME + FRAME
    counts = [_media_packets(p) for p in inputs]
    merged = _media_packets(out)
    assert merged["video"] == sum(c["video"] for c in counts)
    # AAC priming packets (before each input's time 0) are the only ones left out
    assert sum(c["audio"] for c in counts) - len(inputs) <= merged["audio"]
    _check_timeline(out)
    assert result.size == out.stat().st_size
    assert len(result.sha256) == 64
    assert not list(tmp_path.glob(".*partial*")), "staging left behind"


def test_m3u8_output_is_a_vod_playlist_over_a_sibling_folder(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "x" / "joined.m3u8"
    result = merge([clips["a"], clips["b"]], out, "m3u8")
    text = out.read_text()
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    uris = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert uris
    assert all(u.startswith("joined/") and (out.parent / u).is_file() for u in uris)
    assert abs(result.duration - 7.0) <= 2 * FRAME + 0.05
    assert result.size > out.stat().st_size
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["joined", "joined.m3u8"]


def test_mp3_from_aac_transcodes_the_audio(clips: dict[str, Path], tmp_path: Path) -> None:
    result = merge([clips["a"], clips["b"]], tmp_path / "sound.mp3", "mp3")
    assert result.reencoded
    assert "MP3" in result.reason
    assert result.codecs == ("mp3",)
    assert abs(result.duration - 7.0) <= 0.1


def test_incompatible_inputs_fall_back_to_reencoding(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "mixed.mp4"
    result = merge([clips["a"], clips["wide"]], out, "mp4")
    assert result.reencoded
    assert "differs" in result.reason
    with av.open(str(out)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (320, 240)
    assert abs(result.duration - 6.0) <= 2 * FRAME + 0.05
    _check_timeline(out)


def _frames(path: Path) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as c:
        return [
            (float(f.time or 0.0), bytes(f.reformat(format="gray").planes[0]))
            for f in c.decode(video=0)
        ]


def _closest(frames: list[tuple[float, bytes]], image: bytes) -> float:
    """Time of the input frame that looks most like `image` (sum of absolute differences)."""

    def distance(other: bytes) -> int:
        return sum(abs(x - y) for x, y in zip(image[::7], other[::7], strict=False))

    return min(frames, key=lambda f: distance(f[1]))[0]


def test_frame_accurate_crop_starts_and_ends_on_the_requested_frames(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "cropped.mp4"
    spans: list[tuple[float | None, float | None]] = [(0.52, 1.48), (1.2, None)]
    result = merge([clips["a"], clips["b"]], out, "mp4", spans)
    assert result.reencoded
    assert result.reason == "frame-accurate crop"
    assert abs(result.duration - (0.96 + 2.8)) <= 2 * FRAME
    made = _frames(out)
    source = [(t - _frames(clips["a"])[0][0], img) for t, img in _frames(clips["a"])]
    assert abs(_closest(source, made[0][1]) - 0.52) <= FRAME / 2  # the first frame shown
    second = [(t, img) for t, img in _frames(clips["b"])]
    joint = round(0.96 / FRAME)
    assert abs(_closest(second, made[joint][1]) - second[0][0] - 1.2) <= FRAME / 2
    _check_timeline(out)


def test_copy_crop_cuts_at_the_keyframe_before_the_start(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "copycrop.mp4"
    spans: list[tuple[float | None, float | None]] = [(1.5, 2.5), (2.3, 3.5)]
    result = merge([clips["a"], clips["b"]], out, "mp4", spans, frame_accurate=False)
    assert not result.reencoded
    for (start, end), (kept_start, kept_end) in zip(spans, result.spans, strict=True):
        assert start is not None
        assert end is not None
        assert start - GOP < kept_start <= start + 1e-3  # within one GOP before the request
        assert abs(kept_end - end) <= 2 * FRAME
    _check_timeline(out)


def test_unreadable_input_is_a_bad_input(clips: dict[str, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a media file" * 100)
    with pytest.raises(MergeError) as caught:
        merge([clips["a"], junk], tmp_path / "out.mp4", "mp4")
    assert caught.value.bad_input
    with pytest.raises(MergeError):
        merge([clips["a"]], tmp_path / "out.mp4", "mp4", [(5.0, 6.0)])
    assert not (tmp_path / "out.mp4").exists()
