"""Where a merge's output goes under the storage root, and the compose callback's body."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from cdnrec.store.jobs import Job

EXTENSIONS = {"mp4": "mp4", "mp3": "mp3", "m3u8": "m3u8"}


def safe_name(raw: str, fmt: str, fallback: str) -> str:
    """A file name stem from a user's OutputFileName: no separators, no leading dots, short."""
    name = raw.strip()
    if name.lower().endswith("." + fmt):
        name = name[: -len(fmt) - 1]
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:100]
    return name or fallback


def output_key(root: Path, job: Job) -> str:
    """`{app_id}/merged/{YYYYMMDD}/{name}.{ext}`, made unique if that name is taken."""
    fmt = job.request.format
    day = datetime.fromtimestamp(job.created_ms / 1000, UTC).strftime("%Y%m%d")
    folder = f"{job.app_id}/merged/{day}"
    stem = safe_name(job.request.output_name, fmt, job.id)
    key = f"{folder}/{stem}.{EXTENSIONS[fmt]}"
    if taken(root / key):
        key = f"{folder}/{stem}-{job.id[:12]}.{EXTENSIONS[fmt]}"
    return key


def taken(path: Path) -> bool:
    """Whether a file (or an M3U8's segment folder) already exists at `path`."""
    return path.exists() or (path.suffix == ".m3u8" and path.with_suffix("").exists())


def move_into_place(staged: Path, final: Path) -> None:
    """Move a finished output (an M3U8's segment folder first, its playlist last) to `final`."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if staged.suffix == ".m3u8":
        shutil.rmtree(final.with_suffix(""), ignore_errors=True)
        os.replace(staged.with_suffix(""), final.with_suffix(""))
    os.replace(staged, final)


def compose_payload(
    job: Job, *, code: str, message: str, replay_url: str = "", file_id: str = ""
) -> dict[str, str]:
    """The `compose` callback for a job (zego-api.md §6.3), before it is signed."""
    return {
        "appid": str(job.app_id),
        "event": "compose",
        "replay_url": replay_url,
        "task_id": job.task_id,
        "file_id": file_id,
        "code": code,
        "message": message,
    }
