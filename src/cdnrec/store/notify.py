"""Changes told across processes: PostgreSQL NOTIFY on commit, LISTEN in recorder processes.

A Start or Stop (or a merge job) handled by an API process reaches the recorder processes at
once instead of at their next poll. SQLite has no such channel (and no second process to tell):
there it is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cdnrec.store.database import Conn, Database

log = structlog.get_logger("cdnrec.store")

TASKS = "cdnrec_tasks"
"""Channel: recording tasks were created or asked to stop."""

JOBS = "cdnrec_jobs"
"""Channel: a merge job was submitted."""

APPLICATION_NAME = "cdnrec-listen"
"""How the listening connection shows in pg_stat_activity."""

RETRY = 2.0
"""Seconds before a lost listening connection is opened again (recorders poll meanwhile)."""

PING = 30.0
"""Seconds between checks that the listening connection is still alive (a half-open link
would otherwise go unnoticed)."""


async def tell(conn: Conn, channel: str) -> None:
    """Tell the listening processes on `channel`, when this transaction commits."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f"NOTIFY {channel}"))


async def listen(engine: Database, handlers: Mapping[str, Callable[[], None]]) -> None:
    """Call a channel's handler whenever another process notifies it, until cancelled; returns
    at once on a database without notifications. Every handler is also called after each
    (re)connection, for what changed while nobody listened."""
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "postgresql":
        return
    import asyncpg  # only PostgreSQL needs it

    _, params = engine.sync_engine.dialect.create_connect_args(engine.url)
    accepted = inspect.signature(asyncpg.connect).parameters
    connect = {k: v for k, v in params.items() if k in accepted}
    settings = dict(connect.get("server_settings") or {})
    connect["server_settings"] = {**settings, "application_name": APPLICATION_NAME}
    while True:
        await _listen_once(connect, handlers)
        await asyncio.sleep(RETRY)


async def _listen_once(connect: dict[str, Any], handlers: Mapping[str, Callable[[], None]]) -> None:
    """Listen on one connection until it is lost (or cannot be opened)."""
    import asyncpg

    conn = None
    try:
        conn = await asyncpg.connect(**connect)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        for channel, handler in handlers.items():
            await conn.add_listener(channel, _call(handler))
            handler()
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), PING)
            if not lost.is_set():
                await conn.execute("SELECT 1")
        log.warning("store.listen_lost")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure: the caller opens a new connection
        log.warning("store.listen_failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def _call(handler: Callable[[], None]) -> Callable[..., None]:
    """An asyncpg notification callback that calls `handler`."""
    return lambda *_: handler()
