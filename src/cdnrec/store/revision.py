"""Whether the database may have changed: lets pollers skip reads that would find nothing new.

Work started in this process reaches its pollers by a nudge, and on PostgreSQL work started in
another process by NOTIFY; what is left for polling is work another process wrote to a shared
SQLite file. A commit to a SQLite database in WAL mode appends to its ``-wal`` file (a checkpoint
writes the database file itself), so the sizes and modification times of those two files change
with every commit, from any process. Looking at them costs two ``stat`` calls instead of a query.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

Revision = Callable[[], object]
"""A token that differs after any commit to the database (``None``: cannot tell, read anyway)."""


def revision_for(url: str) -> Revision:
    """How to tell changes of the database at ``url``: file times of SQLite, nothing otherwise."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return lambda: None
    files = (Path(database), Path(database + "-wal"))
    return lambda: tuple(_stamp(f) for f in files)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


async def quiet(
    wake: asyncio.Event, revision: Revision, seen: object, *, every: float, longest: float
) -> None:
    """Wait until nudged (``wake``), until the database changed from ``seen`` (looked at every
    ``every`` seconds), or ``longest`` seconds. A store that cannot tell changes waits ``every``.

    Timestamps of files are coarse (a few ms), so two commits close together may look like one;
    what the look misses, the next change or the ``longest`` wait catches.
    """
    loop = asyncio.get_running_loop()
    until = loop.time() + longest
    while True:
        left = until - loop.time()
        if left <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), min(every, left))
            return
        if seen is None or revision() != seen:
            return
