"""The on-disk layout: where partial and final files live (used by writers, repair and retention).

Final files follow the plan's path template under the storage root. A file being written lives
under ``<root>/.partial/<recording_id>/`` as ``<format>_<begin_ms>.<ext>.part`` (an M3U8 recording
is a directory ``m3u8_<begin_ms>.hls/`` holding ``index.m3u8`` and its ``.ts`` segments), next to a
JSON sidecar that says what it is, so that ``repair`` can finish it after a crash. A final M3U8
playlist ``X.m3u8`` keeps its segments in the sibling directory ``X/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cdnrec.engine.plan import DEFAULT_PATH_TEMPLATE

PARTIAL_DIR = ".partial"
"""Name of the folder under the storage root that holds files still being written."""

EXTENSIONS = {"flv": "flv", "mp4": "mp4", "aac": "aac", "mp3": "mp3", "m3u8": "m3u8"}
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class PartialInfo:
    """What a partial file is: enough to turn it into a final file without the recorder."""

    path: Path
    format: str
    app_id: int
    stream_id: str
    begin_ms: int
    recording_id: str
    path_template: str


class Layout:
    """Names partial and final files under one storage root."""

    def __init__(self, storage_root: Path, path_template: str = DEFAULT_PATH_TEMPLATE) -> None:
        self.root = Path(storage_root).resolve()
        self.path_template = path_template

    def partial_path(self, recording_id: str, fmt: str, begin_ms: int) -> Path:
        """Path of a new partial file (for ``m3u8``: a directory) of this recording."""
        name = (
            f"{fmt}_{begin_ms}.hls" if fmt == "m3u8" else f"{fmt}_{begin_ms}.{EXTENSIONS[fmt]}.part"
        )
        return self._partials(recording_id) / name

    def _partials(self, recording_id: str) -> Path:
        """The folder of one recording's partials."""
        return self.root / PARTIAL_DIR / (_SAFE.sub("_", recording_id)[:120] or "recording")

    def register_partial(self, info: PartialInfo) -> None:
        """Create the partial's folder and write its sidecar (atomically)."""
        info.path.parent.mkdir(parents=True, exist_ok=True)
        data = asdict(info)
        data["path"] = info.path.name
        side = sidecar_of(info.path)
        tmp = side.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, side)

    def reserve_final(self, info: PartialInfo, end_ms: int) -> Path:
        """A final path for ``info`` ending at ``end_ms``, never outside the storage root, and
        taken at once: it is created empty (``O_EXCL``), so that a recording that closes a file
        with the same name at the same moment (another vendor's task of the same stream) gets
        ``-2`` instead of overwriting it. The caller replaces it with the file (``os.replace``)."""
        begin_s, end_s = info.begin_ms // 1000, max(end_ms, info.begin_ms) // 1000
        date = datetime.fromtimestamp(begin_s, UTC).strftime("%Y%m%d")
        rel = info.path_template.format(
            app_id=info.app_id,
            stream_id=info.stream_id,
            date=date,
            begin=begin_s,
            end=end_s,
            ext=EXTENSIONS[info.format],
        )
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"path template leaves the storage root: {rel!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        stem, suffix, n = path.stem, path.suffix, 1
        while not _take(path, info.format == "m3u8"):
            n += 1
            path = path.with_name(f"{stem}-{n}{suffix}")
        return path

    def key(self, path: Path) -> str:
        """The storage key of a final file: its path relative to the root, POSIX style."""
        return path.resolve().relative_to(self.root).as_posix()

    def find_partials(self) -> list[PartialInfo]:
        """Every partial file under the root that has a sidecar (orphans after a crash)."""
        return _sidecars((self.root / PARTIAL_DIR).glob("*/*.json"))

    def partials_of(self, recording_id: str) -> list[PartialInfo]:
        """The partials of one recording that have a sidecar (once it ended: left by a crash)."""
        return _sidecars(self._partials(recording_id).glob("*.json"))


def _sidecars(sides: Iterable[Path]) -> list[PartialInfo]:
    """The partials these sidecars describe, in name order (unreadable ones left out)."""
    found = []
    for side in sorted(sides):
        try:
            found.append(read_sidecar(side))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def _take(path: Path, with_segments: bool) -> bool:
    """Create ``path`` empty unless it (or, for a playlist, its segments' folder) exists."""
    if with_segments and segments_dir(path).exists():
        return False
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    return True


def sidecar_of(partial: Path) -> Path:
    """The JSON sidecar describing ``partial``."""
    return partial.with_name(partial.name + ".json")


def read_sidecar(side_or_partial: Path) -> PartialInfo:
    """Read a partial's sidecar (pass the sidecar or the partial itself)."""
    side = side_or_partial if side_or_partial.suffix == ".json" else sidecar_of(side_or_partial)
    data = json.loads(side.read_text())
    return PartialInfo(
        path=side.with_name(str(data["path"])),
        format=str(data["format"]),
        app_id=int(data["app_id"]),
        stream_id=str(data["stream_id"]),
        begin_ms=int(data["begin_ms"]),
        recording_id=str(data["recording_id"]),
        path_template=str(data["path_template"]),
    )


def segments_dir(playlist: Path) -> Path:
    """The folder holding the segments of the final playlist ``playlist``."""
    return playlist.with_suffix("")


def remove_partial(info: PartialInfo) -> None:
    """Remove what is left of a partial after it became final (sidecar, empty folders)."""
    sidecar_of(info.path).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        info.path.parent.rmdir()
