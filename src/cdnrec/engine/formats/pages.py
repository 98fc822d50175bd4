"""Files being written keep only their last megabytes in the page cache.

A recording is written once and rarely read back soon. Left alone, its pages stay in the page
cache until memory runs short, so recording grows the cache by the streams' bitrate. On a
virtual machine that hands freed memory back to its host (free page reporting), every one of
those pages is memory the guest touches for the first time, which cost about five times as much
CPU per byte written here as a page reused (docs/decisions/0011-page-cache.md). So once a file
is longer than ``KEEP``, the thread that writes it asks the kernel, as the file grows, to write
back what fell out of its last ``KEEP`` bytes and to drop what it asked to write back the time
before: the memory freed is reused within a second or two by the next writes, before it goes
back to the host. The local storage target drops the rest once the file is stored. A file
shorter than ``KEEP`` stays in the cache until then, so its checksum is read from memory.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PAGE = 4096

HEAD = PAGE
"""The first page of a file stays: writers fill in its header when the file closes (FLV's
duration and size), which would otherwise read it back from disk."""

KEEP = 16 << 20
"""The last bytes of a growing file that stay in the page cache (a minute of a 2 Mbit/s
stream): shorter files are read back from memory for their checksum when they close."""

RELEASE_EVERY = 256 << 10
"""Bytes a file grows between two asks (about a second of a 2 Mbit/s stream, which its pull
writes at once)."""


def release_pages(path: Path) -> None:
    """Ask the kernel to write ``path`` back to disk and to drop from the page cache what is
    already written back (the rest drops at a later ask). A file that is gone is left alone."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        release_fd(fd)
    finally:
        os.close(fd)


def release_fd(fd: int) -> None:
    """``release_pages`` by an open descriptor (nothing on a system without ``posix_fadvise``)."""
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


class PageRelease:
    """Drops the written part of one growing file ``KEEP`` bytes behind the writes.

    Each time that part grew by ``RELEASE_EVERY`` bytes, one ``posix_fadvise`` over its last two
    ranges: the kernel starts writing back the newer (what fell behind since the last ask) and
    drops the older (whose write-back the last ask started). Only whole pages, none before
    ``HEAD``.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.every = RELEASE_EVERY if hasattr(os, "posix_fadvise") else float("inf")
        self.keep = KEEP
        self.start = HEAD  # the older range: [start, end)
        self.end = HEAD

    def grown(self, size: int) -> None:
        """The file is now ``size`` bytes long."""
        end = size - self.keep
        end -= end % PAGE
        if end - self.end >= self.every:
            with contextlib.suppress(OSError):
                os.posix_fadvise(self.fd, self.start, end - self.start, os.POSIX_FADV_DONTNEED)
            self.start, self.end = self.end, end
