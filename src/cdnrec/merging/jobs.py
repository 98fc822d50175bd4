"""What the API needs of merge jobs: submit one (and wake the runner), look one up, its files."""

from __future__ import annotations

from collections.abc import Callable

from cdnrec.config import Vendor
from cdnrec.store import RecordedFile, Store
from cdnrec.store.jobs import Job


class MergeJobs:
    """Merge jobs as the API sees them."""

    def __init__(self, store: Store, on_submitted: Callable[[], None] = lambda: None) -> None:
        self._store = store
        self._on_submitted = on_submitted

    async def submit(self, job: Job) -> None:
        """Store a new waiting job and wake the runner."""
        await self._store.jobs.create(job)
        self._on_submitted()

    async def by_task(self, app_id: int, vendor: Vendor, task_id: str) -> Job | None:
        """The app's job with this public TaskId."""
        return await self._store.jobs.by_task(app_id, vendor, task_id)

    async def files(
        self, app_id: int, vendor: Vendor, column: str, ids: list[str]
    ) -> list[RecordedFile]:
        """The app's live files of this vendor whose `column` is one of `ids`."""
        return await self._store.files.find(app_id, vendor, column, ids)

    async def file(self, file_id: str) -> RecordedFile | None:
        """A file by row id (a job's result)."""
        return await self._store.files.get(file_id)
