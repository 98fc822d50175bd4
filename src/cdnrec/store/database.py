"""Opening the SQL database (SQLite or PostgreSQL) and applying migrations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from cdnrec.store.threaded import ThreadedConnection, ThreadedEngine

MIGRATIONS = Path(__file__).with_name("migrations")

Database = AsyncEngine | ThreadedEngine
"""The store's engine: PostgreSQL through asyncpg, SQLite on a thread of its own."""

Conn = AsyncConnection | ThreadedConnection
"""A connection of either `Database` while a transaction or read holds it."""

P = ParamSpec("P")
T = TypeVar("T")


async def transaction(
    engine: Database,
    fn: Callable[Concatenate[Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run `fn(connection, …)` in a transaction, committed after it; what it returns. On SQLite
    the statements and the commit are one hand-over to the store's thread; on PostgreSQL `fn`
    runs through SQLAlchemy's asyncio adaptation (`run_sync`)."""
    if isinstance(engine, ThreadedEngine):
        return await engine.transact(fn, *args, **kwargs)
    async with engine.begin() as conn:
        return await conn.run_sync(fn, *args, **kwargs)


async def read(
    engine: Database,
    fn: Callable[Concatenate[Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run `fn(connection, …)` to read, without a commit; what it returns. On SQLite its
    statements are one hand-over to the store's thread."""
    async with engine.connect() as conn:
        return await conn.run_sync(fn, *args, **kwargs)


def open_engine(url: str) -> Database:
    """Create the engine for a database URL; SQLite gets WAL and a busy timeout.

    Any ``sqlite`` URL (``sqlite:///path``, or ``sqlite+aiosqlite:///path`` as cdnrec wrote it
    before) is opened with Python's own ``sqlite3`` on the store's thread (``threaded.py``).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # One connection: SQLite takes one writer at a time, and writers of one process that
        # contend on separate connections wait in SQLite's busy handler, which sleeps up to
        # 100 ms a turn (tail latencies of a second under load). Queueing on the loop is fair.
        engine = create_engine(
            parsed.set(drivername="sqlite+pysqlite"),
            connect_args={"timeout": 30},
            pool_reset_on_return=None,  # every use ends its own transaction
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return ThreadedEngine(engine)
    if parsed.get_backend_name() == "postgresql":
        return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    raise ValueError(
        f"unsupported database URL {parsed.render_as_string()!r}: use sqlite or postgresql"
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _upgrade(connection: Connection, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def migrate(engine: Database, revision: str = "head") -> None:
    """Bring the database schema up to `revision`."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)
