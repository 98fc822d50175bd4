"""Files and the callback outbox, written in batches: one contract on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from cdnrec.config import Vendor, VendorSettings
from cdnrec.store import FileFacts, FileState, RecordedFile, Store, Task, TaskState
from cdnrec.store.deliveries import ABANDONED, DELIVERED, PENDING, Attempt, NewDelivery
from cdnrec.store.files import Closing, Published, closed_file, new_file
from cdnrec.store.ids import new_id
from cdnrec.store.recorders import Beat
from cdnrec.store.rounds import Round, Written

NOW_MS = 1_700_000_000_000
RETENTION_MS = 86_400_000


@pytest.fixture
async def task(store: Store) -> Task:
    """A running task that files belong to."""
    created = Task(
        id=new_id(),
        app_id=1,
        vendor=Vendor.TENCENT,
        stream_id="s1",
        refs={"TaskId": "T1"},
        config=VendorSettings(sources=("rtmp://origin/live/{stream_id}",)),
        state=TaskState.RUNNING,
        created_ms=NOW_MS,
        deadline_ms=NOW_MS + 3_600_000,
    )
    await store.tasks.start(created)
    return created


def facts(n: int, gaps: tuple[tuple[float, float], ...] = ()) -> FileFacts:
    """What a recorder knows about its n-th closed file."""
    begin = NOW_MS + n * 10_000
    return FileFacts(
        f"1/s1/20231114/s1_{n}.mp4", begin, begin + 10_000, 10.0, 1000 + n, ("h264", "aac"),
        f"{n:064d}", gaps, n % 2 == 1,
    )  # fmt: skip


async def closed_files(store: Store, task: Task, count: int) -> list[RecordedFile]:
    """`count` files of `task`, opened and closed in one write."""
    opened = [new_file(task, "mp4", f"/p/{n}", NOW_MS + n * 10_000, NOW_MS) for n in range(count)]
    closing = [Closing(r.id, facts(n), NOW_MS + RETENTION_MS) for n, r in enumerate(opened)]
    await store.files.write(opened, closing)
    return opened


def queued(file: RecordedFile, url: str = "http://receiver/zego") -> NewDelivery:
    """A `record` callback for a file."""
    return NewDelivery(1, "record", file.id, url, {"stream_alias": "s1", "file": file.id})


async def state_of(store: Store, file_id: str) -> FileState:
    """A file's state now."""
    record = await store.files.get(file_id)
    assert record is not None
    return record.state


# -- files --------------------------------------------------------------------------------


async def test_files_opened_and_closed_in_one_write(store: Store, task: Task) -> None:
    earlier = await store.files.opened(task, "flv", "/p/earlier", NOW_MS - 10_000, NOW_MS)
    still_open = new_file(task, "m3u8", "/p/open", NOW_MS, NOW_MS)
    split = new_file(task, "mp4", "/p/split", NOW_MS, NOW_MS)
    await store.files.write(
        [still_open, split],
        [
            Closing(split.id, facts(1, gaps=((1.5, 2.0),)), NOW_MS + RETENTION_MS),
            Closing(earlier.id, facts(2), None),
        ],
    )
    assert await store.files.get(still_open.id) == still_open
    done = await store.files.get(split.id)
    assert done is not None
    assert (done.state, done.key, done.name) == (
        FileState.CLOSED,
        "1/s1/20231114/s1_1.mp4",
        "s1_1.mp4",
    )
    assert (done.begin_ms, done.end_ms, done.duration, done.size) == (
        NOW_MS + 10_000,
        NOW_MS + 20_000,
        10.0,
        1001,
    )
    assert (done.codecs, done.gaps, done.repaired) == (("h264", "aac"), ((1.5, 2.0),), True)
    assert (done.sha256, done.expire_ms, done.partial_path) == (
        f"{1:064d}",
        NOW_MS + RETENTION_MS,
        None,
    )
    other = await store.files.get(earlier.id)
    assert other is not None
    assert (other.state, other.format, other.expire_ms) == (FileState.CLOSED, "flv", None)
    assert [f.id for f in await store.files.writing_for(task.id)] == [still_open.id]


async def test_files_published_at_close_are_written_with_their_callbacks(
    store: Store, task: Task
) -> None:
    silent, announced, plain = (
        new_file(task, "mp4", f"/p/{n}", NOW_MS + n, NOW_MS) for n in range(3)
    )
    delivery = queued(announced)
    await store.files.write(
        [silent, announced, plain],
        [
            Closing(silent.id, facts(1), None, Published(FileState.ANNOUNCED)),
            Closing(announced.id, facts(2), None, Published(FileState.STORED, delivery)),
            Closing(plain.id, facts(3), None),
        ],
        now_ms=NOW_MS + 3,
    )
    assert [await state_of(store, f.id) for f in (silent, announced, plain)] == [
        FileState.ANNOUNCED,
        FileState.STORED,
        FileState.CLOSED,
    ]
    [due] = await store.deliveries.due(NOW_MS + 3)
    assert (due.subject, due.url, due.payload, due.created_ms) == (
        announced.id,
        delivery.url,
        delivery.payload,
        NOW_MS + 3,
    )
    record = await store.files.get(announced.id)
    closing = Closing(announced.id, facts(2), None)
    assert record == replace(closed_file(announced, closing), state=FileState.STORED)


async def test_a_write_returns_the_callbacks_it_queued_as_the_outbox_holds_them(
    store: Store, task: Task
) -> None:
    first, second = (new_file(task, "mp4", f"/p/{n}", NOW_MS + n, NOW_MS) for n in range(2))
    published = [
        Closing(f.id, facts(n), None, Published(FileState.STORED, queued(f)))
        for n, f in enumerate((first, second))
    ]
    added = await store.files.write([first, second], published, now_ms=NOW_MS + 3)
    assert added is not None
    assert sorted(added, key=lambda d: d.subject) == sorted(
        await store.deliveries.due(NOW_MS + 3), key=lambda d: d.subject
    )
    assert await store.files.write(closed=[published[0]], now_ms=NOW_MS + 4) == []
    assert await store.files.write(closed=[Closing(first.id, facts(0), None)]) == []


async def test_a_failed_write_leaves_nothing_behind(store: Store, task: Task) -> None:
    first = await store.files.opened(task, "mp4", "/p/1", NOW_MS, NOW_MS)
    again = new_file(task, "flv", "/p/2", NOW_MS, NOW_MS)
    published = Published(FileState.STORED, queued(again))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
        await store.files.write([again, first], [Closing(again.id, facts(1), None, published)])
    assert await store.files.get(again.id) is None
    assert await store.deliveries.for_subject(again.id) == []
    assert await state_of(store, first.id) is FileState.WRITING


async def test_set_states_moves_only_files_in_the_given_state(store: Store, task: Task) -> None:
    files = await closed_files(store, task, 3)
    await store.files.set_state(files[0].id, FileState.DELETED)
    ids = [f.id for f in files]
    await store.files.set_states(ids, FileState.ANNOUNCED, only_from=FileState.CLOSED)
    assert [await state_of(store, i) for i in ids] == [
        FileState.DELETED,
        FileState.ANNOUNCED,
        FileState.ANNOUNCED,
    ]
    await store.files.set_states(ids[:2], FileState.DELETED)
    assert [await state_of(store, i) for i in ids] == [
        FileState.DELETED,
        FileState.DELETED,
        FileState.ANNOUNCED,
    ]


async def test_tasks_are_read_many_at_once(store: Store, task: Task) -> None:
    assert await store.tasks.get_many([task.id, "no-such-task"]) == {task.id: task}
    assert await store.tasks.get_many([]) == {}


# -- the outbox ---------------------------------------------------------------------------


async def test_enqueue_adds_a_delivery_once_and_marks_its_file_stored(
    store: Store, task: Task
) -> None:
    [file] = await closed_files(store, task, 1)
    first = queued(file)
    assert await store.deliveries.enqueue(
        1, "record", file.id, first.url, first.payload, NOW_MS, file_stored=file.id
    )
    assert await state_of(store, file.id) is FileState.STORED
    assert not await store.deliveries.enqueue(
        1, "record", file.id, "http://elsewhere", {"other": 1}, NOW_MS + 5, file_stored=file.id
    )
    [delivery] = await store.deliveries.for_subject(file.id)
    assert (delivery.url, delivery.payload, delivery.created_ms) == (
        first.url,
        first.payload,
        NOW_MS,
    )
    # the same subject for another event is another delivery
    assert await store.deliveries.enqueue(1, "compose", file.id, first.url, {}, NOW_MS)


async def test_enqueue_many_skips_queued_subjects_and_stores_only_closed_files(
    store: Store, task: Task
) -> None:
    old, new, gone = await closed_files(store, task, 3)
    await store.deliveries.enqueue(1, "record", old.id, "http://first", {"first": 1}, NOW_MS)
    await store.files.set_state(gone.id, FileState.DELETED)
    batch = [queued(old), queued(new), queued(new, "http://twice"), queued(gone)]
    added = await store.deliveries.enqueue_many(
        batch, NOW_MS + 7, files_stored=[old.id, new.id, gone.id]
    )
    # which were added when some were not: known on PostgreSQL, not on SQLite (None)
    if added is not None:
        assert sorted(d.subject for d in added) == sorted([new.id, gone.id])
    by_subject = {d.subject: d for d in await store.deliveries.recent()}
    assert set(by_subject) == {old.id, new.id, gone.id}
    assert by_subject[old.id].payload == {"first": 1}
    assert (by_subject[new.id].state, by_subject[new.id].next_ms) == (PENDING, NOW_MS + 7)
    assert by_subject[new.id].url == "http://receiver/zego"
    assert [await state_of(store, f.id) for f in (old, new, gone)] == [
        FileState.STORED,
        FileState.STORED,
        FileState.DELETED,
    ]
    assert await store.deliveries.enqueue_many([], NOW_MS) == []
    assert await store.deliveries.enqueue_many(batch[:2], NOW_MS) == []


async def test_concurrent_enqueues_of_one_subject_add_one_delivery(
    store: Store, second_store: Store, task: Task
) -> None:
    [file] = await closed_files(store, task, 1)
    added = await asyncio.gather(
        *(
            s.deliveries.enqueue(1, "record", file.id, "http://r", {"n": n}, NOW_MS)
            for n, s in enumerate([store, second_store] * 3)
        )
    )
    assert sorted(added) == [False] * 5 + [True]
    assert len(await store.deliveries.for_subject(file.id)) == 1


async def test_attempts_are_recorded_together_and_done_records_announce_their_files(
    store: Store, task: Task
) -> None:
    delivered, retried, abandoned = await closed_files(store, task, 3)
    await store.deliveries.enqueue_many(
        [queued(f) for f in (delivered, retried, abandoned)],
        NOW_MS,
        files_stored=[delivered.id, retried.id, abandoned.id],
    )
    await store.deliveries.enqueue(1, "compose", "job-1", "http://r", {}, NOW_MS)
    due = {d.subject: d for d in await store.deliveries.due(NOW_MS)}
    assert set(due) == {delivered.id, retried.id, abandoned.id, "job-1"}

    def attempt(subject: str, state: str, status: int | None, error: str) -> Attempt:
        event = "compose" if subject == "job-1" else "record"
        return Attempt(
            due[subject].id, event, subject, state, status, error, NOW_MS + 9, NOW_MS + 5
        )

    await store.deliveries.attempted(
        [
            attempt(delivered.id, DELIVERED, 200, ""),
            attempt(retried.id, PENDING, 500, "HTTP 500"),
            attempt(abandoned.id, ABANDONED, None, "x" * 3000),
            attempt("job-1", DELIVERED, 204, ""),
        ]
    )
    after = {d.subject: d for d in await store.deliveries.recent()}
    assert (after[delivered.id].state, after[delivered.id].delivered_ms) == (DELIVERED, NOW_MS + 5)
    assert after[delivered.id].last_status == 200
    assert (after[retried.id].state, after[retried.id].next_ms) == (PENDING, NOW_MS + 9)
    assert (after[retried.id].last_error, after[retried.id].delivered_ms) == ("HTTP 500", None)
    assert after[abandoned.id].state == ABANDONED
    assert after[abandoned.id].last_error == "x" * 2000
    assert {d.attempts for d in after.values()} == {1}
    assert [await state_of(store, f.id) for f in (delivered, retried, abandoned)] == [
        FileState.ANNOUNCED,
        FileState.STORED,
        FileState.ANNOUNCED,
    ]
    await store.deliveries.attempted([])


async def test_a_later_failed_attempt_keeps_the_first_delivery_time(
    store: Store, task: Task
) -> None:
    [file] = await closed_files(store, task, 1)
    await store.deliveries.enqueue_many([queued(file)], NOW_MS, files_stored=[file.id])
    [delivery] = await store.deliveries.due(NOW_MS)
    ok = Attempt(delivery.id, "record", file.id, DELIVERED, 200, "", NOW_MS + 1, NOW_MS + 1)
    await store.deliveries.attempted([ok])
    assert await store.deliveries.redeliver(delivery.id, NOW_MS + 2)
    failed = Attempt(
        delivery.id, "record", file.id, PENDING, 503, "HTTP 503", NOW_MS + 9, NOW_MS + 3
    )
    await store.deliveries.attempted([failed])
    [again] = await store.deliveries.for_subject(file.id)
    assert (again.state, again.attempts, again.delivered_ms) == (PENDING, 2, NOW_MS + 1)


# -- a recorder's round -------------------------------------------------------------------


async def test_a_round_writes_files_checksums_and_the_heartbeat_together(
    store: Store, task: Task
) -> None:
    claimed = await store.tasks.poll("rec-a", [], NOW_MS, 15_000, 1)
    assert [t.id for t in claimed.claimed] == [task.id]
    (earlier,) = await closed_files(store, task, 1)
    split = new_file(task, "mp4", "/p/split", NOW_MS + 10_000, NOW_MS)
    written = await store.write(
        Round(
            opened=[split],
            closed=[Closing(split.id, facts(1), None)],
            now_ms=NOW_MS,
            checksums=[(facts(0).key, "ab" * 32)],
            beat=Beat("rec-a", 5, NOW_MS + 1, (task.id, "someone-else-s"), NOW_MS + 60_000),
        )
    )
    assert written.held == {task.id}  # the lease on a task it does not hold is not renewed
    assert written.queued == []
    split_now = await store.files.get(split.id)
    earlier_now = await store.files.get(earlier.id)
    assert split_now is not None
    assert split_now.state is FileState.CLOSED
    assert earlier_now is not None
    assert earlier_now.sha256 == "ab" * 32
    assert await store.recorders.room(NOW_MS) == 5 - 1  # its capacity less the task it holds
    # the lease lasts until the beat said: another recorder cannot take the task before then
    later = await store.tasks.poll("rec-b", [], NOW_MS + 59_000, 15_000, 1)
    assert later.claimed == []


async def test_a_round_with_nothing_but_checksums_renews_no_lease(store: Store, task: Task) -> None:
    (file,) = await closed_files(store, task, 1)
    written = await store.write(Round(checksums=[(facts(0).key, "cd" * 32)]))
    assert written == Written([], None)
    record = await store.files.get(file.id)
    assert record is not None
    assert record.sha256 == "cd" * 32
