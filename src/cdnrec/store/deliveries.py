"""The callback outbox: deliveries stored until sent, retried on a schedule, kept for the console."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cdnrec.store.ids import new_id
from cdnrec.store.models import Delivery, FileState
from cdnrec.store.tables import deliveries, files

PENDING = "pending"
DELIVERED = "delivered"
ABANDONED = "abandoned"


class DeliveryRepo:
    """Reads and writes deliveries."""

    def __init__(self, engine: AsyncEngine) -> None:
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
        values = {
            "id": new_id(),
            "app_id": app_id,
            "event": event,
            "subject": subject,
            "url": url,
            "payload": payload,
            "state": PENDING,
            "attempts": 0,
            "next_ms": now_ms,
            "last_error": "",
            "created_ms": now_ms,
        }
        async with self._engine.begin() as conn:
            added = await self._insert_once(conn, values)
            if file_stored is not None:
                await conn.execute(
                    update(files)
                    .where(files.c.id == file_stored, files.c.state == FileState.CLOSED.value)
                    .values(state=FileState.STORED.value)
                )
        return added

    @staticmethod
    async def _insert_once(conn: AsyncConnection, values: dict[str, Any]) -> bool:
        try:
            async with conn.begin_nested():
                await conn.execute(insert(deliveries).values(**values))
        except IntegrityError:
            return False
        return True

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

    async def next_due_ms(self) -> int | None:
        """When the earliest pending delivery is due."""
        query = (
            select(deliveries.c.next_ms)
            .where(deliveries.c.state == PENDING)
            .order_by(deliveries.c.next_ms)
            .limit(1)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else int(row.next_ms)

    async def attempted(
        self,
        delivery_id: str,
        *,
        state: str,
        status: int | None,
        error: str,
        next_ms: int,
        now_ms: int,
    ) -> None:
        """Record the outcome of one attempt."""
        values: dict[str, Any] = {
            "state": state,
            "attempts": deliveries.c.attempts + 1,
            "last_status": status,
            "last_error": error[:2000],
            "next_ms": next_ms,
        }
        if state == DELIVERED:
            values["delivered_ms"] = now_ms
        async with self._engine.begin() as conn:
            await conn.execute(
                update(deliveries).where(deliveries.c.id == delivery_id).values(**values)
            )

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
