"""The SQL store: apps, tasks, files and deliveries, on SQLite or PostgreSQL."""

from __future__ import annotations

from sqlalchemy import text

from cdnrec.store.apps import AppRepo
from cdnrec.store.database import Database, migrate, open_engine
from cdnrec.store.deliveries import DeliveryRepo
from cdnrec.store.files import FileFacts, FileRepo
from cdnrec.store.jobs import JobRepo
from cdnrec.store.models import App, FileState, RecordedFile, Task, TaskState
from cdnrec.store.recorders import RecorderRepo
from cdnrec.store.revision import Revision, revision_for
from cdnrec.store.rounds import Round, Written, write_round
from cdnrec.store.tasks import TaskRepo


class Store:
    """One database, reached through a repository per kind of record."""

    def __init__(self, engine: Database) -> None:
        self.engine = engine
        self.revision: Revision = revision_for(engine)
        """A token that changes when another process committed (None: it cannot tell)."""
        self.apps = AppRepo(engine)
        self.tasks = TaskRepo(engine)
        self.files = FileRepo(engine)
        self.deliveries = DeliveryRepo(engine)
        self.jobs = JobRepo(engine)
        self.recorders = RecorderRepo(engine)

    @classmethod
    async def open(cls, url: str, *, migrate_schema: bool = True) -> Store:
        """Connect to `url` and (by default) migrate it to the latest schema."""
        engine = open_engine(url)
        if migrate_schema:
            await migrate(engine)
        return cls(engine)

    async def write(self, round_: Round) -> Written:
        """A recorder's file changes, checksums and heartbeat, in one transaction."""
        return await write_round(self.engine, round_)

    async def ping(self) -> None:
        """Raise if the database does not answer."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        """Release every connection (and stop watching the database files)."""
        if self.revision.changes is not None:
            self.revision.changes.close()
        await self.engine.dispose()


__all__ = ["App", "FileFacts", "FileState", "RecordedFile", "Store", "Task", "TaskState"]
