"""The composition root: settings -> store, limits, control, API (and later engine, callbacks)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.routing import Route

from cdnrec.api.health import healthz, metrics_for, readyz_for
from cdnrec.api.metrics import ApiMetrics
from cdnrec.api.zego.actions import Services
from cdnrec.api.zego.endpoint import ZegoEndpoint
from cdnrec.api.zego.gateway import Gateway
from cdnrec.auth import (
    MemoryNonceGuard,
    MemoryRateLimiter,
    NonceGuard,
    RateLimiter,
    RedisNonceGuard,
    RedisRateLimiter,
)
from cdnrec.config import Settings
from cdnrec.control import Control, StreamProbe
from cdnrec.live import SourceProbe
from cdnrec.store import App, Store
from cdnrec.store.cache import AppCache

log = structlog.get_logger("cdnrec")


@dataclass
class Service:
    """Everything one cdnrec process runs, wired together."""

    settings: Settings
    store: Store
    control: Control
    registry: CollectorRegistry
    endpoint: ZegoEndpoint
    closers: list[Callable[[], Any]] = field(default_factory=list)

    async def close(self) -> None:
        """Stop what runs and release connections."""
        for closer in reversed(self.closers):
            result = closer()
            if hasattr(result, "__await__"):
                await result
        await self.store.close()


async def load_config_apps(store: Store, settings: Settings, now_ms: int) -> None:
    """Put the apps of the config file into the store; drop config apps no longer declared."""
    declared = {a.app_id for a in settings.apps}
    for app in settings.apps:
        await store.apps.put(
            App(
                app_id=app.app_id,
                server_secret=app.secret(),
                callback_url=app.callback_url,
                callback_secret=app.callback_secret,
                enabled=app.enabled,
                vendors=dict(app.vendors),
                source="config",
            ),
            now_ms,
        )
    for existing in await store.apps.list():
        if existing.source == "config" and existing.app_id not in declared:
            await store.apps.remove(existing.app_id)


def _limits(
    settings: Settings, clock: Callable[[], float]
) -> tuple[RateLimiter, NonceGuard, Redis | None]:
    if settings.limits.shared == "redis":
        redis = Redis.from_url(settings.limits.redis_url)
        return RedisRateLimiter(redis, clock), RedisNonceGuard(redis), redis
    return MemoryRateLimiter(clock), MemoryNonceGuard(), None


async def build_service(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    probe: StreamProbe | None = None,
) -> Service:
    """Open the store and build every part of the service from the settings."""
    store = await Store.open(settings.database_url())
    await load_config_apps(store, settings, int(clock() * 1000))
    limiter, nonces, redis = _limits(settings, clock)
    control = Control(
        store,
        probe or SourceProbe(),
        max_task_duration=settings.limits.max_task_duration,
        clock=clock,
    )
    registry = CollectorRegistry()
    gateway = Gateway(
        AppCache(store.apps), nonces, tolerance=settings.limits.timestamp_tolerance, clock=clock
    )
    endpoint = ZegoEndpoint(
        gateway, limiter, Services(control, settings.limits), ApiMetrics(registry)
    )
    service = Service(settings, store, control, registry, endpoint)
    if redis is not None:
        service.closers.append(redis.aclose)
    return service


def create_asgi(service: Service) -> Starlette:
    """The ASGI application of a built service."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        log.info("cdnrec.started", listen=service.settings.server.listen)
        yield
        await service.close()

    routes = [
        Route("/", service.endpoint.handle, methods=["GET", "POST"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz_for(service.store)),
        Route("/metrics", metrics_for(service.registry)),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
