"""Telling cheaply whether the database changed, and the waits of pollers built on it."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Connection

from cdnrec.callbacks.sender import LOOKAHEAD, CallbackSender
from cdnrec.config import CallbackSettings, RecorderSettings
from cdnrec.engine.supervisor import Supervisor
from cdnrec.store import App, Store
from cdnrec.store import watch as watch_module
from cdnrec.store.cache import AppCache
from cdnrec.store.database import open_engine
from cdnrec.store.deliveries import NewDelivery
from cdnrec.store.revision import SETTLE, quiet, revision_for, watched
from cdnrec.store.threaded import ThreadedEngine
from cdnrec.store.watch import OWN_LATER
from tests.store.test_store_contract import task_of
from tests.support.receiver import Receiver

SECRET = "0123456789abcdef0123456789abcdef"


async def executed(store: Store, containing: str = "") -> list[str]:
    """The statements the store's SQLite connection runs from now on (those containing
    `containing`), as SQLite itself reports them: also those sent to the driver directly."""
    seen: list[str] = []

    def record(statement: str) -> None:
        if containing in statement:
            seen.append(statement)

    def install(conn: Connection) -> None:
        raw = conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        raw.set_trace_callback(record)

    assert isinstance(store.engine, ThreadedEngine)
    await store.engine.run(install)
    return seen


_WRITE = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO recorders (owner, capacity, seen_ms) VALUES ('other', 1, 1)")
db.commit()
"""


async def test_a_commit_of_another_process_changes_the_revision_and_reads_do_not(
    sqlite_store: Store, tmp_path: Path
) -> None:
    before = await sqlite_store.revision()
    assert before is not None
    await sqlite_store.recorders.room(0)
    await sqlite_store.tasks.get("missing")
    assert await sqlite_store.revision() == before
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", _WRITE, str(tmp_path / "cdnrec.db")], check=True
    )
    assert await sqlite_store.revision() != before
    db = sqlite3.connect(tmp_path / "cdnrec.db")
    assert db.execute("SELECT owner FROM recorders").fetchall() == [("other",)]
    db.close()


async def test_commits_of_this_process_leave_the_revision_alone(sqlite_store: Store) -> None:
    """They reach the pollers of this process by nudges; the heartbeat wakes nobody."""
    before = await sqlite_store.revision()
    await sqlite_store.recorders.heartbeat("me", 3, 1)
    await sqlite_store.tasks.start(task_of("s1"))
    assert await sqlite_store.revision() == before


async def test_stores_that_cannot_tell_have_no_revision() -> None:
    for url in (
        "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        "sqlite:///:memory:",
        "sqlite://",
    ):
        engine = open_engine(url)
        assert await revision_for(engine)() is None
        await engine.dispose()


class _Looks:
    """A revision that counts how often it was looked at (on a timer: no watch)."""

    changes = None
    settled = True

    def __init__(self, values: list[object]) -> None:
        self.values = values
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        return self.values[min(self.calls, len(self.values)) - 1]


async def test_quiet_returns_at_once_when_nudged() -> None:
    wake = asyncio.Event()
    wake.set()
    looks = _Looks(["a"])
    await quiet(wake, looks, "a", every=10.0, longest=60.0)
    assert looks.calls == 0


async def test_quiet_returns_at_the_first_look_that_sees_a_change() -> None:
    looks = _Looks(["a", "a", "b"])
    await quiet(asyncio.Event(), looks, "a", every=0.01, longest=60.0)
    assert looks.calls == 3


async def test_quiet_without_a_change_waits_the_longest_looking_every_time() -> None:
    looks = _Looks(["a"])
    await quiet(asyncio.Event(), looks, "a", every=0.01, longest=0.2)
    assert looks.calls >= 5


async def test_quiet_for_a_store_that_cannot_tell_waits_one_period() -> None:
    looks = _Looks([None])
    await quiet(asyncio.Event(), looks, None, every=0.01, longest=60.0)
    assert looks.calls == 0


async def test_the_supervisor_reads_only_when_the_database_changed(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """No statements while nothing changes; a task another process started is claimed at the
    next look (poll 0.05 s; the heartbeat is minutes away)."""
    statements = await executed(sqlite_store)
    settings = RecorderSettings(poll=0.05, lease=600.0)
    supervisor = Supervisor(sqlite_store, tmp_path / "files", settings, owner="me")
    running = asyncio.create_task(supervisor.run())
    other = await Store.open(f"sqlite:///{tmp_path / 'cdnrec.db'}", migrate_schema=False)
    try:
        deadline = time.monotonic() + 10
        while not statements:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the first round's own writes are looked at once
        statements.clear()
        await asyncio.sleep(0.5)
        assert statements == []
        now_ms = int(time.time() * 1000)
        due = replace(task_of("s1"), created_ms=now_ms, deadline_ms=now_ms + 3_600_000)
        task, _ = await other.tasks.start(due)
        while supervisor.running == 0:
            assert time.monotonic() < deadline, statements
            await asyncio.sleep(0.05)
        claimed = await other.tasks.get(task.id)
        assert claimed is not None
        assert claimed.owner == "me"
    finally:
        await supervisor.close(grace=5)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await other.close()


async def test_a_quiet_supervisor_reads_no_tasks_between_its_heartbeats(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """With nothing changed and no lease held on another task, the heartbeat renews leases and
    no poll reads the tasks."""
    statements = await executed(sqlite_store)
    settings = RecorderSettings(poll=0.05, lease=1.5)  # a heartbeat every 0.5 s
    supervisor = Supervisor(sqlite_store, tmp_path / "files", settings, owner="me")
    running = asyncio.create_task(supervisor.run())
    try:
        deadline = time.monotonic() + 10
        while not any("UNION ALL" in s for s in statements):  # the first round polls
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        statements.clear()
        await asyncio.sleep(1.6)
        beats = [s for s in statements if "INSERT INTO recorders" in s]
        polls = [s for s in statements if "UNION ALL" in s]
        assert len(beats) >= 2, statements
        assert polls == []
    finally:
        await supervisor.close(grace=5)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_quiet_told_the_watch_s_generation_does_not_look_after_the_poller_s_own_commits(
    sqlite_store: Store,
) -> None:
    """Own commits wake nobody (watch.py). Told ``since`` (the generation before the poller read
    the revision), quiet waits for writes at once and does not look; not told, it looks
    ``every`` seconds after the poller's work (a wake of its own)."""
    revision = sqlite_store.revision
    pragmas = await executed(sqlite_store, "data_version")
    counts = []
    for seen_ms, told in enumerate((True, False)):
        await asyncio.sleep(SETTLE + 0.05)  # the store's last write has settled
        since = watched(revision)
        seen = await revision()
        await sqlite_store.recorders.heartbeat("me", 3, seen_ms)  # the poller's own work
        pragmas.clear()
        await quiet(
            asyncio.Event(), revision, seen, every=0.05, longest=0.5, since=since if told else None
        )
        counts.append(len(pragmas))
    assert counts == [0, 1]


async def test_quiet_does_not_look_again_for_writes_a_doubt_found_left_its_revision(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch doubts our own writes ``OWN_LATER`` later, which is when the supervisor's next
    heartbeat begins. A doubt that lands while a poller works and finds the revision the poller
    saw leaves it nothing to look at: quiet waits for writes at once. A poller that saw another
    revision looks (and returns: it changed)."""
    monkeypatch.setattr(watch_module, "OWN_LATER", 0.3)
    revision = sqlite_store.revision
    changes = revision.changes
    assert changes is not None
    pragmas = await executed(sqlite_store, "data_version")
    counts = []
    for beat, stale in enumerate((False, True)):
        await asyncio.sleep(SETTLE + 0.05)  # the store's last write has settled
        doubted = asyncio.ensure_future(changes.after(changes.generation))
        await asyncio.sleep(0)  # waiting: the watch reads the writes as they come
        await sqlite_store.recorders.heartbeat("me", 3, 2 * beat)  # the previous heartbeat
        since = watched(revision)
        seen = await revision()
        await asyncio.wait_for(doubted, 5)  # its doubt lands while the poller works
        await sqlite_store.recorders.heartbeat("me", 3, 2 * beat + 1)  # the poller's own work
        pragmas.clear()
        await quiet(
            asyncio.Event(),
            revision,
            ("another connection", 0) if stale else seen,
            every=0.05,
            longest=0.2,  # before the doubt of the poller's own work
            since=since,
        )
        counts.append(len(pragmas))
    assert counts == [0, 1]


async def test_a_look_right_after_a_write_is_trusted_only_once_the_write_settled(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """A commit of another process reaches the WAL file a moment before it is visible: a look
    that soon after its write asks again next time (the pollers look again rather than wait for
    another write)."""
    await sqlite_store.revision()
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", _WRITE, str(tmp_path / "cdnrec.db")], check=True
    )
    await sqlite_store.revision()
    assert not sqlite_store.revision.settled
    await asyncio.sleep(SETTLE + 0.05)
    await sqlite_store.revision()
    assert sqlite_store.revision.settled


async def test_a_look_right_after_our_own_commit_is_trusted_until_the_watch_doubts_it(
    sqlite_store: Store,
) -> None:
    """Our own commit is visible to us at once: no second look for it. When the watch wakes
    its waiters for writes it took for ours (OWN_LATER), the next look asks SQLite again."""
    changes = sqlite_store.revision.changes
    assert changes is not None
    pragmas = await executed(sqlite_store, "data_version")
    woken = asyncio.ensure_future(changes.after(changes.generation))
    await asyncio.sleep(0)  # waiting: the watch reads the writes as they come
    await sqlite_store.recorders.heartbeat("me", 3, 1)
    token = await sqlite_store.revision()
    assert sqlite_store.revision.settled
    assert await sqlite_store.revision() == token
    assert len(pragmas) == 1
    await asyncio.wait_for(woken, OWN_LATER + 2)
    assert changes.doubts == 1
    assert await sqlite_store.revision() == token
    assert len(pragmas) == 2


async def test_pollers_woken_by_one_write_share_one_look(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """After another process's commit, concurrent looks at the same files ask SQLite once."""
    pragmas = await executed(sqlite_store, "data_version")
    before = await sqlite_store.revision()
    await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", _WRITE, str(tmp_path / "cdnrec.db")], check=True
    )
    pragmas.clear()
    tokens = await asyncio.gather(*(sqlite_store.revision() for _ in range(4)))
    assert len(pragmas) == 1
    assert len(set(tokens)) == 1
    assert tokens[0] != before


async def test_the_sender_reads_the_outbox_only_when_the_database_changed(
    sqlite_store: Store, tmp_path: Path
) -> None:
    """An idle sender on SQLite does not read the outbox on a timer; a callback another process
    queued is read once its commit is seen, and sent (signed with the app's secret)."""
    receiver = Receiver().start()
    await sqlite_store.apps.put(App(7, SECRET, callback_url=receiver.url), 0)
    reads = await executed(sqlite_store, "FROM deliveries")
    sender = CallbackSender(sqlite_store, AppCache(sqlite_store.apps), CallbackSettings())
    running = asyncio.create_task(sender.run())
    other = await Store.open(f"sqlite:///{tmp_path / 'cdnrec.db'}", migrate_schema=False)
    try:
        await asyncio.sleep(0.5)
        assert len(reads) == 1  # the first look, at start
        await asyncio.sleep(LOOKAHEAD + 1)
        assert len(reads) == 1  # none on a timer
        queued = NewDelivery(7, "record", "file-1", receiver.url, {"event": "record"})
        await other.deliveries.enqueue_many([queued], int(time.time() * 1000))
        deadline = time.monotonic() + 3 * LOOKAHEAD
        while not receiver.bodies:
            assert time.monotonic() < deadline, reads
            await asyncio.sleep(0.05)
        assert receiver.bodies[0]["event"] == "record"
        assert receiver.bodies[0]["signature"]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await sender.close()
        await other.close()
        receiver.down()
