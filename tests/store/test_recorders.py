"""Admission control's view of the recorders: who is alive, with how much room (SQLite and PostgreSQL)."""

from __future__ import annotations

from cdnrec.admission import FRESH, Places
from cdnrec.config import Vendor
from cdnrec.store import Store, TaskState
from tests.store.test_store_contract import LEASE_MS, NOW_MS, task_of


async def test_no_recorder_seen_means_no_answer(store: Store) -> None:
    assert await store.recorders.room(NOW_MS - LEASE_MS) is None
    await store.recorders.heartbeat("old", 10, NOW_MS - LEASE_MS - 1)
    assert await store.recorders.room(NOW_MS - LEASE_MS) is None


async def test_room_is_the_live_recorders_capacity_minus_the_tasks_holding_a_place(
    store: Store,
) -> None:
    await store.recorders.heartbeat("a", 3, NOW_MS)
    await store.recorders.heartbeat("b", 2, NOW_MS)
    await store.recorders.heartbeat("stale", 50, NOW_MS - LEASE_MS - 1)
    assert await store.recorders.room(NOW_MS - LEASE_MS) == 5
    pending, _ = await store.tasks.start(task_of("s1"))
    await store.tasks.start(task_of("s2"))
    stopping, _ = await store.tasks.start(task_of("s3"))
    await store.tasks.request_stop(1, Vendor.TENCENT, "s3", NOW_MS)
    assert await store.recorders.room(NOW_MS - LEASE_MS) == 2  # a stopping task still holds one
    await store.tasks.finish(stopping.id, TaskState.ENDED, "stopped", NOW_MS)
    await store.tasks.finish(pending.id, TaskState.FAILED, "boom", NOW_MS)
    assert await store.recorders.room(NOW_MS - LEASE_MS) == 4


async def test_a_heartbeat_updates_the_capacity_and_gone_removes_the_recorder(
    store: Store,
) -> None:
    await store.recorders.heartbeat("a", 3, NOW_MS - LEASE_MS - 1)
    await store.recorders.heartbeat("a", 7, NOW_MS)
    assert await store.recorders.room(NOW_MS - LEASE_MS) == 7
    await store.recorders.gone("a")
    assert await store.recorders.room(NOW_MS - LEASE_MS) is None


async def test_room_can_be_negative_when_recorders_shrank(store: Store) -> None:
    await store.recorders.heartbeat("a", 1, NOW_MS)
    for name in ("s1", "s2", "s3"):
        await store.tasks.start(task_of(name))
    assert await store.recorders.room(NOW_MS - LEASE_MS) == -2


async def test_start_reads_the_room_at_most_once_a_second_and_counts_its_own_tasks(
    store: Store,
) -> None:
    ticks = [0.0]
    places = Places(
        store, seen_within=LEASE_MS / 1000, clock=lambda: NOW_MS / 1000, monotonic=lambda: ticks[0]
    )
    await store.recorders.heartbeat("a", 2, NOW_MS)
    first = await places.admit(1, Vendor.TENCENT, ["s1", "s2", "s3"])
    assert first.admitted == {"s1", "s2"}
    for name in ("s1", "s2"):
        await store.tasks.start(task_of(name))
    places.settle(first, 2)
    await store.recorders.heartbeat("b", 5, NOW_MS)  # more room, seen a second later
    again = await places.admit(1, Vendor.TENCENT, ["s3", "s1"])
    assert again.admitted == {"s1"}
    places.settle(again, 0)
    ticks[0] = FRESH
    assert (await places.admit(1, Vendor.TENCENT, ["s3", "s1"])).admitted == {"s3", "s1"}


async def test_concurrent_starts_do_not_all_take_the_last_place(store: Store) -> None:
    places = Places(store, seen_within=LEASE_MS / 1000, clock=lambda: NOW_MS / 1000)
    await store.recorders.heartbeat("a", 1, NOW_MS)
    one = await places.admit(1, Vendor.TENCENT, ["s1"])
    other = await places.admit(1, Vendor.TENCENT, ["s2"])  # before the first created its task
    assert (one.admitted, other.admitted) == ({"s1"}, set())
    places.settle(other, 0)
    places.settle(one, 0)  # its Start failed: the place is free again
    assert (await places.admit(1, Vendor.TENCENT, ["s2"])).admitted == {"s2"}
