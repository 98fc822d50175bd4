"""Whether another process wrote to the database: lets pollers skip reads that would find nothing.

Work started in this process reaches its pollers by a nudge, and on PostgreSQL the work of other
processes by NOTIFY; what is left for polling is what another process wrote to a shared SQLite
file. SQLite tells exactly that: ``PRAGMA data_version`` changes when another connection
committed, and not when this one did (a process holds one connection, see ``database.py``). The
pragma is asked only when the database files changed (their size and modification time, two
``stat`` calls: any commit, ours included, changes them), so a quiet process asks nothing.

Where the system reports writes to files (``watch.py``), a poller does not even look on a
timer: it sleeps until a database file is written, then looks at most once per ``every``. Writes
of this process's own commits (noted around each, ``ThreadedEngine.on_commit``) wake it only
``watch.OWN_LATER`` seconds later, and only if the one look the watch then makes finds a revision
the poller had not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection

from cdnrec.store.database import Database
from cdnrec.store.threaded import ThreadedEngine
from cdnrec.store.watch import FileWatch


class Revision(Protocol):
    """A token that differs after another process committed (``None``: cannot tell, read
    anyway), and the writes to the database that may have changed it."""

    changes: FileWatch | None
    """Writes to the database files as they happen (None: look on a timer)."""

    @property
    def settled(self) -> bool:
        """Whether the last token can be trusted until the next write: False while a commit
        written just before the look may not be visible yet."""
        ...

    def __call__(self) -> Awaitable[object]:
        """The current token."""
        ...


SETTLE = 0.25
"""Seconds after a write to the database files before a look that saw no change is trusted.
A commit writes its pages to the WAL file first and becomes visible a moment later (in the
shared-memory index, which changes no file): a look in between sees the old version. A look
at files as this process's own last commit left them is trusted at once (a commit is visible to
the connection that made it); after the watch doubted writes it took for ours (``OWN_LATER``),
the next look asks SQLite again."""


class SqliteRevision:
    """The revision of a SQLite database file: which connection, and its ``data_version``."""

    def __init__(self, engine: Database, database: Path) -> None:
        self._engine = engine
        self._files = (database, Path(f"{database}-wal"))
        self._stamp: tuple[object, ...] = ()
        self._token: object = None
        self._looks: dict[tuple[object, ...], asyncio.Future[object]] = {}
        self._doubts = 0
        self.changes = FileWatch.open(database.parent, [f.name for f in self._files])
        if self.changes is not None and isinstance(engine, ThreadedEngine):
            self.changes.stamp = self._files_stamp
            self.changes.confirm = self._confirmed
            engine.on_commit = self._on_commit

    def _on_commit(self, done: bool) -> None:
        """Tell the watch that a commit of this process writes the files (and how it left them)."""
        assert self.changes is not None
        if done:
            self.changes.own(self._files_stamp())
        else:
            self.changes.writing()

    async def _confirmed(self) -> object:
        """The revision now, for the watch's look after a doubt: a look that came too soon after
        a write to be trusted counts as a change (every waiter looks for itself)."""
        token = await self()
        return token if self.settled else object()

    def _files_stamp(self) -> tuple[tuple[int, int, int] | None, ...]:
        return tuple(_stamp(f) for f in self._files)

    @property
    def settled(self) -> bool:
        """Whether the last look came long enough after the last write to be trusted."""
        return bool(self._stamp)

    async def __call__(self) -> object:
        stamp = self._files_stamp()
        doubts = self.changes.doubts if self.changes is not None else 0
        if stamp == self._stamp and self._token is not None and doubts == self._doubts:
            return self._token
        self._doubts = doubts
        # pollers woken by the same write share one look at the files as they are now
        look = self._looks.get(stamp)
        if look is None:
            look = self._looks[stamp] = asyncio.ensure_future(self._look(stamp))
            look.add_done_callback(lambda _: self._looks.pop(stamp, None))
        return await asyncio.shield(look)

    async def _look(self, stamp: tuple[object, ...]) -> object:
        # the stamp is taken first: a commit while the pragma runs shows at the next look
        async with self._engine.connect() as conn:
            self._token = await conn.run_sync(_version)
        written_ns = max((s[2] for s in stamp if isinstance(s, tuple)), default=0)
        # our own commit is visible to us once done: only another process's may not be yet
        ours = self.changes is not None and self.changes.ours(stamp)
        settled = ours or time.time_ns() - written_ns > SETTLE * 1e9
        self._stamp = stamp if settled else ()  # not settled: ask again at the next look
        return self._token


def _version(conn: Connection) -> object:
    """Which connection (a new one counts its own commits afresh), and its data_version.

    Asked of the driver's connection itself: the pragma needs none of SQLAlchemy's execution
    (a statement context, a result, and a transaction begun that is then rolled back), which
    took most of a look's CPU."""
    raw = conn.connection.driver_connection
    assert raw is not None
    ((version,),) = raw.execute("PRAGMA data_version").fetchall()  # to the end: no read stays open
    return (id(raw), version)


class _Unknown:
    """The revision of a store that cannot tell (PostgreSQL: NOTIFY carries its changes)."""

    changes: FileWatch | None = None
    settled = True

    async def __call__(self) -> object:
        return None


def revision_for(engine: Database) -> Revision:
    """How to tell the changes other processes make: SQLite files can tell, others cannot."""
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return _Unknown()
    return SqliteRevision(engine, Path(database))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def watched(revision: Revision) -> int | None:
    """How many batches of writes the watch of the database files has seen (None: no watch).
    Taken before a poller reads the revision and handed to ``quiet`` as ``since``."""
    return None if revision.changes is None else revision.changes.generation


async def quiet(
    wake: asyncio.Event,
    revision: Revision,
    seen: object,
    *,
    every: float,
    longest: float,
    since: int | None = None,
) -> bool:
    """Wait until nudged (``wake``), until another process changed the database since ``seen``,
    or ``longest`` seconds; True when the time ran out with nothing seen (for a store that can
    tell). The database is looked at every ``every`` seconds; where its writes
    are watched, once, then only ``every`` seconds after a write (a look comes late enough for
    the write to have settled, ``SETTLE``). A store that cannot tell (``seen`` is None) waits
    ``every``.

    ``since`` (``watched`` before ``seen`` was read) spares the first look when the watch saw
    no write since but this process's own commits, which wake nobody (``watch.py``): the
    poller's own work then costs no look a moment later."""
    loop = asyncio.get_running_loop()
    until = loop.time() + longest
    changes = revision.changes if seen is not None else None
    generation = -1 if since is None else since  # -1: look once before waiting for writes
    while True:
        if changes is not None and changes.unchanged(generation, seen):
            generation = changes.generation
        wait_write = changes is not None and changes.generation == generation and revision.settled
        if wait_write and await _woken_or_written(
            wake, changes, generation, seen, until - loop.time()
        ):
            return False
        if await _woken(wake, min(every, until - loop.time())):
            return False
        if seen is None:
            return False  # the caller reads the revision next anyway
        if loop.time() >= until:
            return True
        generation = changes.generation if changes is not None else 0
        try:
            if await revision() != seen:
                return False
        except Exception:
            return False  # cannot tell: let the caller read (and report what fails)


async def _woken(wake: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``wake``; True when it is set."""
    if not wake.is_set() and seconds > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()
    return wake.is_set()


async def _woken_or_written(
    wake: asyncio.Event, changes: FileWatch | None, generation: int, seen: object, seconds: float
) -> bool:
    """Wait up to ``seconds`` for ``wake`` or a write after ``generation`` that may have changed
    the revision ``seen``; True when woken."""
    if wake.is_set() or seconds <= 0 or changes is None:
        return wake.is_set()
    waits = [
        asyncio.ensure_future(wake.wait()),
        asyncio.ensure_future(changes.after(generation, seen)),
    ]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
    return wake.is_set()
