"""One contract for the store, run unchanged on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from cdnrec.config import Vendor, VendorSettings
from cdnrec.store import App, Store, Task, TaskState
from cdnrec.store import tasks as task_queries
from cdnrec.store.database import migrate
from cdnrec.store.ids import new_id
from cdnrec.store.tasks import TaskUpdate

NOW_MS = 1_700_000_000_000
LEASE_MS = 15_000
SOURCE = "rtmp://origin/live/{stream_id}"


def task_of(stream_id: str, vendor: Vendor = Vendor.TENCENT, app_id: int = 1) -> Task:
    """A new pending task."""
    return Task(
        id=new_id(),
        app_id=app_id,
        vendor=vendor,
        stream_id=stream_id,
        refs={"TaskId": f"T-{stream_id}-{new_id()}", "Nested": {"mp4": "x"}},
        config=VendorSettings(sources=(SOURCE,), formats=("mp4", "m3u8")),
        state=TaskState.PENDING,
        created_ms=NOW_MS,
        deadline_ms=NOW_MS + 3_600_000,
    )


# -- apps ---------------------------------------------------------------------------------


async def test_apps_round_trip_with_their_vendor_configurations(store: Store) -> None:
    tencent = VendorSettings(
        sources=(SOURCE, "http://cdn/live/{stream_id}.flv"),
        formats=("mp4", "m3u8", "aac"),
        interval=1800.0,
        hls_segment=4.0,
        retention=0.0,
        resume_window=12.5,
        wait_for_stream=False,
    )
    app = App(
        app_id=2**32 - 1,
        server_secret="0123456789abcdef0123456789abcdef",
        callback_url="http://127.0.0.1:9000/zego",
        callback_secret="cbsecret0123456789",
        enabled=False,
        vendors={Vendor.TENCENT: tencent, Vendor.HUAWEI: VendorSettings(sources=(SOURCE,))},
        source="config",
    )
    await store.apps.put(app, NOW_MS)
    assert await store.apps.get(app.app_id) == app
    assert await store.apps.get(12345) is None


async def test_putting_an_app_again_replaces_it_and_its_vendors(store: Store) -> None:
    first = App(7, "a" * 32, vendors={Vendor.WS: VendorSettings(sources=(SOURCE,))})
    await store.apps.put(first, NOW_MS)
    second = dataclasses.replace(
        first, server_secret="b" * 32, vendors={Vendor.TENCENT: VendorSettings()}
    )
    await store.apps.put(second, NOW_MS + 1)
    assert await store.apps.get(7) == second


async def test_apps_are_listed_by_id_and_removed(store: Store) -> None:
    for app_id in (30, 10, 20):
        await store.apps.put(
            App(app_id, "s" * 32, vendors={Vendor.TENCENT: VendorSettings()}), NOW_MS
        )
    listed = await store.apps.list()
    assert [a.app_id for a in listed] == [10, 20, 30]
    assert all(a.vendors == {Vendor.TENCENT: VendorSettings()} for a in listed)
    assert await store.apps.remove(20) is True
    assert await store.apps.remove(20) is False
    assert [a.app_id for a in await store.apps.list()] == [10, 30]
    assert await store.apps.get(20) is None


# -- starting tasks -----------------------------------------------------------------------


async def test_a_task_round_trips(store: Store) -> None:
    task = task_of("s1")
    stored, created = await store.tasks.start(task)
    assert created
    assert stored == task
    assert await store.tasks.get(task.id) == task
    assert await store.tasks.active_for(1, Vendor.TENCENT, "s1") == task


async def test_start_is_idempotent_per_app_vendor_and_stream(store: Store) -> None:
    first, created = await store.tasks.start(task_of("s1"))
    again, created_again = await store.tasks.start(task_of("s1"))
    assert created
    assert not created_again
    assert again == first
    other_vendor, c1 = await store.tasks.start(task_of("s1", Vendor.WS))
    other_app, c2 = await store.tasks.start(task_of("s1", app_id=2))
    assert c1
    assert c2
    assert len({first.id, other_vendor.id, other_app.id}) == 3


async def test_concurrent_starts_of_one_stream_create_exactly_one_task(
    store: Store, second_store: Store
) -> None:
    attempts = [task_of("race") for _ in range(20)]
    results = await asyncio.gather(
        *((store if i % 2 else second_store).tasks.start(t) for i, t in enumerate(attempts))
    )
    assert sum(created for _, created in results) == 1
    assert len({task.id for task, _ in results}) == 1
    assert len(await store.tasks.of_stream(1, Vendor.TENCENT, "race")) == 1


async def test_the_database_itself_refuses_two_active_tasks_for_a_stream(store: Store) -> None:
    await store.tasks.start(task_of("s1"))
    row = {
        "id": new_id(),
        "app_id": 1,
        "vendor": "Tencent",
        "stream_id": "s1",
        "refs": "{}",
        "config": "{}",
        "state": "pending",
        "active": True,
        "phase": "",
        "detail": "",
        "created_ms": NOW_MS,
        "deadline_ms": NOW_MS,
        "attempts": 0,
    }
    insert = text(
        "INSERT INTO tasks (id, app_id, vendor, stream_id, refs, config, state, active, phase,"
        " detail, created_ms, deadline_ms, attempts) VALUES (:id, :app_id, :vendor, :stream_id,"
        " :refs, :config, :state, :active, :phase, :detail, :created_ms, :deadline_ms, :attempts)"
    )
    with pytest.raises(IntegrityError):
        async with store.engine.begin() as conn:
            await conn.execute(insert, row)
    async with store.engine.begin() as conn:
        await conn.execute(insert, {**row, "active": False})


# -- stopping -----------------------------------------------------------------------------


async def test_request_stop_marks_every_active_task_of_the_stream(store: Store) -> None:
    task, _ = await store.tasks.start(task_of("s1"))
    await store.tasks.start(task_of("s2"))
    [stopped] = await store.tasks.request_stop(1, Vendor.TENCENT, "s1", NOW_MS + 5)
    assert (stopped.id, stopped.refs, stopped.state) == (task.id, task.refs, TaskState.STOPPING)
    now = await store.tasks.get(task.id)
    assert now is not None
    assert now.state is TaskState.STOPPING
    assert not now.active
    assert now.stop_ms == NOW_MS + 5
    assert await store.tasks.active_for(1, Vendor.TENCENT, "s1") is None
    assert await store.tasks.active_for(1, Vendor.TENCENT, "s2") is not None
    assert await store.tasks.request_stop(1, Vendor.TENCENT, "s1", NOW_MS + 6) == []
    assert await store.tasks.stopping([task.id]) == {task.id}
    fresh, created = await store.tasks.start(task_of("s1"))
    assert created
    assert fresh.id != task.id


async def test_request_stop_of_an_idle_stream_finds_nothing(store: Store) -> None:
    assert await store.tasks.request_stop(1, Vendor.TENCENT, "idle", NOW_MS) == []


# -- leases -------------------------------------------------------------------------------


async def test_two_owners_never_both_hold_a_task(store: Store, second_store: Store) -> None:
    ids = set()
    for i in range(12):
        task, _ = await store.tasks.start(task_of(f"s{i}"))
        ids.add(task.id)
    a, b = await asyncio.gather(
        store.tasks.claim("a", NOW_MS, LEASE_MS, 100),
        second_store.tasks.claim("b", NOW_MS, LEASE_MS, 100),
    )
    held_a = {t.id for t in a}
    held_b = {t.id for t in b}
    assert not held_a & held_b
    assert held_a | held_b == ids
    assert all(t.owner == "a" and t.lease_ms == NOW_MS + LEASE_MS for t in a)
    assert await store.tasks.claim("c", NOW_MS + LEASE_MS - 1, LEASE_MS, 100) == []
    for task_id in ids:
        stored = await store.tasks.get(task_id)
        assert stored is not None
        assert stored.owner == ("a" if task_id in held_a else "b")


async def test_claim_takes_at_most_the_limit(store: Store) -> None:
    for i in range(5):
        await store.tasks.start(task_of(f"s{i}"))
    assert len(await store.tasks.claim("a", NOW_MS, LEASE_MS, 3)) == 3
    assert len(await store.tasks.claim("b", NOW_MS, LEASE_MS, 3)) == 2
    assert await store.tasks.claim("c", NOW_MS, LEASE_MS, 0) == []


async def test_an_expired_lease_is_taken_over_and_the_old_owner_learns_it(store: Store) -> None:
    """Leases are renewed by the recorder's heartbeat, which answers those it still holds."""
    task, _ = await store.tasks.start(task_of("s1"))
    [held] = await store.tasks.claim("a", NOW_MS, LEASE_MS, 10)
    assert held.attempts == 1
    renewed = await store.recorders.heartbeat("a", 1, NOW_MS, [task.id], NOW_MS + 2 * LEASE_MS)
    assert renewed == {task.id}
    assert await store.tasks.claim("b", NOW_MS + LEASE_MS + 1, LEASE_MS, 10) == []
    later = NOW_MS + 2 * LEASE_MS + 1
    [taken] = await store.tasks.claim("b", later, LEASE_MS, 10)
    assert (taken.id, taken.owner, taken.attempts) == (task.id, "b", 2)
    assert await store.recorders.heartbeat("a", 1, later, [task.id], later + LEASE_MS) == set()
    assert await store.recorders.heartbeat("b", 1, later, [task.id], later + LEASE_MS) == {task.id}
    assert await store.recorders.heartbeat("b", 1, later) == set()
    assert await store.recorders.room(later - LEASE_MS) == 1  # the heartbeats counted too


async def test_release_lets_another_owner_continue_at_once(store: Store) -> None:
    task, _ = await store.tasks.start(task_of("s1"))
    await store.tasks.claim("a", NOW_MS, LEASE_MS, 10)
    await store.tasks.release("a")
    [taken] = await store.tasks.claim("b", NOW_MS + 1, LEASE_MS, 10)
    assert taken.id == task.id


async def test_a_stopping_task_is_still_claimed_so_that_a_recorder_closes_it(store: Store) -> None:
    task, _ = await store.tasks.start(task_of("s1"))
    await store.tasks.request_stop(1, Vendor.TENCENT, "s1", NOW_MS)
    [claimed] = await store.tasks.claim("a", NOW_MS, LEASE_MS, 10)
    assert (claimed.id, claimed.state) == (task.id, TaskState.STOPPING)


async def test_a_poll_reports_stops_and_claims_new_tasks_at_once(
    store: Store, second_store: Store
) -> None:
    running, _ = await store.tasks.start(task_of("s1"))
    idle, _ = await store.tasks.start(task_of("s2"))
    [first] = await store.tasks.claim("a", NOW_MS, LEASE_MS, 1)
    assert first.id == running.id
    assert (await store.tasks.poll("a", [running.id], NOW_MS, LEASE_MS, 0))[:2] == (set(), [])
    await store.tasks.request_stop(1, Vendor.TENCENT, "s1", NOW_MS)
    fresh, _ = await store.tasks.start(task_of("s3"))
    stopping, claimed, *_ = await store.tasks.poll("a", [running.id, "gone"], NOW_MS, LEASE_MS, 5)
    assert stopping == {running.id}
    assert {t.id for t in claimed} == {idle.id, fresh.id}
    assert {(t.owner, t.lease_ms) for t in claimed} == {("a", NOW_MS + LEASE_MS)}
    assert (await second_store.tasks.poll("b", [], NOW_MS + 1, LEASE_MS, 5))[:2] == (set(), [])


async def test_a_poll_tells_when_the_next_lease_held_on_another_task_lapses(
    store: Store, second_store: Store
) -> None:
    task, _ = await store.tasks.start(task_of("s1"))
    await store.tasks.claim("a", NOW_MS, LEASE_MS, 1)
    mine = await store.tasks.poll("a", [task.id], NOW_MS + 1, LEASE_MS, 5)
    assert (mine.lapse_ms, mine.more) == (None, False)
    theirs = await second_store.tasks.poll("b", [], NOW_MS + 1, LEASE_MS, 5)
    assert (theirs.claimed, theirs.lapse_ms, theirs.more) == ([], NOW_MS + LEASE_MS, False)
    lapsed = await second_store.tasks.poll("b", [], NOW_MS + LEASE_MS + 1, LEASE_MS, 5)
    assert [t.id for t in lapsed.claimed] == [task.id]
    assert lapsed.lapse_ms is None


async def test_set_phase_makes_a_pending_task_running(store: Store) -> None:
    task, _ = await store.tasks.start(task_of("s1"))
    await store.tasks.set_phase(task.id, "recording", "rtmp://origin/live/s1")
    now = await store.tasks.get(task.id)
    assert now is not None
    assert (now.state, now.phase, now.detail) == (
        TaskState.RUNNING,
        "recording",
        "rtmp://origin/live/s1",
    )
    assert now.active


@pytest.mark.parametrize("state", [TaskState.ENDED, TaskState.FAILED])
async def test_finish_ends_and_releases_a_task(store: Store, state: TaskState) -> None:
    task, _ = await store.tasks.start(task_of("s1"))
    await store.tasks.claim("a", NOW_MS, LEASE_MS, 10)
    await store.tasks.finish(task.id, state, "done here", NOW_MS + 9)
    now = await store.tasks.get(task.id)
    assert now is not None
    assert (now.state, now.active, now.owner, now.lease_ms) == (state, False, None, None)
    assert (now.detail, now.ended_ms) == ("done here", NOW_MS + 9)
    assert await store.tasks.claim("b", NOW_MS + 10 * LEASE_MS, LEASE_MS, 10) == []
    assert await store.tasks.list(live_only=True) == []
    assert [t.id for t in await store.tasks.list()] == [task.id]
    _, created = await store.tasks.start(task_of("s1"))
    assert created


async def test_apply_writes_phases_and_ends_of_many_tasks_at_once(store: Store) -> None:
    """One transaction: phases of some tasks (pending ones start), ends of others."""
    a, _ = await store.tasks.start(task_of("a"))
    b, _ = await store.tasks.start(task_of("b"))
    c, _ = await store.tasks.start(task_of("c"))
    await store.tasks.claim("owner", NOW_MS, LEASE_MS, 10)
    await store.tasks.apply(
        [
            TaskUpdate(a.id, "recording", "rtmp://origin/live/a"),
            TaskUpdate(b.id, "waiting", "not live"),
            TaskUpdate.ended(b.id, TaskState.FAILED, "not live", NOW_MS + 5),
            TaskUpdate.ended(c.id, TaskState.ENDED, "stopped", NOW_MS + 6),
        ]
    )
    got = {t.id: t for t in await store.tasks.list()}
    assert (got[a.id].state, got[a.id].phase, got[a.id].detail) == (
        TaskState.RUNNING,
        "recording",
        "rtmp://origin/live/a",
    )
    assert got[a.id].owner == "owner"
    for task, state, detail, ended in (
        (b, TaskState.FAILED, "not live", 5),
        (c, TaskState.ENDED, "stopped", 6),
    ):
        now = got[task.id]
        assert (now.state, now.phase, now.detail, now.ended_ms) == (
            state,
            state.value,
            detail,
            NOW_MS + ended,
        )
        assert (now.active, now.owner, now.lease_ms) == (False, None, None)


# -- migrations ---------------------------------------------------------------------------


async def test_migrating_twice_changes_nothing(store: Store, database_url: str) -> None:
    app = App(5, "c" * 32, vendors={Vendor.HUAWEI: VendorSettings(sources=(SOURCE,))})
    await store.apps.put(app, NOW_MS)
    task, _ = await store.tasks.start(task_of("s1"))
    await migrate(store.engine)
    await migrate(store.engine)
    reopened = await Store.open(database_url)
    try:
        assert await reopened.apps.get(5) == app
        assert await reopened.tasks.get(task.id) == task
        async with reopened.engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert len(versions) == 1
    finally:
        await reopened.close()


# -- query plans (SQLite: its planner is fixed, PostgreSQL's depends on statistics) ----------


@pytest.mark.parametrize("name", ["_ACTIVE", "_STOP"])
async def test_sqlite_finds_the_active_task_of_a_stream_through_the_index(
    tmp_path: Path, name: str
) -> None:
    """Start and Stop look up a stream's active task on every call; a table scan grows with
    history (the API bench fell to a quarter of its rate once some 20,000 tasks had ended)."""
    given = {"p_app_id": 1, "p_vendor": "Tencent", "p_stream_id": "s1", "p_stop_ms": 0}
    opened = await Store.open(f"sqlite:///{tmp_path / 'plan.db'}")
    try:
        compiled = getattr(task_queries, name).compile(dialect=opened.engine.dialect)
        values = compiled.construct_params(given)
        args = tuple(values[key] for key in compiled.positiontup or ())
        async with opened.engine.connect() as conn:
            plan = await conn.run_sync(
                lambda c: c.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args).all()
            )
    finally:
        await opened.close()
    assert any("USING INDEX uq_tasks_active_stream" in str(row[-1]) for row in plan), plan
