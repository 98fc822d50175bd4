"""Waiting for writes to the database files (inotify) instead of looking on a timer."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest

from cdnrec.store import Store
from cdnrec.store import watch as watch_module
from cdnrec.store.revision import SETTLE, Revision, quiet
from cdnrec.store.watch import FileWatch
from tests.store.test_revision import _WRITE


@pytest.fixture
def watch(tmp_path: Path) -> AsyncIterator[FileWatch]:
    opened = FileWatch.open(tmp_path, ["watched.db", "watched.db-wal"])
    assert opened is not None, "this system cannot watch files (inotify)"
    yield opened
    opened.close()


async def test_a_write_to_a_watched_file_wakes_a_waiter(watch: FileWatch, tmp_path: Path) -> None:
    seen = watch.generation
    waiting = asyncio.create_task(watch.after(seen))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    (tmp_path / "watched.db-wal").write_bytes(b"x")
    await asyncio.wait_for(waiting, 5)
    assert watch.generation > seen


async def test_writes_to_other_files_of_the_folder_wake_nobody(
    watch: FileWatch, tmp_path: Path
) -> None:
    seen = watch.generation
    waiting = asyncio.create_task(watch.after(seen))
    (tmp_path / "other.txt").write_bytes(b"x")
    (tmp_path / "watched.db-shm").write_bytes(b"x")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(waiting), 0.3)
    assert watch.generation == seen
    waiting.cancel()


async def test_a_write_while_nobody_waits_wakes_the_next_waiter_at_once(
    watch: FileWatch, tmp_path: Path
) -> None:
    """Nobody waiting: the watch is off the loop and the kernel keeps the event."""
    seen = watch.generation
    first = asyncio.create_task(watch.after(seen))
    await asyncio.sleep(0.05)
    (tmp_path / "watched.db").write_bytes(b"1")
    await asyncio.wait_for(first, 5)
    seen = watch.generation
    (tmp_path / "watched.db").write_bytes(b"2")  # no waiter now
    await asyncio.wait_for(watch.after(seen), 5)
    assert watch.generation > seen


async def test_a_generation_already_passed_returns_at_once(watch: FileWatch) -> None:
    await asyncio.wait_for(watch.after(watch.generation - 1), 0.1)


class _Counted:
    """A store's revision that counts how often it was looked at."""

    def __init__(self, revision: Revision) -> None:
        self._revision = revision
        self.changes = revision.changes
        self.looks = 0

    @property
    def settled(self) -> bool:
        return self._revision.settled

    def __call__(self) -> Awaitable[object]:
        self.looks += 1
        return self._revision()


async def test_quiet_does_not_look_while_nothing_is_written_and_returns_after_a_commit(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """Another process's commit ends the wait soon, although ``longest`` is a minute; before
    it, the database was looked at once, not every ``every``."""
    assert sqlite_store.revision.changes is not None
    revision = _Counted(sqlite_store.revision)
    seen = await revision()
    await asyncio.sleep(SETTLE)
    seen = await revision()  # the store's own writes have settled
    revision.looks = 0
    waiting = asyncio.create_task(quiet(asyncio.Event(), revision, seen, every=0.02, longest=60.0))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    assert revision.looks == 1  # 25 periods of `every` went by
    started = time.monotonic()
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", _WRITE, str(tmp_path / "cdnrec.db")], check=True
    )
    await asyncio.wait_for(waiting, 10)
    assert time.monotonic() - started < 5
    assert revision.looks >= 1


async def test_quiet_over_a_watched_store_returns_at_once_when_nudged(sqlite_store: Store) -> None:
    seen = await sqlite_store.revision()
    wake = asyncio.Event()
    waiting = asyncio.create_task(
        quiet(wake, sqlite_store.revision, seen, every=0.01, longest=60.0)
    )
    await asyncio.sleep(0.1)
    wake.set()
    await asyncio.wait_for(waiting, 1)


async def test_the_process_s_own_commits_wake_waiters_only_later(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit of this process writes the watched files too: waiters are woken once,
    ``OWN_LATER`` seconds after it; another process's commit wakes them at once."""
    monkeypatch.setattr(watch_module, "OWN_LATER", 1.0)
    changes = sqlite_store.revision.changes
    assert changes is not None
    seen = changes.generation
    waiting = asyncio.create_task(changes.after(seen))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await sqlite_store.recorders.heartbeat("this", 1, 1)
    await sqlite_store.recorders.heartbeat("this", 2, 2)
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started >= 1.0
    assert changes.generation == seen + 1  # one wake for both commits

    seen = changes.generation
    waiting = asyncio.create_task(changes.after(seen))
    await sqlite_store.recorders.heartbeat("this", 3, 3)
    started = time.monotonic()
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", _WRITE, str(tmp_path / "cdnrec.db")], check=True
    )
    await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 1.0  # not held back with the own commit before it


async def test_a_doubt_that_finds_no_other_commit_wakes_only_waiters_that_saw_another_revision(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OWN_LATER`` after our own commit the watch looks once itself: a waiter that has seen
    the revision it finds sleeps on, one that had seen another (or none in particular) wakes."""
    monkeypatch.setattr(watch_module, "OWN_LATER", 0.5)
    changes = sqlite_store.revision.changes
    assert changes is not None
    now = await sqlite_store.revision()
    generation = changes.generation
    current = asyncio.create_task(changes.after(generation, now))
    stale = asyncio.create_task(changes.after(generation, ("another connection", 0)))
    anything = asyncio.create_task(changes.after(generation))
    await asyncio.sleep(0.05)
    await sqlite_store.recorders.heartbeat("this", 1, 1)
    await asyncio.wait_for(asyncio.gather(stale, anything), 5)
    assert changes.doubts == 1
    await asyncio.sleep(0.2)
    assert not current.done()
    assert await sqlite_store.revision() == now
    current.cancel()
