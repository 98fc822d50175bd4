"""Recorded files in the store: opened and closed by recorders, stored and announced after."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import (
    JSON,
    Connection,
    Executable,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from cdnrec.config import Vendor
from cdnrec.store.database import Database, transaction
from cdnrec.store.deliveries import NewDelivery, insert_once
from cdnrec.store.ids import new_handle, new_id, new_public_id
from cdnrec.store.models import Delivery, FileState, RecordedFile, Task
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
    sha256: str | None
    """None for a recorded file until it is read back (``FileRepo.set_checksums``)."""
    gaps: tuple[tuple[float, float], ...]
    repaired: bool


@dataclass(frozen=True)
class Published:
    """A closed file already durable in its storage target: what it becomes, and its callback."""

    state: FileState  # stored (its callback queued) or announced (no callback to send)
    delivery: NewDelivery | None = None


@dataclass(frozen=True)
class Closing:
    """A file (by row id) that is complete at its final key, and when its retention ends.

    With `published`, the file is written in that state (not closed) and its callback is queued
    in the same transaction.
    """

    file_id: str
    facts: FileFacts
    expire_ms: int | None
    published: Published | None = None


def closed_file(record: RecordedFile, closing: Closing) -> RecordedFile:
    """`record` as a closing leaves it (closed, at its final key)."""
    facts = closing.facts
    return replace(
        record,
        state=FileState.CLOSED,
        key=facts.key,
        name=facts.key.rsplit("/", 1)[-1],
        begin_ms=facts.begin_ms,
        end_ms=facts.end_ms,
        duration=facts.duration,
        size=facts.size,
        codecs=facts.codecs,
        sha256=facts.sha256,
        gaps=facts.gaps,
        repaired=facts.repaired,
        expire_ms=closing.expire_ms,
        partial_path=None,
    )


def new_file(task: Task, fmt: str, partial_path: str, begin_ms: int, now_ms: int) -> RecordedFile:
    """The record of a file a recorder started writing (not stored yet)."""
    return RecordedFile(
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


class FileRepo:
    """Reads and writes file records."""

    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def opened(
        self, task: Task, fmt: str, partial_path: str, begin_ms: int, now_ms: int
    ) -> RecordedFile:
        """Record a file a recorder started writing."""
        record = new_file(task, fmt, partial_path, begin_ms, now_ms)
        await self.write(opened=[record])
        return record

    async def closed(self, file_id: str, facts: FileFacts, expire_ms: int | None) -> None:
        """Record that a file is complete at its final key."""
        await self.write(closed=[Closing(file_id, facts, expire_ms)])

    async def write(
        self, opened: Sequence[RecordedFile] = (), closed: Sequence[Closing] = (), now_ms: int = 0
    ) -> list[Delivery] | None:
        """Insert files that were opened, then complete files that were closed (and queue the
        callbacks of those published, due at `now_ms`): one transaction.

        A file may be opened and closed in the same call. Returns the callbacks queued (None
        when it cannot tell which, see `insert_once`).
        """
        return await transaction(self._engine, write_files, opened, closed, now_ms)

    async def discard(self, file_id: str) -> None:
        """Forget a file that held no media (e.g. cut before its first packet)."""
        await self.set_state(file_id, FileState.DELETED)

    async def set_state(self, file_id: str, state: FileState) -> None:
        """Move a file to `state`."""
        await self.set_states([file_id], state)

    async def set_states(
        self, file_ids: Sequence[str], state: FileState, *, only_from: FileState | None = None
    ) -> None:
        """Move files to `state` (with `only_from`: those of them in that state), in one statement."""
        where: ColumnElement[bool] = files.c.id.in_(file_ids)
        if only_from is not None:
            where = and_(where, files.c.state == only_from.value)
        await transaction(
            self._engine, _execute, update(files).where(where).values(state=state.value)
        )

    async def set_checksums(self, sums: Sequence[tuple[str, str]]) -> None:
        """Set the SHA-256 of live files by key (key, hex digest), in one statement."""
        await transaction(self._engine, write_checksums, sums)

    async def without_checksum(self, limit: int = 1000) -> list[RecordedFile]:
        """Recorded files complete on disk whose checksum was never written (the process that
        closed them stopped before reading them back), oldest first."""
        query = (
            select(files)
            .where(
                files.c.sha256.is_(None),
                files.c.kind == "recording",
                files.c.state.in_(_COMPLETE),
            )
            .order_by(files.c.created_ms)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_file(r._mapping) for r in await conn.execute(query)]

    async def announced(self, file_id: str) -> None:
        """A stored file's callback is done (delivered or given up); deleted files stay deleted."""
        await self.set_states([file_id], FileState.ANNOUNCED, only_from=FileState.STORED)

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

    async def by_key(self, key: str) -> RecordedFile | None:
        """The live (not deleted) file stored at `key`."""
        query = select(files).where(files.c.key == key, files.c.state != FileState.DELETED.value)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query.limit(1))).first()
        return None if row is None else _file(row._mapping)

    async def search(
        self, query: FileQuery, offset: int, limit: int
    ) -> tuple[int, list[RecordedFile]]:
        """(how many files match, one page of them), newest first."""
        where = query.where()
        page = (
            select(files)
            .where(where)
            .order_by(files.c.created_ms.desc(), files.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            total = (await conn.execute(select(func.count()).where(where))).scalar_one()
            return int(total), [_file(r._mapping) for r in await conn.execute(page)]

    async def after(
        self, query: FileQuery, marker: tuple[int, str] | None, limit: int
    ) -> list[RecordedFile]:
        """Up to `limit` matching files after `marker` (created_ms, id), oldest first."""
        where = query.where()
        if marker is not None:
            created, row_id = marker
            where = and_(
                where,
                or_(
                    files.c.created_ms > created,
                    and_(files.c.created_ms == created, files.c.id > row_id),
                ),
            )
        page = select(files).where(where).order_by(files.c.created_ms, files.c.id).limit(limit)
        async with self._engine.connect() as conn:
            return [_file(r._mapping) for r in await conn.execute(page)]

    async def find(
        self, app_id: int, vendor: Vendor, column: str, values: list[str]
    ) -> list[RecordedFile]:
        """The app's live files whose `column` (public_id, handle or key) is one of `values`."""
        if not values:
            return []
        query = select(files).where(
            files.c.app_id == app_id,
            files.c.vendor == vendor.value,
            files.c.state != FileState.DELETED.value,
            ID_COLUMNS[column].in_(values),
        )
        async with self._engine.connect() as conn:
            return [_file(r._mapping) for r in await conn.execute(query)]

    async def oldest_announced(self, storage: str, limit: int = 50) -> list[RecordedFile]:
        """The oldest announced files in one storage target."""
        query = (
            select(files)
            .where(files.c.state == FileState.ANNOUNCED.value, files.c.storage == storage)
            .order_by(files.c.end_ms)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_file(r._mapping) for r in await conn.execute(query)]

    async def expired(self, now_ms: int, limit: int = 100) -> list[RecordedFile]:
        """Announced files whose retention has passed, oldest expiry first."""
        query = (
            select(files)
            .where(
                files.c.state == FileState.ANNOUNCED.value,
                files.c.expire_ms.is_not(None),
                files.c.expire_ms <= now_ms,
            )
            .order_by(files.c.expire_ms)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_file(r._mapping) for r in await conn.execute(query)]

    async def for_task(self, task_id: str) -> list[RecordedFile]:
        """Every file of a task, in recording order."""
        query = select(files).where(files.c.task_id == task_id).order_by(files.c.begin_ms)
        async with self._engine.connect() as conn:
            return [_file(r._mapping) for r in await conn.execute(query)]


# Built once and run with parameters (executemany): building a statement per call cost more than
# running it on SQLite.
_INSERT = insert(files)
_CLOSE = (
    update(files)
    .where(files.c.id == bindparam("p_id"))
    .values(
        state=bindparam("p_state"),
        key=bindparam("p_key"),
        name=bindparam("p_name"),
        begin_ms=bindparam("p_begin_ms"),
        end_ms=bindparam("p_end_ms"),
        duration=bindparam("p_duration"),
        size=bindparam("p_size"),
        codecs=bindparam("p_codecs", type_=JSON),
        sha256=bindparam("p_sha256"),
        gaps=bindparam("p_gaps", type_=JSON),
        repaired=bindparam("p_repaired"),
        expire_ms=bindparam("p_expire_ms"),
        partial_path=None,
    )
)
_CHECKSUM = (
    update(files)
    .where(files.c.key == bindparam("p_key"), files.c.state != FileState.DELETED.value)
    .values(sha256=bindparam("p_sha256"))
)
_COMPLETE = (FileState.CLOSED.value, FileState.STORED.value, FileState.ANNOUNCED.value)


def _inserted(record: RecordedFile) -> dict[str, Any]:
    values = {k: v for k, v in record.__dict__.items() if k in files.c}
    values.update(vendor=record.vendor.value, state=record.state.value, codecs=[], gaps=[])
    return values


def _closed(closing: Closing) -> dict[str, Any]:
    facts = closing.facts
    state = closing.published.state if closing.published else FileState.CLOSED
    return {
        "p_id": closing.file_id,
        "p_state": state.value,
        "p_key": facts.key,
        "p_name": facts.key.rsplit("/", 1)[-1],
        "p_begin_ms": facts.begin_ms,
        "p_end_ms": facts.end_ms,
        "p_duration": facts.duration,
        "p_size": facts.size,
        "p_codecs": list(facts.codecs),
        "p_sha256": facts.sha256,
        "p_gaps": [list(g) for g in facts.gaps],
        "p_repaired": facts.repaired,
        "p_expire_ms": closing.expire_ms,
    }


VISIBLE = (FileState.STORED.value, FileState.ANNOUNCED.value)
ID_COLUMNS = {"public_id": files.c.public_id, "handle": files.c.handle, "key": files.c.key}


@dataclass(frozen=True)
class FileQuery:
    """Which of an app's stored files a search wants."""

    app_id: int
    vendor: Vendor
    name_prefix: str = ""
    created_from_ms: int | None = None
    created_to_ms: int | None = None
    public_ids: tuple[str, ...] = ()
    stream_ids: tuple[str, ...] = ()

    def where(self) -> ColumnElement[bool]:
        """The SQL condition of this query."""
        clauses = [
            files.c.app_id == self.app_id,
            files.c.vendor == self.vendor.value,
            files.c.state.in_(VISIBLE),
        ]
        if self.name_prefix:
            escaped = self.name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(files.c.name.like(escaped + "%", escape="\\"))
        if self.created_from_ms is not None:
            clauses.append(files.c.created_ms >= self.created_from_ms)
        if self.created_to_ms is not None:
            clauses.append(files.c.created_ms <= self.created_to_ms)
        if self.public_ids:
            clauses.append(files.c.public_id.in_(self.public_ids))
        if self.stream_ids:
            clauses.append(files.c.stream_id.in_(self.stream_ids))
        return and_(*clauses)


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
        kind=row["kind"],
        state=FileState(row["state"]),
        begin_ms=row["begin_ms"],
        created_ms=row["created_ms"],
        partial_path=row["partial_path"],
        key=row["key"],
        name=row["name"],
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


def write_files(
    conn: Connection,
    opened: Sequence[RecordedFile],
    closed: Sequence[Closing],
    now_ms: int,
) -> list[Delivery] | None:
    """``FileRepo.write``'s statements, within a transaction of ``conn``."""
    if opened:
        conn.execute(_INSERT, [_inserted(r) for r in opened])
    if closed:
        conn.execute(_CLOSE, [_closed(c) for c in closed])
    queued = [c.published.delivery for c in closed if c.published and c.published.delivery]
    return insert_once(conn, queued, now_ms) if queued else []


def write_checksums(conn: Connection, sums: Sequence[tuple[str, str]]) -> None:
    """``FileRepo.set_checksums``'s statement, within a transaction of ``conn``."""
    if sums:
        conn.execute(_CHECKSUM, [{"p_key": key, "p_sha256": sha256} for key, sha256 in sums])


def _execute(conn: Connection, statement: Executable) -> None:
    conn.execute(statement)
