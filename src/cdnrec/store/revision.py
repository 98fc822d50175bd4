"""Whether another process wrote to the database: lets pollers skip reads that would find nothing.

Work started in this process reaches its pollers by a nudge, and on PostgreSQL the work of other
processes by NOTIFY; what is left for polling is what another process wrote to a shared SQLite
file. SQLite tells exactly that: ``PRAGMA data_version`` changes when another connection
committed, and not when this one did (a process holds one connection, see ``database.py``). The
pragma is asked only when the database files changed (their size and modification time, two
``stat`` calls: any commit, ours included, changes them), so a quiet process asks nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import Connection

from cdnrec.store.database import Database

Revision = Callable[[], Awaitable[object]]
"""A token that differs after another process committed (``None``: cannot tell, read anyway)."""


class SqliteRevision:
    """The revision of a SQLite database file: which connection, and its ``data_version``."""

    def __init__(self, engine: Database, database: Path) -> None:
        self._engine = engine
        self._files = (database, Path(f"{database}-wal"))
        self._stamp: tuple[object, ...] = ()
        self._token: object = None

    async def __call__(self) -> object:
        stamp = tuple(_stamp(f) for f in self._files)
        if stamp != self._stamp or self._token is None:
            # the stamp is taken first: a commit while the pragma runs shows at the next look
            async with self._engine.connect() as conn:
                self._token = await conn.run_sync(_version)
            self._stamp = stamp
        return self._token


def _version(conn: Connection) -> object:
    """Which connection (a new one counts its own commits afresh), and its data_version."""
    version = conn.exec_driver_sql("PRAGMA data_version").scalar()
    return (id(conn.connection.driver_connection), version)


async def _unknown() -> object:
    return None


def revision_for(engine: Database) -> Revision:
    """How to tell the changes other processes make: SQLite files can tell, others cannot."""
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return _unknown
    return SqliteRevision(engine, Path(database))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


async def quiet(
    wake: asyncio.Event, revision: Revision, seen: object, *, every: float, longest: float
) -> None:
    """Wait until nudged (``wake``), until another process changed the database since ``seen``
    (looked at every ``every`` seconds), or ``longest`` seconds. A store that cannot tell
    (``seen`` is None) waits ``every``."""
    loop = asyncio.get_running_loop()
    until = loop.time() + longest
    while True:
        left = until - loop.time()
        if left <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(every, left)):
                await wake.wait()
            return
        if seen is None:
            return
        try:
            if await revision() != seen:
                return
        except Exception:
            return  # cannot tell: let the caller read (and report what fails)
