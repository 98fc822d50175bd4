"""Merge throughput: cdnrec's merge core against `ffmpeg -f concat -c copy`, side by side.

Usage: .venv/bin/python bench/merge_bench.py [--files 10] [--rounds 5] [--work DIR]

Generates (once, cached in --work) ten recorded-like MP4 files of 30-60 s (H.264 720p25 with a
1 s GOP and B-frames + AAC 48 kHz; cut from one encode so they share codec parameters, as the
files of one recording do), then alternates, round by round:

- `cdnrec` Type 0 MP4 (packet copy, `+faststart`) through `cdnrec.media.merge.merge`;
- `ffmpeg -f concat -safe 0 -i list.txt -c copy out.mp4` (the apt ffmpeg), what a user runs by hand;
- `ffmpeg` again with `-movflags +faststart` (same work as cdnrec: the index moved to the front);
- `cdnrec` Type 0 M3U8 output;
- `cdnrec` Type 1 on three files, 10 s from each: frame-accurate (re-encodes the spans) and copy
  mode (cuts on keyframes), to measure what frame accuracy costs.

Prints a table (median of the rounds; MB/s of output) and writes `bench/results/merge-<stamp>.md`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cdnrec.media.merge import merge

ROOT = Path(__file__).resolve().parent
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_inputs(work: Path, count: int) -> list[Path]:
    """`count` MP4 files of 30-60 s cut (at keyframes) from one 720p encode; cached."""
    lengths = [30 + (i * 7) % 31 for i in range(count)]
    files = [work / f"part{i:02d}.mp4" for i in range(count)]
    if all(f.exists() for f in files):
        return files
    work.mkdir(parents=True, exist_ok=True)
    source = work / "source.mp4"
    total = sum(lengths)
    _run([
        FFMPEG, "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25",
        "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000", "-t", str(total),
        "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "2",
        "-x264-params", "bframes=2", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0",
        "-b:v", "2500k", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-ac", "2",
        str(source),
    ])  # fmt: skip
    start = 0
    for path, length in zip(files, lengths, strict=True):
        _run([FFMPEG, "-y", "-ss", str(start), "-i", str(source), "-t", str(length),
              "-c", "copy", "-avoid_negative_ts", "make_zero", str(path)])  # fmt: skip
        start += length
    source.unlink()
    return files


def ffmpeg_concat(inputs: list[Path], out: Path, faststart: bool) -> None:
    """The hand-made baseline: the concat demuxer with stream copy."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in inputs))
    extra = ["-movflags", "+faststart"] if faststart else []
    _run([FFMPEG, "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy",
          *extra, str(out)])  # fmt: skip


def _size(path: Path) -> int:
    size = path.stat().st_size
    if path.suffix == ".m3u8":
        size += sum(p.stat().st_size for p in path.with_suffix("").iterdir())
    return size


def _clean(path: Path) -> None:
    path.unlink(missing_ok=True)
    shutil.rmtree(path.with_suffix(""), ignore_errors=True)


def main() -> None:
    """Run the benchmark and write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cdnrec-merge-bench"))
    args = parser.parse_args()
    inputs = make_inputs(args.work, args.files)
    out = args.work / "out"
    out.mkdir(exist_ok=True)
    three = inputs[:3]
    spans: list[tuple[float | None, float | None]] = [(10.52, 20.52)] * len(three)
    cases: dict[str, tuple[Path, Callable[[Path], object]]] = {
        "cdnrec Type 0 -> MP4 (copy, faststart)": (
            out / "cdnrec.mp4", lambda o: merge(inputs, o, "mp4")),
        "ffmpeg concat -c copy": (out / "ffmpeg.mp4", lambda o: ffmpeg_concat(inputs, o, False)),
        "ffmpeg concat -c copy +faststart": (
            out / "ffmpeg-fs.mp4", lambda o: ffmpeg_concat(inputs, o, True)),
        "cdnrec Type 0 -> M3U8 (copy)": (out / "cdnrec.m3u8", lambda o: merge(inputs, o, "m3u8")),
        "cdnrec Type 1, 3 x 10 s, frame-accurate": (
            out / "crop-exact.mp4", lambda o: merge(three, o, "mp4", spans)),
        "cdnrec Type 1, 3 x 10 s, keyframe (copy)": (
            out / "crop-copy.mp4", lambda o: merge(three, o, "mp4", spans, frame_accurate=False)),
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in cases}
    sizes: dict[str, int] = {}
    for _ in range(args.rounds):
        for name, (target, work) in cases.items():
            _clean(target)
            began = time.perf_counter()
            work(target)
            times[name].append(time.perf_counter() - began)
            sizes[name] = _size(target)
    input_mb = sum(p.stat().st_size for p in inputs) / 1e6
    load = os.getloadavg()
    lines = [
        "| case | output MB | median s | MB/s of output | min s | max s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in cases:
        median = statistics.median(times[name])
        mb = sizes[name] / 1e6
        lines.append(
            f"| {name} | {mb:.1f} | {median:.3f} | {mb / median:.0f} | "
            f"{min(times[name]):.3f} | {max(times[name]):.3f} |"
        )
    base = statistics.median(times["ffmpeg concat -c copy"])
    ours = statistics.median(times["cdnrec Type 0 -> MP4 (copy, faststart)"])
    fast = statistics.median(times["ffmpeg concat -c copy +faststart"])
    summary = (
        f"cdnrec / ffmpeg time ratio: {ours / base:.2f} (plain), {ours / fast:.2f} (both faststart)"
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    command = " ".join(["python", "bench/merge_bench.py", *sys.argv[1:]])
    ffmpeg_version = subprocess.run(
        [FFMPEG, "-version"], capture_output=True, text=True, check=True
    ).stdout.split("\n")[0]
    report = "\n".join(
        [
            f"# Merge benchmark {stamp}",
            "",
            f"Command: `{command}`  ",
            f"Inputs: {len(inputs)} MP4 files, {input_mb:.1f} MB, 720p25 H.264 + AAC, 30-60 s each  ",
            f"Rounds: {args.rounds}, alternating cases; machine: {platform.node()}, "
            f"{os.cpu_count()} CPUs, load {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}  ",
            f"ffmpeg: {ffmpeg_version}",
            "",
            *lines,
            "",
            summary,
            "",
        ]
    )
    print(report)
    results = ROOT / "results"
    results.mkdir(exist_ok=True)
    (results / f"merge-{stamp}.md").write_text(report)


if __name__ == "__main__":
    main()
