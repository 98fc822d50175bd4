"""The composition root: settings -> store, limits, control, API (and later engine, callbacks)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.routing import Route

from cdnrec import memory, native
from cdnrec.api.files import files_endpoint
from cdnrec.api.health import healthz, metrics_for, readyz_for
from cdnrec.api.metrics import ApiMetrics
from cdnrec.api.zego.actions import Services
from cdnrec.api.zego.endpoint import ZegoEndpoint
from cdnrec.api.zego.gateway import Gateway
from cdnrec.api.zego.media import SequenceGuard
from cdnrec.auth import (
    MemoryNonceGuard,
    MemoryRateLimiter,
    NonceGuard,
    RateLimiter,
    RedisNonceGuard,
    RedisRateLimiter,
)
from cdnrec.callbacks import CallbackSender, Publisher
from cdnrec.catalog import Catalog, RetentionSweeper
from cdnrec.config import Settings
from cdnrec.control import Control, StreamProbe
from cdnrec.engine.supervisor import Supervisor
from cdnrec.live import SourceProbe
from cdnrec.merging import JobRunner
from cdnrec.merging.jobs import MergeJobs
from cdnrec.storage import Storages
from cdnrec.store import App, FileState, Store
from cdnrec.store.cache import AppCache
from cdnrec.store.notify import JOBS, TASKS, listen

log = structlog.get_logger("cdnrec")


@dataclass
class Service:
    """Everything one cdnrec process runs, wired together."""

    settings: Settings
    store: Store
    apps: AppCache
    control: Control
    registry: CollectorRegistry
    endpoint: ZegoEndpoint
    storages: Storages
    publisher: Publisher
    sender: CallbackSender
    supervisor: Supervisor | None
    catalog: Catalog
    sweeper: RetentionSweeper
    runner: JobRunner
    closers: list[Callable[[], Any]] = field(default_factory=list)
    workers: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Start the background work of this process's role (a recorder says it is alive
        before the API answers, so the first Start counts its capacity)."""
        if self.supervisor is None:
            return
        await self.supervisor.heartbeat()
        self.workers += [
            asyncio.create_task(self.supervisor.run(), name="supervisor"),
            asyncio.create_task(
                listen(self.store.engine, {TASKS: self.supervisor.nudge, JOBS: self.runner.nudge}),
                name="changes",
            ),
            asyncio.create_task(self.publisher.run(), name="publisher"),
            asyncio.create_task(self.sender.run(), name="callbacks"),
            asyncio.create_task(self.sweeper.run(self.settings.retention.poll), name="retention"),
            asyncio.create_task(self.runner.run(), name="merge-jobs"),
        ]

    async def close(self) -> None:
        """Close recordings (their files are announced on the next start if not now), then stop."""
        if self.supervisor is not None:
            await self.supervisor.close()
            with contextlib.suppress(Exception):
                for file in await self.store.files.in_state(FileState.CLOSED):
                    await self.publisher.publish(file)
        for worker in self.workers:
            worker.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)
        await self.publisher.close()
        await self.sender.close()
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
    probe = probe or SourceProbe()
    registry = CollectorRegistry()
    apps = AppCache(store.apps, revision=store.revision)
    gateway = Gateway(apps, nonces, tolerance=settings.limits.timestamp_tolerance, clock=clock)
    storages = Storages(settings)
    catalog = Catalog(store, storages, clock)
    sender = CallbackSender(store, apps, settings.callbacks, clock=clock)
    owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    runner = JobRunner(store, storages, apps, owner=owner, on_queued=sender.nudge, clock=clock)
    jobs = MergeJobs(store, on_submitted=runner.nudge)
    publisher = Publisher(
        store, storages, apps, settings.callbacks, on_queued=sender.take, clock=clock
    )
    supervisor = None
    if settings.server.role in ("all", "recorder"):
        supervisor = Supervisor(
            store,
            storages.local.root,
            settings.recorder,
            owner=owner,
            files_to=publisher,
            clock=clock,
        )
    control = Control(
        store,
        probe,
        max_task_duration=settings.limits.max_task_duration,
        recorder_seen_within=settings.recorder.lease,
        clock=clock,
        on_change=supervisor.nudge if supervisor is not None else lambda: None,
    )
    services = Services(control, settings.limits, catalog, probe, SequenceGuard(), jobs)
    endpoint = ZegoEndpoint(gateway, limiter, services, ApiMetrics(registry))
    service = Service(
        settings,
        store,
        apps,
        control,
        registry,
        endpoint,
        storages,
        publisher,
        sender,
        supervisor,
        catalog,
        RetentionSweeper(
            store,
            catalog,
            clock,
            high_watermark=settings.retention.high_watermark,
            local_root=storages.local.root,
        ),
        runner,
    )
    if redis is not None:
        service.closers.append(redis.aclose)
    return service


def create_asgi(service: Service) -> Starlette:
    """The ASGI application of a built service."""

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await service.start()
        log.info(
            "cdnrec.started",
            listen=service.settings.server.listen,
            role=service.settings.server.role,
            engine="compiled" if native.compiled_modules() else "interpreted",
            malloc_arenas=memory.arena_limit() or "default",
        )
        if stale := native.stale_modules():
            log.warning("cdnrec.stale_compiled_modules", modules=stale, fix="make install")
        yield
        await service.close()

    routes = [
        Route("/", service.endpoint.handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz_for(service.store)),
        Route("/metrics", metrics_for(service.registry)),
        Route(
            "/files/{app_id}/{expires}/{signature}/{key:path}",
            files_endpoint(service.storages, service.store, service.apps),
        ),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
