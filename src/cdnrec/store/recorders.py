"""The recorder processes that are alive and how many recordings each may hold."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cdnrec.store.database import Database, transaction
from cdnrec.store.tables import recorders, tasks
from cdnrec.store.tasks import LIVE, renew_leases


@dataclass(frozen=True)
class Beat:
    """A recorder's heartbeat: `owner` is alive at `now_ms` and may hold `capacity`
    recordings, and its leases on the tasks `held` last until `lease_until_ms`."""

    owner: str
    capacity: int
    now_ms: int
    held: tuple[str, ...] = ()
    lease_until_ms: int = 0


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
        beat = Beat(owner, capacity, now_ms, tuple(held), lease_until_ms)
        return await transaction(self._engine, write_beat, beat)

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


def _alive(insert: Any) -> Any:
    """The heartbeat's upsert, built once per dialect: a statement built per heartbeat cost
    SQLAlchemy its cache key every time (most of an idle service's heartbeat)."""
    values: dict[str, Any] = {
        "capacity": bindparam("p_capacity"),
        "seen_ms": bindparam("p_seen_ms"),
    }
    return (
        insert(recorders)
        .values(owner=bindparam("p_owner"), **values)
        .on_conflict_do_update(index_elements=[recorders.c.owner], set_=values)
    )


_ALIVE = {"sqlite": _alive(sqlite_insert), "postgresql": _alive(postgresql_insert)}


def write_beat(conn: Connection, beat: Beat) -> set[str]:
    """``RecorderRepo.heartbeat``'s statements, within a transaction of ``conn``."""
    params = {"p_owner": beat.owner, "p_capacity": beat.capacity, "p_seen_ms": beat.now_ms}
    conn.execute(_ALIVE[conn.dialect.name], params)
    return renew_leases(conn, beat.owner, beat.held, beat.lease_until_ms)
