"""The local storage target: files stay where the recorder wrote them, made durable with fsync.

Once durable, a stored file's pages leave the page cache (``POSIX_FADV_DONTNEED``): recordings
are written once and rarely read back soon, and the memory they held is reused by the files
being written, where the page cache would otherwise grow into memory never touched before
(docs/decisions/0011-page-cache.md)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from cdnrec.storage.urls import file_url


class LocalStorage:
    """A folder on this machine, served by /files/ with signed URLs."""

    name = "local"

    def __init__(self, root: Path, public_url: str) -> None:
        self.root = root.resolve()
        self._public_url = public_url

    def path_of(self, key: str) -> Path | None:
        """The path of `key` under the root, or None when `key` would leave it (it resolves
        symbolic links: a `stat` per path component)."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            return None
        return path

    async def store(self, key: str, *, read_next: bool = False) -> None:
        """Make the file (and an M3U8's segments) durable on disk. With ``read_next`` the file's
        own pages stay in the page cache: its reader drops them (a recording's checksum,
        decision 0014)."""
        await asyncio.to_thread(self._store, key, read_next)

    def _store(self, key: str, read_next: bool = False) -> None:
        path = self.path_of(key)
        if path is None:
            raise ValueError(f"key {key!r} is outside the storage root")
        _fsync_tree(path, keep=read_next)

    async def delete(self, key: str) -> None:
        """Remove the file (and an M3U8's segments)."""
        path = self.path_of(key)
        if path is None:
            return
        await asyncio.to_thread(_remove, path)

    async def fetch(self, key: str, scratch: Path) -> Path:
        """The file's own path: nothing to download."""
        del scratch
        path = self.path_of(key)
        if path is None or not path.exists():
            raise FileNotFoundError(key)
        return path

    def direct_url(self, key: str) -> str | None:
        """Local files are served by /files/ itself."""
        del key
        return None

    def url(self, app_id: int, secret: str, key: str, expires: int) -> str:
        """A signed URL for downloading or playing `key` until `expires` (Unix seconds)."""
        return file_url(self._public_url, app_id, secret, key, expires)


def _fsync(path: Path, *, release: bool = True) -> None:
    """Make ``path`` durable; then let a file's pages leave the page cache (``release``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        if release and hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _fsync_tree(path: Path, *, keep: bool = False) -> None:
    _fsync(path, release=not keep)
    segments = path.with_suffix("") if path.suffix == ".m3u8" else None
    if segments is not None and segments.is_dir():
        for child in segments.iterdir():
            _fsync(child)
        _fsync(segments, release=False)
    _fsync(path.parent, release=False)


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    segments = path.with_suffix("") if path.suffix == ".m3u8" else None
    if segments is not None and segments.is_dir():
        for child in segments.iterdir():
            child.unlink(missing_ok=True)
        segments.rmdir()
