"""Files being written keep only their last few megabytes in the page cache.

A recording is written once and rarely read back soon. Left alone, its pages stay in the page
cache until memory runs short, so recording grows the cache by the streams' bitrate. On a
virtual machine that hands freed memory back to its host (free page reporting), every one of
those pages is memory the guest touches for the first time, which cost about six times as much
CPU per byte written here as a page reused (docs/decisions/0011-page-cache.md). So as a file
grows, the recording's own thread asks the kernel to write its older part back and drop it;
the local storage target drops the rest once the file is stored.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

HEAD = 4096
"""The first page of a file stays: writers fill in its header when the file closes (FLV's
duration and size), which would otherwise read it back from disk on a pump thread."""

RELEASE_EVERY = 4 << 20
"""Bytes a file grows between two asks to drop its older pages (16 s of a 2 Mbit/s stream): a
file being written holds at most about three times this in the page cache."""


def release_pages(path: Path, start: int = 0, end: int = 0) -> None:
    """Ask the kernel to write bytes ``start`` to ``end`` of ``path`` (0: to its end) back to
    disk, and to drop from the page cache those already written back; the rest drops at the
    next ask. A file that is gone, or a system without ``posix_fadvise``, is left alone."""
    if not hasattr(os, "posix_fadvise") or (end and end <= start):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, start, end - start if end else 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass
    finally:
        os.close(fd)


class PageRelease:
    """Drops the older pages of one growing file: each time it grew by ``RELEASE_EVERY`` bytes,
    all but its first page and its last ``RELEASE_EVERY`` bytes, on the thread that ``defer``
    runs work on (the recording's own, not the pump's)."""

    def __init__(self, path: Path, defer: Callable[[Callable[[], None]], None]) -> None:
        self.path = path
        self.defer = defer
        self.every = RELEASE_EVERY
        self.next = 2 * self.every

    def grown(self, size: int) -> None:
        """The file is now ``size`` bytes long."""
        if size >= self.next:
            self.next = size + self.every
            self.defer(functools.partial(release_pages, self.path, HEAD, size - self.every))
