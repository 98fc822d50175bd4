"""The callback outbox: deliveries stored until sent, retried on a schedule, kept for the console."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Connection, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cdnrec.store.database import Database, transaction
from cdnrec.store.ids import new_id
from cdnrec.store.models import Delivery, FileState
from cdnrec.store.tables import deliveries, files

PENDING = "pending"
DELIVERED = "delivered"
ABANDONED = "abandoned"


@dataclass(frozen=True)
class NewDelivery:
    """A callback to put in the outbox: one per (event, subject)."""

    app_id: int
    event: str
    subject: str
    url: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Attempt:
    """The outcome of one attempt at a delivery; `state` is pending again when it will be retried."""

    delivery_id: str
    event: str
    subject: str
    state: str
    status: int | None
    error: str
    next_ms: int
    at_ms: int


class DeliveryRepo:
    """Reads and writes deliveries."""

    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def enqueue(
        self,
        app_id: int,
        event: str,
        subject: str,
        url: str,
        payload: dict[str, Any],
        now_ms: int,
        *,
        file_stored: str | None = None,
    ) -> bool:
        """Add a delivery unless one exists for (event, subject); True when added.

        With `file_stored`, that file is marked stored in the same transaction.
        """
        values = _queued(NewDelivery(app_id, event, subject, url, payload), now_ms)
        async with self._engine.begin() as conn:
            added = (await conn.execute(_INSERT_ONCE[conn.dialect.name], values)).rowcount
            if file_stored is not None:
                await conn.execute(_STORED, {"p_ids": [file_stored]})
        return bool(added)

    async def enqueue_many(
        self, queued: Sequence[NewDelivery], now_ms: int, *, files_stored: Sequence[str] = ()
    ) -> list[Delivery] | None:
        """Add the deliveries that do not exist yet (per event and subject) and mark the files
        `files_stored` (those of them still closed) stored: one transaction.

        Returns the deliveries added, as `due` would read them, or None when it cannot tell
        which (see `insert_once`).
        """
        return await transaction(self._engine, _enqueue, queued, now_ms, list(files_stored))

    async def due(self, now_ms: int, limit: int = 50) -> list[Delivery]:
        """Pending deliveries whose next attempt is due."""
        query = (
            select(deliveries)
            .where(deliveries.c.state == PENDING, deliveries.c.next_ms <= now_ms)
            .order_by(deliveries.c.next_ms)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_delivery(r._mapping) for r in await conn.execute(query)]

    async def attempted(self, attempts: Sequence[Attempt]) -> None:
        """Record the outcomes of attempts; a `record` delivery that is done (delivered or given
        up) announces its file (if stored): one transaction."""
        if not attempts:
            return
        done = [a.subject for a in attempts if a.event == "record" and a.state != PENDING]
        await transaction(self._engine, _record_attempts, [_attempted(a) for a in attempts], done)

    async def redeliver(self, delivery_id: str, now_ms: int) -> bool:
        """Send a delivery again now (from the console); False when it does not exist."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id)
                .values(state=PENDING, next_ms=now_ms, created_ms=now_ms)
            )
        return bool(result.rowcount)

    async def for_subject(self, subject: str) -> list[Delivery]:
        """Deliveries about one file or job."""
        query = select(deliveries).where(deliveries.c.subject == subject)
        async with self._engine.connect() as conn:
            return [_delivery(r._mapping) for r in await conn.execute(query)]

    async def recent(self, limit: int = 200) -> list[Delivery]:
        """Newest deliveries first."""
        query = select(deliveries).order_by(deliveries.c.created_ms.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_delivery(r._mapping) for r in await conn.execute(query)]


# Statements built once and run with parameters (executemany where there are many rows).
_CONFLICT: dict[str, Any] = {"index_elements": [deliveries.c.event, deliveries.c.subject]}
_INSERT_ONCE: dict[str, Any] = {
    "sqlite": sqlite_insert(deliveries).on_conflict_do_nothing(**_CONFLICT),
    "postgresql": postgresql_insert(deliveries).on_conflict_do_nothing(**_CONFLICT),
}
_INSERT_ONCE_RETURNING = _INSERT_ONCE["postgresql"].returning(deliveries.c.id)
_STORED = (
    update(files)
    .where(files.c.id.in_(bindparam("p_ids", expanding=True)))
    .where(files.c.state == FileState.CLOSED.value)
    .values(state=FileState.STORED.value)
)
_ANNOUNCED = (
    update(files)
    .where(files.c.id.in_(bindparam("p_ids", expanding=True)))
    .where(files.c.state == FileState.STORED.value)
    .values(state=FileState.ANNOUNCED.value)
)
_ATTEMPTED = (
    update(deliveries)
    .where(deliveries.c.id == bindparam("p_id"))
    .values(
        state=bindparam("p_state"),
        attempts=deliveries.c.attempts + 1,
        last_status=bindparam("p_status"),
        last_error=bindparam("p_error"),
        next_ms=bindparam("p_next_ms"),
        delivered_ms=func.coalesce(
            bindparam("p_delivered_ms", type_=BigInteger), deliveries.c.delivered_ms
        ),
    )
)


def insert_once(
    conn: Connection, queued: Sequence[NewDelivery], now_ms: int
) -> list[Delivery] | None:
    """Add the deliveries that do not exist yet (per event and subject), due at `now_ms`, in the
    transaction of `conn` (one statement); return those added, as `due` would read them.

    None when it cannot tell which were added: on SQLite, when some but not all rows of a
    batch already existed (only the count of added rows is known there; PostgreSQL returns
    their ids).
    """
    if not queued:
        return []
    rows = [_queued(d, now_ms) for d in queued]
    if conn.dialect.name == "postgresql":
        added = {r.id for r in conn.execute(_INSERT_ONCE_RETURNING, rows)}
        return [_fresh(row) for row in rows if row["id"] in added]
    count = conn.execute(_INSERT_ONCE[conn.dialect.name], rows).rowcount
    if count == len(rows):
        return [_fresh(row) for row in rows]
    return [] if count == 0 else None


def _enqueue(
    conn: Connection, queued: Sequence[NewDelivery], now_ms: int, files_stored: list[str]
) -> list[Delivery] | None:
    added = insert_once(conn, queued, now_ms)
    if files_stored:
        conn.execute(_STORED, {"p_ids": files_stored})
    return added


def _record_attempts(conn: Connection, rows: list[dict[str, Any]], done: list[str]) -> None:
    conn.execute(_ATTEMPTED, rows)
    if done:
        conn.execute(_ANNOUNCED, {"p_ids": done})


def _queued(delivery: NewDelivery, now_ms: int) -> dict[str, Any]:
    return {
        "id": new_id(),
        "app_id": delivery.app_id,
        "event": delivery.event,
        "subject": delivery.subject,
        "url": delivery.url,
        "payload": delivery.payload,
        "state": PENDING,
        "attempts": 0,
        "next_ms": now_ms,
        "last_error": "",
        "created_ms": now_ms,
    }


def _fresh(row: dict[str, Any]) -> Delivery:
    """A delivery just added, from the row that was inserted (never attempted yet)."""
    return _delivery({**row, "last_status": None, "delivered_ms": None})


def _attempted(attempt: Attempt) -> dict[str, Any]:
    return {
        "p_id": attempt.delivery_id,
        "p_state": attempt.state,
        "p_status": attempt.status,
        "p_error": attempt.error[:2000],
        "p_next_ms": attempt.next_ms,
        "p_delivered_ms": attempt.at_ms if attempt.state == DELIVERED else None,
    }


def _delivery(row: Any) -> Delivery:
    return Delivery(
        id=row["id"],
        app_id=row["app_id"],
        event=row["event"],
        subject=row["subject"],
        url=row["url"],
        payload=dict(row["payload"]),
        state=row["state"],
        attempts=row["attempts"],
        next_ms=row["next_ms"],
        created_ms=row["created_ms"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        delivered_ms=row["delivered_ms"],
    )
