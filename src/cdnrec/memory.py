"""The process's memory allocator (glibc malloc): how many arenas its threads share, and giving
freed memory back to the system.

glibc gives a thread that allocates its own arena, up to eight per core. What a thread frees
stays in its arena for that arena's next allocations, so every recording thread kept the peak of
its own short-lived buffers. Ten recordings from one nginx-rtmp origin measured 66 MB more
resident memory than the idle service with glibc's default, 37 MB with two arenas. The service's
threads mostly allocate while holding the GIL, so they rarely contend for an arena. An
operator's ``MALLOC_ARENA_MAX`` (read by glibc at start) is left as it is.

A pull's probe decodes a frame to learn the stream (about 6 MB of buffers for 720p H.264) and
frees it at once; glibc keeps such memory resident until it is trimmed (``release_free``).

Elsewhere than glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

ARENAS = 2
"""Arenas for the service (``MALLOC_ARENA_MAX=2``, as often advised for threaded servers)."""

_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)

_limit: int | None = None


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap the arenas threads created from now on may use; True when it is done. Call it before
    the service starts its threads: an arena once made stays."""
    global _limit
    libc = _glibc()
    if libc is None or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    if not libc.mallopt(_M_ARENA_MAX, arenas):
        return False
    _limit = arenas
    return True


def arena_limit() -> int | None:
    """The cap ``limit_arenas`` set in this process (None: glibc's own, or the environment's)."""
    return _limit


def release_free() -> None:
    """Give the memory freed in every arena back to the system (``malloc_trim``, about a
    millisecond): for after a large short-lived allocation, as a probe's decoded frame."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
