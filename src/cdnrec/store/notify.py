"""Task changes told across processes: PostgreSQL NOTIFY on commit, LISTEN in recorders.

A Start or Stop handled by an API process reaches the recorder processes at once instead of at
their next poll. SQLite has no such channel (and no second process to tell): there it is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = structlog.get_logger("cdnrec.store")

CHANNEL = "cdnrec_tasks"
RETRY = 2.0
"""Seconds before a lost listening connection is opened again (recorders poll meanwhile)."""

_NOTIFY = text(f"NOTIFY {CHANNEL}")


async def tasks_changed(conn: AsyncConnection) -> None:
    """Tell the listening recorders, when this transaction commits, that tasks changed."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_NOTIFY)


async def listen_for_tasks(engine: AsyncEngine, on_change: Callable[[], None]) -> None:
    """Call `on_change` whenever another process changed tasks, until cancelled; returns at once
    on a database without notifications."""
    if engine.dialect.name != "postgresql":
        return
    dsn = make_url(engine.url).set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        await _listen_once(dsn, on_change)
        await asyncio.sleep(RETRY)


async def _listen_once(dsn: str, on_change: Callable[[], None]) -> None:
    """Listen on one connection until it is lost (or cannot be opened)."""
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        log.warning("store.listen_failed", error=str(exc))
        return
    lost = asyncio.Event()
    try:
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(CHANNEL, lambda *_: on_change())
        on_change()  # what changed while nobody listened
        await lost.wait()
        log.warning("store.listen_lost")
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
