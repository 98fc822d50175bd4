"""What every storage target does (local folder, S3-compatible bucket)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Storage(Protocol):
    """A place where finished files are kept and served from.

    Files are first written under the local storage root (the staging area) by whoever makes
    them (a recorder, a merge); `store` makes a file durable in the target, after which its
    callback may be sent.
    """

    name: str

    async def store(self, key: str) -> None:
        """Make the file staged at `key` (and an M3U8's segments) durable in the target."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the file (and an M3U8's segments) from the target."""
        ...

    async def fetch(self, key: str, scratch: Path) -> Path:
        """A local path from which the file at `key` can be read (downloaded into `scratch`)."""
        ...

    def url(self, app_id: int, secret: str, key: str, expires: int) -> str:
        """A URL to download or play `key` until `expires` (Unix seconds)."""
        ...

    def direct_url(self, key: str) -> str | None:
        """Where /files/ redirects a request for `key` (None: served from the local folder)."""
        ...
