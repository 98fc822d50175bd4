"""Recorded files in the store: opened and closed by recorders, stored and announced after."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from cdnrec.config import Vendor
from cdnrec.store.ids import new_handle, new_id, new_public_id
from cdnrec.store.models import FileState, RecordedFile, Task
from cdnrec.store.tables import files


@dataclass(frozen=True)
class FileFacts:
    """What a recorder knows about a file once it is complete."""

    key: str
    begin_ms: int
    end_ms: int
    duration: float
    size: int
    codecs: tuple[str, ...]
    sha256: str
    gaps: tuple[tuple[float, float], ...]
    repaired: bool


class FileRepo:
    """Reads and writes file records."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def opened(
        self, task: Task, fmt: str, partial_path: str, begin_ms: int, now_ms: int
    ) -> RecordedFile:
        """Record a file a recorder started writing."""
        record = RecordedFile(
            id=new_id(),
            public_id=new_public_id(),
            handle=new_handle(),
            task_id=task.id,
            app_id=task.app_id,
            vendor=task.vendor,
            stream_id=task.stream_id,
            format=fmt,
            state=FileState.WRITING,
            begin_ms=begin_ms,
            created_ms=now_ms,
            partial_path=partial_path,
            storage=task.config.storage,
        )
        values = {k: v for k, v in record.__dict__.items() if k in files.c}
        values.update(vendor=task.vendor.value, state=record.state.value, codecs=[], gaps=[])
        async with self._engine.begin() as conn:
            await conn.execute(insert(files).values(**values))
        return record

    async def closed(self, file_id: str, facts: FileFacts, expire_ms: int | None) -> None:
        """Record that a file is complete at its final key."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(files)
                .where(files.c.id == file_id)
                .values(
                    state=FileState.CLOSED.value,
                    key=facts.key,
                    begin_ms=facts.begin_ms,
                    end_ms=facts.end_ms,
                    duration=facts.duration,
                    size=facts.size,
                    codecs=list(facts.codecs),
                    sha256=facts.sha256,
                    gaps=[list(g) for g in facts.gaps],
                    repaired=facts.repaired,
                    expire_ms=expire_ms,
                    partial_path=None,
                )
            )

    async def discard(self, file_id: str) -> None:
        """Forget a file that held no media (e.g. cut before its first packet)."""
        await self.set_state(file_id, FileState.DELETED)

    async def set_state(self, file_id: str, state: FileState) -> None:
        """Move a file to `state`."""
        async with self._engine.begin() as conn:
            await conn.execute(update(files).where(files.c.id == file_id).values(state=state.value))

    async def get(self, file_id: str) -> RecordedFile | None:
        """The file with this row id."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(files).where(files.c.id == file_id))).first()
        return None if row is None else _file(row._mapping)

    async def in_state(self, state: FileState, limit: int = 100) -> list[RecordedFile]:
        """Files in `state`, oldest first."""
        query = (
            select(files)
            .where(files.c.state == state.value)
            .order_by(files.c.created_ms)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_file(r._mapping) for r in await conn.execute(query)]

    async def writing_for(self, task_id: str) -> list[RecordedFile]:
        """Files of a task still marked as being written (left by a recorder that died)."""
        query = select(files).where(
            files.c.task_id == task_id, files.c.state == FileState.WRITING.value
        )
        async with self._engine.connect() as conn:
            return [_file(r._mapping) for r in await conn.execute(query)]

    async def owner_of(self, key: str) -> int | None:
        """The app that owns the live (not deleted) file stored at `key`."""
        query = select(files.c.app_id).where(
            files.c.key == key, files.c.state != FileState.DELETED.value
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query.limit(1))).first()
        return None if row is None else int(row.app_id)

    async def for_task(self, task_id: str) -> list[RecordedFile]:
        """Every file of a task, in recording order."""
        query = select(files).where(files.c.task_id == task_id).order_by(files.c.begin_ms)
        async with self._engine.connect() as conn:
            return [_file(r._mapping) for r in await conn.execute(query)]


def _file(row: Any) -> RecordedFile:
    return RecordedFile(
        id=row["id"],
        public_id=row["public_id"],
        handle=row["handle"],
        task_id=row["task_id"],
        app_id=row["app_id"],
        vendor=Vendor(row["vendor"]),
        stream_id=row["stream_id"],
        format=row["format"],
        state=FileState(row["state"]),
        begin_ms=row["begin_ms"],
        created_ms=row["created_ms"],
        partial_path=row["partial_path"],
        key=row["key"],
        storage=row["storage"],
        end_ms=row["end_ms"],
        duration=row["duration"],
        size=row["size"],
        codecs=tuple(row["codecs"] or ()),
        sha256=row["sha256"],
        gaps=tuple((float(a), float(b)) for a, b in row["gaps"] or ()),
        repaired=row["repaired"],
        expire_ms=row["expire_ms"],
    )
