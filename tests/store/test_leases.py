"""A recorder's leases: renewed with its heartbeat, and a recording whose lease another
recorder took is stopped without ending its task (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import update

from cdnrec.config import RecorderSettings
from cdnrec.engine.supervisor import Supervisor
from cdnrec.store import Store, Task, TaskState
from cdnrec.store.tables import tasks
from tests.store.test_store_contract import task_of

# Nobody listens on port 1: a Tencent task waits for its stream, retrying, until stopped.
NOWHERE = "rtmp://127.0.0.1:1/live/{stream_id}"


async def _until(ok: Callable[[], Awaitable[bool]]) -> None:
    """Wait (at most 10 s) until `ok()` holds."""
    async with asyncio.timeout(10):
        while True:
            if await ok():
                return
            await asyncio.sleep(0.05)


async def _waiting_task(store: Store) -> Task:
    """A Tencent task, due for an hour, whose stream is nowhere (it waits, retrying)."""
    now_ms = int(time.time() * 1000)
    base = task_of("s1")
    due = dataclasses.replace(
        base,
        config=base.config.model_copy(update={"sources": (NOWHERE,)}),
        created_ms=now_ms,
        deadline_ms=now_ms + 3_600_000,
    )
    task, _ = await store.tasks.start(due)
    return task


async def test_a_recording_whose_lease_another_recorder_took_stops_and_leaves_the_task(
    store: Store, second_store: Store, tmp_path: Path
) -> None:
    task = await _waiting_task(store)
    settings = RecorderSettings(poll=0.05, lease=1.5)
    supervisor = Supervisor(store, tmp_path / "files", settings, owner="a")
    running = asyncio.create_task(supervisor.run())
    try:

        async def runs(n: int) -> bool:
            return supervisor.running == n

        async def lease() -> int:
            now = await store.tasks.get(task.id)
            assert now is not None
            assert now.owner == "a"
            assert now.lease_ms is not None
            return now.lease_ms

        await _until(lambda: runs(1))
        first = await lease()

        async def renewed() -> bool:  # by a heartbeat, a third of a lease later
            return await lease() > first

        await _until(renewed)
        # another recorder took the task (as it would once the lease lapsed)
        async with second_store.engine.begin() as conn:
            await conn.execute(update(tasks).where(tasks.c.id == task.id).values(owner="b"))
        await _until(lambda: runs(0))
        kept = await second_store.tasks.get(task.id)
        assert kept is not None
        # the task is b's now: neither ended nor given the stopped recording's last phase
        assert (kept.owner, kept.state, kept.active) == ("b", TaskState.RUNNING, True)
        assert kept.ended_ms is None
        assert kept.phase != "ended", kept
    finally:
        await supervisor.close(grace=5)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_task_whose_recorder_died_is_taken_once_its_lease_lapses(
    store: Store, second_store: Store, tmp_path: Path
) -> None:
    """A recorder that dies writes nothing: the others poll when its lease lapses, not only
    with their own heartbeat (here a minute apart)."""
    task = await _waiting_task(store)
    [held] = await second_store.tasks.claim("dead", int(time.time() * 1000), 1500, 1)
    assert held.lease_ms is not None
    settings = RecorderSettings(poll=0.05, lease=180.0)
    supervisor = Supervisor(store, tmp_path / "files", settings, owner="a")
    running = asyncio.create_task(supervisor.run())
    try:

        async def taken() -> bool:
            return supervisor.running == 1

        await _until(taken)
        now = await store.tasks.get(task.id)
        assert now is not None
        assert now.owner == "a"
        assert now.lease_ms is not None
        assert now.lease_ms > held.lease_ms
    finally:
        await supervisor.close(grace=5)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
