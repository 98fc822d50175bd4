"""Recording tasks in the store: created by the API, claimed and finished by recorders."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    and_,
    bindparam,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.elements import ColumnElement

from cdnrec.config import Vendor, VendorSettings
from cdnrec.store.database import Conn, Database
from cdnrec.store.models import ACTIVE_STATES, Task, TaskState
from cdnrec.store.notify import TASKS, tell
from cdnrec.store.tables import tasks

LIVE = (TaskState.PENDING.value, TaskState.RUNNING.value, TaskState.STOPPING.value)
"""Task states a recorder holds (or will hold) a place for."""


class Poll(NamedTuple):
    """What a recorder's poll found."""

    stopping: set[str]
    """Those of its running tasks whose stop was requested."""
    claimed: list[Task]
    """Tasks it newly claimed."""
    lapse_ms: int | None = None
    """When the earliest lease held on another live task runs out (None: none is held). Such a
    task becomes free then without anything written to the store, so only a poll finds it."""
    more: bool = False
    """Whether tasks may be left that it did not take: it took its limit, or another recorder
    took some first (their leases are not in ``lapse_ms``)."""


@dataclass(frozen=True)
class TaskUpdate:
    """What a recorder reported of a task (its phase), or the task's end (``end`` set)."""

    task_id: str
    phase: str
    detail: str
    end: TaskState | None = None
    """ENDED or FAILED: the task is finished and released (``phase`` is the state's value)."""
    now_ms: int = 0

    @classmethod
    def ended(cls, task_id: str, state: TaskState, detail: str, now_ms: int) -> TaskUpdate:
        """The end of a task."""
        return cls(task_id, state.value, detail, state, now_ms)


_SET_PHASE = (
    update(tasks)
    .where(tasks.c.id == bindparam("b_id"))
    .values(phase=bindparam("b_phase"), detail=bindparam("b_detail"))
)
_START = (
    update(tasks)
    .where(tasks.c.id == bindparam("b_id"), tasks.c.state == TaskState.PENDING.value)
    .values(state=TaskState.RUNNING.value)
)
_FINISH = (
    update(tasks)
    .where(tasks.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        active=False,
        phase=bindparam("b_state"),
        detail=bindparam("b_detail"),
        ended_ms=bindparam("b_now"),
        owner=None,
        lease_ms=None,
    )
)


class TaskRepo:
    """Reads and writes tasks."""

    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def start(self, task: Task) -> tuple[Task, bool]:
        """Insert a task unless one is active for its stream; return (the task, created).

        One statement in one transaction: the insert yields to the unique index of active
        tasks (ON CONFLICT DO NOTHING), so concurrent starts of one stream create one task.
        """
        insert_new = _INSERT_UNLESS_ACTIVE[self._engine.dialect.name]
        values = _row(task)
        stream = _stream_params(task.app_id, task.vendor, task.stream_id)
        for _ in range(3):
            async with self._engine.begin() as conn:
                if (await conn.execute(insert_new, values)).rowcount:
                    await tell(conn, TASKS)
                    return task, True
                row = (await conn.execute(_ACTIVE, stream)).first()
            if row is not None:
                return _task(row._mapping), False
        raise RuntimeError(f"could not start a task for stream {task.stream_id!r}")

    async def get(self, task_id: str) -> Task | None:
        """The task with this id."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).first()
        return None if row is None else _task(row._mapping)

    async def get_many(self, task_ids: Collection[str]) -> dict[str, Task]:
        """The tasks with these ids (those that exist), by id, in one query."""
        if not task_ids:
            return {}
        query = select(tasks).where(tasks.c.id.in_(bindparam("p_ids", expanding=True)))
        async with self._engine.connect() as conn:
            rows = await conn.execute(query, {"p_ids": list(task_ids)})
            return {task.id: task for task in (_task(r._mapping) for r in rows)}

    async def active_for(self, app_id: int, vendor: Vendor, stream_id: str) -> Task | None:
        """The active task of a stream, if any."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(_ACTIVE, _stream_params(app_id, vendor, stream_id))).first()
        return None if row is None else _task(row._mapping)

    async def request_stop(
        self, app_id: int, vendor: Vendor, stream_id: str, now_ms: int
    ) -> list[Task]:
        """Mark every active task of a stream as stopping; return them, now stopping."""
        params = {**_stream_params(app_id, vendor, stream_id), "p_stop_ms": now_ms}
        async with self._engine.begin() as conn:
            rows = (await conn.execute(_STOP, params)).all()
            if rows:
                await tell(conn, TASKS)
        return [_task(r._mapping) for r in rows]

    async def claim(self, owner: str, now_ms: int, lease_ms: int, limit: int) -> list[Task]:
        """Take up to `limit` unowned (or lease-expired) live tasks for `owner`."""
        if limit <= 0:
            return []
        async with self._engine.begin() as conn:
            return await _claim(conn, owner, now_ms, lease_ms, limit)

    async def poll(
        self, owner: str, running: list[str], now_ms: int, lease_ms: int, limit: int
    ) -> Poll:
        """A recorder's poll: those of `running` whose stop was requested (as `stopping`), up
        to `limit` tasks newly claimed for `owner` (as `claim`), and when the next lease held
        on another live task lapses.

        One query answers all three; a transaction follows only when there are tasks to claim
        (the claim checks again that each is still free), so a poll with nothing new costs a
        read.
        """
        if not running and limit <= 0:
            return Poll(set(), [], more=True)
        params = {
            "p_running": running,
            "p_held": running,
            "p_now": now_ms,
            "p_limit": max(limit, 0),
        }
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_POLL, params)).all()
        stopping = {r.id for r in rows if r.stop == 1}
        free = [r.id for r in rows if r.stop == 0]
        lapse = min((r.lapse for r in rows if r.stop == 2 and r.lapse is not None), default=None)
        claimed = []
        if free:
            async with self._engine.begin() as conn:
                claimed = await _take(conn, free, owner, now_ms, lease_ms)
        # another recorder that took some of `free` first holds leases `lapse` does not count
        return Poll(stopping, claimed, lapse, more=len(free) >= limit or len(claimed) < len(free))

    async def stopping(self, task_ids: list[str]) -> set[str]:
        """Those of `task_ids` whose stop was requested."""
        if not task_ids:
            return set()
        async with self._engine.connect() as conn:
            return await _stopping(conn, task_ids)

    async def set_phase(self, task_id: str, phase: str, detail: str = "") -> None:
        """Record what the recorder of a task is doing now; a pending task becomes running."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(tasks).where(tasks.c.id == task_id).values(phase=phase, detail=detail)
            )
            await conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id, tasks.c.state == TaskState.PENDING.value)
                .values(state=TaskState.RUNNING.value)
            )

    async def apply(self, updates: list[TaskUpdate]) -> None:
        """Write phase reports and task ends of many tasks in one transaction."""
        phases = [u for u in updates if u.end is None]
        ends = [u for u in updates if u.end is not None]
        async with self._engine.begin() as conn:
            if phases:
                rows = [
                    {"b_id": u.task_id, "b_phase": u.phase, "b_detail": u.detail} for u in phases
                ]
                await conn.execute(_SET_PHASE, rows)
                await conn.execute(_START, rows)
            if ends:
                await conn.execute(
                    _FINISH,
                    [
                        {
                            "b_id": u.task_id,
                            "b_state": u.phase,
                            "b_detail": u.detail,
                            "b_now": u.now_ms,
                        }
                        for u in ends
                    ],
                )

    async def finish(self, task_id: str, state: TaskState, detail: str, now_ms: int) -> None:
        """End a task (ended or failed) and release it."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(tasks)
                .where(tasks.c.id == task_id)
                .values(
                    state=state.value,
                    active=False,
                    phase=state.value,
                    detail=detail,
                    ended_ms=now_ms,
                    owner=None,
                    lease_ms=None,
                )
            )

    async def release(self, owner: str) -> None:
        """Give up every lease `owner` holds (clean shutdown), so another recorder can continue."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(tasks).where(tasks.c.owner == owner).values(owner=None, lease_ms=None)
            )

    async def of_stream(
        self, app_id: int, vendor: Vendor, stream_id: str, limit: int = 20
    ) -> list[Task]:
        """The latest tasks of one stream, newest first."""
        query = (
            select(tasks)
            .where(
                tasks.c.app_id == app_id,
                tasks.c.vendor == vendor.value,
                tasks.c.stream_id == stream_id,
            )
            .order_by(tasks.c.created_ms.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_task(r._mapping) for r in await conn.execute(query)]

    async def list(self, *, live_only: bool = False, limit: int = 200) -> list[Task]:
        """Recent tasks, newest first."""
        query = select(tasks).order_by(tasks.c.created_ms.desc()).limit(limit)
        if live_only:
            query = query.where(tasks.c.state.in_(LIVE))
        async with self._engine.connect() as conn:
            return [_task(r._mapping) for r in await conn.execute(query)]


# Statements built once and executed with parameters: building one per call (and its cache
# key) cost more than running it on SQLite.
# The bare column, as the partial index uq_tasks_active_stream says it: SQLite uses a partial
# index only for a query repeating its WHERE term, and `active IS 1` / `active = 1` scan the table.
_IS_ACTIVE = text("tasks.active")
_STREAM = and_(
    tasks.c.app_id == bindparam("p_app_id"),
    tasks.c.vendor == bindparam("p_vendor"),
    tasks.c.stream_id == bindparam("p_stream_id"),
    _IS_ACTIVE,
)
_ACTIVE = select(tasks).where(_STREAM)
_STOP = (
    update(tasks)
    .where(_STREAM)
    .values(state=TaskState.STOPPING.value, active=False, stop_ms=bindparam("p_stop_ms"))
    .returning(*tasks.c)
)
_FREE_NOW = or_(tasks.c.lease_ms.is_(None), tasks.c.lease_ms < bindparam("p_now"))
_CLAIMABLE = (
    select(tasks.c.id).where(tasks.c.state.in_(LIVE), _FREE_NOW).limit(bindparam("p_limit"))
).subquery()
_NO_LAPSE = cast(null(), BigInteger).label("lapse")
# A recorder's poll: (id, stop=1) for each of its running tasks whose stop was requested, then
# (id, stop=0) for up to p_limit free tasks it may claim, then (NULL, stop=2, lapse) with the
# earliest lease held on any other live task (a lease that lapses makes its task free).
# p_held is p_running again: one expanding parameter in both IN and NOT IN is rendered for
# one of them when the list is empty (PostgreSQL then read every stopping task as ours).
_POLL = union_all(
    select(tasks.c.id, literal_column("1").label("stop"), _NO_LAPSE).where(
        tasks.c.id.in_(bindparam("p_running", expanding=True)),
        tasks.c.state == TaskState.STOPPING.value,
    ),
    select(_CLAIMABLE.c.id, literal_column("0").label("stop"), _NO_LAPSE),
    select(
        cast(null(), tasks.c.id.type).label("id"),
        literal_column("2").label("stop"),
        func.min(tasks.c.lease_ms).label("lapse"),
    ).where(
        tasks.c.state.in_(LIVE),
        tasks.c.lease_ms >= bindparam("p_now"),
        tasks.c.id.not_in(bindparam("p_held", expanding=True)),
    ),
)
_RENEW = (
    update(tasks)
    .where(
        tasks.c.id.in_(bindparam("p_ids", expanding=True)), tasks.c.owner == bindparam("p_owner")
    )
    .values(lease_ms=bindparam("p_lease_ms"))
    .returning(tasks.c.id)
)
_CONFLICT_TARGET: dict[str, Any] = {
    "index_elements": [tasks.c.app_id, tasks.c.vendor, tasks.c.stream_id],
    "index_where": tasks.c.active,
}
_INSERT_UNLESS_ACTIVE: dict[str, Any] = {
    "sqlite": sqlite_insert(tasks).on_conflict_do_nothing(**_CONFLICT_TARGET),
    "postgresql": postgresql_insert(tasks).on_conflict_do_nothing(**_CONFLICT_TARGET),
}


async def _stopping(conn: Conn, task_ids: list[str]) -> set[str]:
    if not task_ids:
        return set()
    query = select(tasks.c.id).where(
        tasks.c.id.in_(task_ids), tasks.c.state == TaskState.STOPPING.value
    )
    return {r.id for r in await conn.execute(query)}


async def _claim(conn: Conn, owner: str, now_ms: int, lease_ms: int, limit: int) -> list[Task]:
    query = select(tasks.c.id).where(tasks.c.state.in_(LIVE), _free(now_ms)).limit(limit)
    free = [r.id for r in (await conn.execute(query)).all()]
    return await _take(conn, free, owner, now_ms, lease_ms)


async def _take(
    conn: Conn, task_ids: list[str], owner: str, now_ms: int, lease_ms: int
) -> list[Task]:
    """Lease those of `task_ids` that are still free to `owner` (one statement); the tasks it
    got, in the order of `task_ids`."""
    if not task_ids:
        return []
    rows = await conn.execute(
        update(tasks)
        .where(tasks.c.id.in_(task_ids), _free(now_ms))
        .values(owner=owner, lease_ms=now_ms + lease_ms, attempts=tasks.c.attempts + 1)
        .returning(*tasks.c)
    )
    got = {row.id: _task(row._mapping) for row in rows}
    return [got[task_id] for task_id in task_ids if task_id in got]


def _free(now_ms: int) -> ColumnElement[bool]:
    """Nobody holds the task's lease (or it lapsed before `now_ms`)."""
    return or_(tasks.c.lease_ms.is_(None), tasks.c.lease_ms < now_ms)


def _stream_params(app_id: int, vendor: Vendor, stream_id: str) -> dict[str, Any]:
    return {"p_app_id": app_id, "p_vendor": vendor.value, "p_stream_id": stream_id}


def _row(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "app_id": task.app_id,
        "vendor": task.vendor.value,
        "stream_id": task.stream_id,
        "refs": task.refs,
        "config": task.config.model_dump(mode="json"),
        "state": task.state.value,
        "active": task.state in ACTIVE_STATES,
        "phase": task.phase,
        "detail": task.detail,
        "created_ms": task.created_ms,
        "deadline_ms": task.deadline_ms,
        "stop_ms": task.stop_ms,
        "attempts": task.attempts,
    }


def _task(row: Any) -> Task:
    return Task(
        id=row["id"],
        app_id=row["app_id"],
        vendor=Vendor(row["vendor"]),
        stream_id=row["stream_id"],
        refs=dict(row["refs"]),
        config=VendorSettings.model_validate(row["config"]),
        state=TaskState(row["state"]),
        created_ms=row["created_ms"],
        deadline_ms=row["deadline_ms"],
        phase=row["phase"],
        detail=row["detail"],
        stop_ms=row["stop_ms"],
        ended_ms=row["ended_ms"],
        owner=row["owner"],
        lease_ms=row["lease_ms"],
        attempts=row["attempts"],
    )


def renew_leases(
    conn: Connection, owner: str, task_ids: Collection[str], lease_until_ms: int
) -> set[str]:
    """Extend the leases `owner` holds on `task_ids`; the ids it still owns."""
    if not task_ids:
        return set()
    params = {"p_ids": list(task_ids), "p_owner": owner, "p_lease_ms": lease_until_ms}
    return {r.id for r in conn.execute(_RENEW, params)}
