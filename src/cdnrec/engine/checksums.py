"""Checksums of recorded files, read back after the files are announced (decision 0014).

A file's SHA-256 reads the whole file back: tens of megabytes to gigabytes at ZEGO's recording
intervals (5 minutes to 2 hours), and a hundred files at once when a StopCDNRecord ends a hundred
recordings. Read before a file was announced, it held up the file's callback by the time it took,
and at a mass stop by the time all of them took. So a file is announced first and read back
after, by one thread of the process at the lowest priority (nice 19): recording and announcing
go first, and the checksum follows, within seconds when the machine has room.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from cdnrec.engine.formats.pages import release_fd

log = logging.getLogger(__name__)

Report = Callable[[list[tuple[str, str]]], None]
"""Receives checksums as (key, SHA-256 hex digest), on the checksum thread."""

EVERY = 1.0
"""Seconds between two reports while files keep coming (one write of the store each)."""

_TIMEOUT = object()


class Checksums:
    """One low-priority thread reading files back for their SHA-256, reported in batches."""

    def __init__(self, report: Report, *, every: float = EVERY) -> None:
        self._report = report
        self._every = every
        self._queue: queue.SimpleQueue[tuple[io.BufferedReader, str] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, path: Path, key: str) -> None:
        """Read ``path`` back for the file stored at ``key``. It is opened now: a storage target
        may remove it once stored (S3 staging). A file that cannot be opened is logged and left
        without a checksum."""
        try:
            f = path.open("rb")
        except OSError as e:
            log.warning("checksum of %s skipped: %s", key, e)
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="checksums", daemon=True)
                self._thread.start()
        self._queue.put((f, key))

    def close(self, timeout: float) -> bool:
        """Read and report what was handed in, then stop the thread; False when it was still
        reading after ``timeout`` seconds."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return True
        self._queue.put(None)
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        _lowest_priority()
        pending: list[tuple[str, str]] = []
        last = time.monotonic()
        while True:
            wait = None if not pending else max(0.0, last + self._every - time.monotonic())
            try:
                item: object = self._queue.get(timeout=wait)
            except queue.Empty:
                item = _TIMEOUT
            if item is None:
                break
            if isinstance(item, tuple):
                f, key = item
                digest = _digest(f, key)
                if digest is not None:
                    pending.append((key, digest))
            if pending and time.monotonic() - last >= self._every:
                self._send(pending)
                pending, last = [], time.monotonic()
        if pending:
            self._send(pending)

    def _send(self, sums: list[tuple[str, str]]) -> None:
        try:
            self._report(sums)
        except Exception:
            log.exception("checksums: reporting %d failed", len(sums))


def _digest(f: io.BufferedReader, key: str) -> str | None:
    """The SHA-256 of an open file, which is then closed; its pages leave the page cache
    (decision 0011). None, logged, when it cannot be read."""
    with f:
        try:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as e:
            log.warning("checksum of %s failed: %s", key, e)
            return None
        release_fd(f.fileno())
        return digest


def _lowest_priority() -> None:
    """Give the calling thread the lowest CPU priority (Linux: a thread's own nice value)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
