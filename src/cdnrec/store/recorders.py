"""The recorder processes that are alive and how many recordings each may hold."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cdnrec.store.database import Database, transaction
from cdnrec.store.tables import recorders, tasks
from cdnrec.store.tasks import LIVE, renew_leases


class RecorderRepo:
    """Recorders say they are alive with their capacity; Start asks how much room is left."""

    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def heartbeat(
        self,
        owner: str,
        capacity: int,
        now_ms: int,
        held: Collection[str] = (),
        lease_until_ms: int = 0,
    ) -> set[str]:
        """`owner` is alive now and may hold `capacity` recordings; the leases it holds on
        the tasks `held` last until `lease_until_ms`. One transaction; returns those of `held`
        it still owns."""
        return await transaction(
            self._engine, _heartbeat, owner, capacity, now_ms, held, lease_until_ms
        )

    async def gone(self, owner: str) -> None:
        """`owner` stopped: its capacity no longer counts."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(recorders).where(recorders.c.owner == owner))

    async def room(self, seen_since_ms: int) -> int | None:
        """Recordings the recorders seen since `seen_since_ms` may still take: their capacity
        minus the tasks that hold or wait for a place. None when no recorder was seen (tasks
        wait for one)."""
        async with self._engine.connect() as conn:
            capacity = (
                await conn.execute(
                    select(func.count(), func.coalesce(func.sum(recorders.c.capacity), 0)).where(
                        recorders.c.seen_ms >= seen_since_ms
                    )
                )
            ).one()
            if capacity[0] == 0:
                return None
            holding = (
                await conn.execute(
                    select(func.count()).select_from(tasks).where(tasks.c.state.in_(LIVE))
                )
            ).scalar_one()
        return int(capacity[1]) - int(holding)


def _heartbeat(
    conn: Connection,
    owner: str,
    capacity: int,
    now_ms: int,
    held: Collection[str],
    lease_until_ms: int,
) -> set[str]:
    insert = sqlite_insert if conn.dialect.name == "sqlite" else postgresql_insert
    upsert = insert(recorders).values(owner=owner, capacity=capacity, seen_ms=now_ms)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[recorders.c.owner], set_={"capacity": capacity, "seen_ms": now_ms}
        )
    )
    return renew_leases(conn, owner, held, lease_until_ms)
