"""Apps and their vendor configurations in the store."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from cdnrec.config import Vendor, VendorSettings
from cdnrec.store.database import Database, read
from cdnrec.store.models import App
from cdnrec.store.tables import apps, vendor_configs


class AppRepo:
    """Reads and writes apps."""

    def __init__(self, engine: Database) -> None:
        self._engine = engine

    async def get(self, app_id: int) -> App | None:
        """The app with this id, or None (one read)."""
        return await read(self._engine, _get, app_id)

    async def list(self) -> list[App]:
        """Every app, by id."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(apps).order_by(apps.c.app_id))).all()
            configs = (await conn.execute(select(vendor_configs))).all()
        by_app: dict[int, list[Any]] = {}
        for cfg in configs:
            by_app.setdefault(cfg.app_id, []).append(cfg)
        return [_app(r._mapping, by_app.get(r.app_id, [])) for r in rows]

    async def put(self, app: App, now_ms: int) -> None:
        """Create or replace an app and all its vendor configurations."""
        values = {
            "server_secret": app.server_secret,
            "callback_url": app.callback_url,
            "callback_secret": app.callback_secret,
            "enabled": app.enabled,
            "source": app.source,
            "updated_ms": now_ms,
        }
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(apps).where(apps.c.app_id == app.app_id).values(**values)
            )
            if result.rowcount == 0:
                await conn.execute(
                    insert(apps).values(app_id=app.app_id, created_ms=now_ms, **values)
                )
            await conn.execute(delete(vendor_configs).where(vendor_configs.c.app_id == app.app_id))
            for vendor, cfg in app.vendors.items():
                await conn.execute(
                    insert(vendor_configs).values(
                        app_id=app.app_id, vendor=vendor.value, config=cfg.model_dump(mode="json")
                    )
                )

    async def remove(self, app_id: int) -> bool:
        """Delete an app; False when it did not exist."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(vendor_configs).where(vendor_configs.c.app_id == app_id))
            result = await conn.execute(delete(apps).where(apps.c.app_id == app_id))
            return bool(result.rowcount)


_APP = select(apps).where(apps.c.app_id == bindparam("p_app"))
_CONFIGS = select(vendor_configs).where(vendor_configs.c.app_id == bindparam("p_app"))


def _get(conn: Connection, app_id: int) -> App | None:
    params = {"p_app": app_id}
    row = conn.execute(_APP, params).first()
    if row is None:
        return None
    return _app(row._mapping, list(conn.execute(_CONFIGS, params)))


def _app(row: Any, configs: list[Any]) -> App:
    vendors = {Vendor(c.vendor): VendorSettings.model_validate(c.config) for c in configs}
    return App(
        app_id=row["app_id"],
        server_secret=row["server_secret"],
        callback_url=row["callback_url"],
        callback_secret=row["callback_secret"],
        enabled=row["enabled"],
        vendors=vendors,
        source=row["source"],
    )
