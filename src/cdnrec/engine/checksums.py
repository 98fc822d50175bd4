"""Checksums of recorded files, read back after the files are announced (decision 0014).

A file's SHA-256 reads the whole file back: tens of megabytes to gigabytes at ZEGO's recording
intervals (5 minutes to 2 hours), and a hundred files at once when a StopCDNRecord ends a hundred
recordings. Read before a file was announced, it held up the file's callback by the time it took,
and at a mass stop by the time all of them took. So a file is announced first and read back
after, by one thread of the process at the lowest priority (nice 19): recording and announcing
go first, and the checksum follows, within seconds when the machine has room.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from cdnrec.engine.formats.pages import release_fd
from cdnrec.store import RecordedFile
from cdnrec.store.files import FileRepo

log = structlog.get_logger("cdnrec.engine")

Report = Callable[[list[tuple[str, str]]], None]
"""Receives checksums as (key, SHA-256 hex digest), on the checksum thread."""

EVERY = 1.0
"""Seconds between two reports while files keep coming (one hand-over to the event loop each;
the supervisor's next transaction writes them, decision 0016)."""

OPEN_AHEAD = 64
"""Files kept open while they wait to be read; those handed in beyond are opened when read (a
thread starved of CPU must not hold a descriptor per file of the whole machine's backlog)."""

_TIMEOUT = object()


class Checksums:
    """One low-priority thread reading files back for their SHA-256, reported in batches."""

    def __init__(self, report: Report, *, every: float = EVERY) -> None:
        self._report = report
        self._every = every
        self._queue: queue.SimpleQueue[tuple[io.BufferedReader | Path, str] | None]
        self._queue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._open = 0
        """Files opened by ``add`` and not read yet."""

    def add(self, path: Path, key: str) -> None:
        """Read ``path`` back for the file stored at ``key``. It is opened now (up to
        ``OPEN_AHEAD`` waiting files): a storage target may remove it once stored (S3 staging).
        A file that cannot be opened is logged and left without a checksum."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="checksums", daemon=True)
                self._thread.start()
            ahead = self._open < OPEN_AHEAD
            if ahead:
                self._open += 1
        if ahead:
            f = _opened(path, key)
            if f is None:
                with self._lock:
                    self._open -= 1
                return
            self._queue.put((f, key))
        else:
            self._queue.put((path, key))

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
                digest = self._read(*item)
                if digest is not None:
                    pending.append((item[1], digest))
            if pending and time.monotonic() - last >= self._every:
                self._send(pending)
                pending, last = [], time.monotonic()
        if pending:
            self._send(pending)

    def _read(self, file: io.BufferedReader | Path, key: str) -> str | None:
        if isinstance(file, Path):
            opened = _opened(file, key)
            return None if opened is None else _digest(opened, key)
        with self._lock:
            self._open -= 1
        return _digest(file, key)

    def _send(self, sums: list[tuple[str, str]]) -> None:
        try:
            self._report(sums)
        except Exception:
            log.exception("checksums.report_failed", files=len(sums))


class ReadBack:
    """Has recorded files read back for their checksum (``Checksums``) and keeps the digests
    until the supervisor's next transaction takes them (``take``; decision 0016). Used on the
    event loop."""

    def __init__(self, files: FileRepo, root: Path) -> None:
        self._files = files
        self._root = root
        self._checksums = Checksums(self._read)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sums: list[tuple[str, str]] = []

    def add(self, records: Iterable[RecordedFile]) -> None:
        """Read back files whose close is written (before a storage target may take them)."""
        self._loop = asyncio.get_running_loop()
        for record in records:
            if record.key is not None:
                self._checksums.add(self._root / record.key, record.key)

    async def sweep(self) -> None:
        """Read back the recordings that a process stopped before it wrote their checksums
        (those whose storage target took them from this folder are left without)."""
        try:
            missing = await self._files.without_checksum()
        except Exception:
            log.exception("checksums.sweep_failed")
            return
        present = [f for f in missing if f.key and (self._root / f.key).is_file()]
        if present:
            log.info("checksums.missing", files=len(present))
            self.add(present)

    def take(self) -> list[tuple[str, str]]:
        """The digests read since the last ``take``, as (key, SHA-256 hex digest), for the
        caller to write."""
        sums, self._sums = self._sums, []
        return sums

    def give_back(self, sums: list[tuple[str, str]]) -> None:
        """Digests taken whose write failed: the next ``take`` returns them again."""
        self._sums[:0] = sums

    async def close(self, grace: float) -> None:
        """Read what was handed in, for up to ``grace`` seconds, and write the digests not
        taken yet (what is left is read at the next start)."""
        await asyncio.to_thread(self._checksums.close, grace)
        sums = self.take()  # the thread's last report ran on the loop before the join returned
        if not sums:
            return
        try:
            await self._files.set_checksums(sums)
        except Exception:
            log.exception("checksums.write_failed", files=len(sums))

    def _read(self, sums: list[tuple[str, str]]) -> None:
        """Checksums were read (on the checksum thread): keep them, on the loop."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._sums.extend, sums)


def _opened(path: Path, key: str) -> io.BufferedReader | None:
    try:
        return path.open("rb")
    except OSError as e:
        log.warning("checksums.skipped", key=key, error=str(e))
        return None


def _digest(f: io.BufferedReader, key: str) -> str | None:
    """The SHA-256 of an open file, which is then closed; its pages leave the page cache
    (decision 0011). None, logged, when it cannot be read."""
    with f:
        try:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as e:
            log.warning("checksums.read_failed", key=key, error=str(e))
            return None
        release_fd(f.fileno())
        return digest


def _lowest_priority() -> None:
    """Give the calling thread the lowest CPU priority (Linux: a thread's own nice value)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
