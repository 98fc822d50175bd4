"""The migrations build exactly the schema the code declares (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cdnrec.store import Store
from cdnrec.store.tables import metadata


async def test_the_migrated_schema_equals_the_declared_tables(store: Store) -> None:
    def differences(sync_conn: Any) -> list[Any]:
        return list(compare_metadata(MigrationContext.configure(sync_conn), metadata))

    async with store.engine.connect() as conn:
        diff = await conn.run_sync(differences)
    assert diff == []
