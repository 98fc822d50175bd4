"""Merge jobs in the store: created by the API, claimed (with a lease) and finished by a runner."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, exists, insert, or_, select, update

from cdnrec.config import Vendor
from cdnrec.store.database import Database
from cdnrec.store.files import FileFacts
from cdnrec.store.ids import new_handle, new_id, new_public_id
from cdnrec.store.models import FileState, RecordedFile
from cdnrec.store.notify import JOBS, tell
from cdnrec.store.tables import deliveries, files, jobs


class JobState(StrEnum):
    """Life of a job: waiting to be claimed, being processed, finished or failed."""

    WAITING = "waiting"
    PROCESSING = "processing"
    FINISH = "finish"
    FAIL = "fail"


OPEN_STATES = (JobState.WAITING.value, JobState.PROCESSING.value)


@dataclass(frozen=True)
class JobRequest:
    """What a merge job was asked to do (validated; file ids are our row ids)."""

    inputs: tuple[str, ...]
    format: str
    type: int = 0
    spans: tuple[tuple[float | None, float | None], ...] | None = None
    output_name: str = ""
    expire_hours: int = 0

    def as_json(self) -> dict[str, Any]:
        """The request as stored."""
        return {
            "inputs": list(self.inputs),
            "format": self.format,
            "type": self.type,
            "spans": None if self.spans is None else [list(s) for s in self.spans],
            "output_name": self.output_name,
            "expire_hours": self.expire_hours,
        }

    @classmethod
    def of(cls, data: dict[str, Any]) -> JobRequest:
        """The request from its stored form."""
        spans = data.get("spans")
        return cls(
            inputs=tuple(data["inputs"]),
            format=data["format"],
            type=int(data.get("type", 0)),
            spans=None if spans is None else tuple((s[0], s[1]) for s in spans),
            output_name=data.get("output_name", ""),
            expire_hours=int(data.get("expire_hours", 0)),
        )


@dataclass(frozen=True)
class MergedFile:
    """A job's output, stored at `facts.key`, as it goes into the files table."""

    facts: FileFacts
    stream_id: str
    storage: str
    expire_ms: int | None


@dataclass(frozen=True)
class Job:
    """One merge job of an app."""

    id: str
    task_id: str
    app_id: int
    vendor: Vendor
    state: JobState
    request: JobRequest
    created_ms: int
    kind: str = "compose"
    result_file_id: str | None = None
    error_code: str = ""
    error_message: str = ""
    started_ms: int | None = None
    finished_ms: int | None = None
    owner: str | None = None
    lease_ms: int | None = None
    attempts: int = 0


class JobRepo:
    """Reads and writes jobs."""

    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def create(self, job: Job) -> None:
        """Store a new job."""
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(jobs).values(
                    id=job.id,
                    task_id=job.task_id,
                    app_id=job.app_id,
                    vendor=job.vendor.value,
                    kind=job.kind,
                    state=job.state.value,
                    request=job.request.as_json(),
                    error_code="",
                    error_message="",
                    created_ms=job.created_ms,
                    attempts=0,
                )
            )
            await tell(conn, JOBS)

    async def get(self, job_id: str) -> Job | None:
        """The job with this row id."""
        return await self._one(jobs.c.id == job_id)

    async def by_task(self, app_id: int, vendor: Vendor, task_id: str) -> Job | None:
        """The app's job with this public TaskId for this vendor."""
        return await self._one(
            and_(jobs.c.app_id == app_id, jobs.c.vendor == vendor.value, jobs.c.task_id == task_id)
        )

    async def _one(self, where: Any) -> Job | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(jobs).where(where))).first()
        return None if row is None else _job(row._mapping)

    async def claim(self, owner: str, now_ms: int, lease_ms: int) -> Job | None:
        """Take the oldest waiting job (or one whose runner's lease ran out) for `owner`."""
        free = or_(
            jobs.c.state == JobState.WAITING.value,
            and_(
                jobs.c.state == JobState.PROCESSING.value,
                or_(jobs.c.lease_ms.is_(None), jobs.c.lease_ms < now_ms),
            ),
        )
        query = select(jobs).where(free).order_by(jobs.c.created_ms).limit(5)
        async with self._engine.begin() as conn:
            for row in (await conn.execute(query)).all():
                taken = await conn.execute(
                    update(jobs)
                    .where(jobs.c.id == row.id, free)
                    .values(
                        state=JobState.PROCESSING.value,
                        owner=owner,
                        lease_ms=now_ms + lease_ms,
                        started_ms=now_ms,
                        attempts=jobs.c.attempts + 1,
                    )
                )
                if taken.rowcount == 1:
                    claimed = (await conn.execute(select(jobs).where(jobs.c.id == row.id))).one()
                    return _job(claimed._mapping)
        return None

    async def renew(self, job_id: str, owner: str, lease_until_ms: int) -> bool:
        """Extend `owner`'s lease on a job it is processing; False when it lost it."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(jobs)
                .where(
                    jobs.c.id == job_id,
                    jobs.c.owner == owner,
                    jobs.c.state == JobState.PROCESSING.value,
                )
                .values(lease_ms=lease_until_ms)
            )
        return bool(result.rowcount)

    async def release(self, owner: str) -> None:
        """Put the jobs `owner` is processing back to waiting (clean shutdown)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.owner == owner, jobs.c.state == JobState.PROCESSING.value)
                .values(state=JobState.WAITING.value, owner=None, lease_ms=None)
            )

    async def finish(self, job: Job, result: MergedFile, now_ms: int) -> RecordedFile:
        """Record the job's stored output as a file (kind "merge") and finish the job, atomically."""
        facts = result.facts
        record = RecordedFile(
            id=new_id(),
            public_id=new_public_id(),
            handle=new_handle(),
            task_id=job.id,
            app_id=job.app_id,
            vendor=job.vendor,
            stream_id=result.stream_id,
            format=job.request.format,
            state=FileState.STORED,
            begin_ms=facts.begin_ms,
            created_ms=now_ms,
            kind="merge",
            key=facts.key,
            name=facts.key.rsplit("/", 1)[-1],
            storage=result.storage,
            end_ms=facts.end_ms,
            duration=facts.duration,
            size=facts.size,
            codecs=facts.codecs,
            sha256=facts.sha256,
            expire_ms=result.expire_ms,
        )
        values = {k: v for k, v in record.__dict__.items() if k in files.c}
        values.update(
            vendor=job.vendor.value, state=record.state.value, codecs=list(facts.codecs), gaps=[]
        )
        async with self._engine.begin() as conn:
            await conn.execute(insert(files).values(**values))
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job.id)
                .values(
                    state=JobState.FINISH.value,
                    result_file_id=record.id,
                    finished_ms=now_ms,
                    owner=None,
                    lease_ms=None,
                )
            )
        return record

    async def fail(self, job_id: str, code: str, message: str, now_ms: int) -> None:
        """The job failed with a compose callback code (40000, 60000, 70000) and a message."""
        await self._end(
            job_id,
            now_ms,
            state=JobState.FAIL.value,
            error_code=code,
            error_message=message[:2000],
        )

    async def _end(self, job_id: str, now_ms: int, **values: Any) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(finished_ms=now_ms, owner=None, lease_ms=None, **values)
            )

    async def ended_without_callback(self, since_ms: int, limit: int = 100) -> list[Job]:
        """Jobs that ended since `since_ms` with no compose delivery queued (the process died
        between the two steps, or the app has no callback URL)."""
        queued = exists().where(deliveries.c.event == "compose", deliveries.c.subject == jobs.c.id)
        query = (
            select(jobs)
            .where(
                jobs.c.state.in_((JobState.FINISH.value, JobState.FAIL.value)),
                jobs.c.finished_ms >= since_ms,
                ~queued,
            )
            .order_by(jobs.c.finished_ms)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_job(r._mapping) for r in await conn.execute(query)]

    async def inputs_in_use(self) -> set[str]:
        """Row ids of the files that waiting or processing jobs will read (retention keeps them)."""
        query = select(jobs.c.request).where(jobs.c.state.in_(OPEN_STATES))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {file_id for row in rows for file_id in row.request.get("inputs", [])}

    async def announced(self, job_id: str) -> None:
        """The job's compose callback is done: its stored result file becomes announced."""
        job = await self.get(job_id)
        if job is None or job.result_file_id is None:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                update(files)
                .where(files.c.id == job.result_file_id, files.c.state == FileState.STORED.value)
                .values(state=FileState.ANNOUNCED.value)
            )


def _job(row: Any) -> Job:
    return Job(
        id=row["id"],
        task_id=row["task_id"],
        app_id=row["app_id"],
        vendor=Vendor(row["vendor"]),
        kind=row["kind"],
        state=JobState(row["state"]),
        request=JobRequest.of(dict(row["request"])),
        created_ms=row["created_ms"],
        result_file_id=row["result_file_id"],
        error_code=row["error_code"],
        error_message=row["error_message"],
        started_ms=row["started_ms"],
        finished_ms=row["finished_ms"],
        owner=row["owner"],
        lease_ms=row["lease_ms"],
        attempts=row["attempts"],
    )
