"""The merge-job repository, on SQLite and PostgreSQL: leases, release, results, retention guard."""

from __future__ import annotations

from cdnrec.config import Vendor
from cdnrec.store import FileFacts, FileState, Store
from cdnrec.store.ids import new_id
from cdnrec.store.jobs import Job, JobRequest, JobState, MergedFile

NOW_MS = 1_700_000_000_000
LEASE_MS = 30_000


def _job(inputs: tuple[str, ...] = ("f1", "f2"), created_ms: int = NOW_MS) -> Job:
    return Job(
        id=new_id(),
        task_id=f"1400341231-EditMedia-{new_id()}",
        app_id=1,
        vendor=Vendor.TENCENT,
        state=JobState.WAITING,
        request=JobRequest(inputs, "mp4", 1, ((0.5, None), (None, 2.0)), "out", 2),
        created_ms=created_ms,
    )


async def test_a_claim_holds_until_its_lease_runs_out(store: Store) -> None:
    job = _job()
    await store.jobs.create(job)
    claimed = await store.jobs.claim("a", NOW_MS, LEASE_MS)
    assert claimed is not None
    assert claimed.state is JobState.PROCESSING
    assert claimed.attempts == 1
    assert claimed.request == job.request
    assert await store.jobs.claim("b", NOW_MS + 1, LEASE_MS) is None
    assert await store.jobs.renew(job.id, "a", NOW_MS + 2 * LEASE_MS)
    assert await store.jobs.claim("b", NOW_MS + LEASE_MS + 1, LEASE_MS) is None
    taken = await store.jobs.claim("b", NOW_MS + 2 * LEASE_MS + 1, LEASE_MS)
    assert taken is not None
    assert taken.owner == "b"
    assert taken.attempts == 2
    assert not await store.jobs.renew(job.id, "a", NOW_MS + 3 * LEASE_MS)


async def test_release_puts_a_job_back_and_open_jobs_guard_their_inputs(store: Store) -> None:
    first, second = _job(("f1", "f2")), _job(("f3",), NOW_MS + 1)
    await store.jobs.create(first)
    await store.jobs.create(second)
    assert await store.jobs.inputs_in_use() == {"f1", "f2", "f3"}
    claimed = await store.jobs.claim("a", NOW_MS, LEASE_MS)
    assert claimed is not None
    assert claimed.id == first.id  # oldest first
    await store.jobs.release("a")
    again = await store.jobs.get(first.id)
    assert again is not None
    assert again.state is JobState.WAITING
    assert again.owner is None
    await store.jobs.fail(second.id, "60000", "corrupt", NOW_MS + 5)
    assert await store.jobs.inputs_in_use() == {"f1", "f2"}
    failed = await store.jobs.by_task(1, Vendor.TENCENT, second.task_id)
    assert failed is not None
    assert (failed.state, failed.error_code, failed.finished_ms) == (
        JobState.FAIL,
        "60000",
        NOW_MS + 5,
    )
    assert await store.jobs.by_task(1, Vendor.HUAWEI, second.task_id) is None


async def test_finish_records_the_merged_file_and_announcing_follows(store: Store) -> None:
    job = _job()
    await store.jobs.create(job)
    claimed = await store.jobs.claim("a", NOW_MS, LEASE_MS)
    assert claimed is not None
    facts = FileFacts("1/merged/20231114/out.mp4", NOW_MS, NOW_MS + 5000, 5.0, 1234,
                      ("h264", "aac"), "ab" * 32, (), False)  # fmt: skip
    record = await store.jobs.finish(claimed, MergedFile(facts, "s1", "local", None), NOW_MS + 9)
    assert record.kind == "merge"
    assert record.state is FileState.STORED
    assert len(record.public_id) == 19
    stored = await store.files.get(record.id)
    assert stored == record
    done = await store.jobs.get(job.id)
    assert done is not None
    assert (done.state, done.result_file_id, done.owner) == (JobState.FINISH, record.id, None)
    assert await store.jobs.inputs_in_use() == set()

    # no compose delivery yet: a restarted runner finds the job and queues one
    [pending] = await store.jobs.ended_without_callback(NOW_MS)
    assert pending.id == job.id
    await store.deliveries.enqueue(1, "compose", job.id, "http://x", {}, NOW_MS + 10)
    assert await store.jobs.ended_without_callback(NOW_MS) == []

    await store.jobs.announced(job.id)
    announced = await store.files.get(record.id)
    assert announced is not None
    assert announced.state is FileState.ANNOUNCED
