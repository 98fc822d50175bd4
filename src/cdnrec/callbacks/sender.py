"""Sends queued callbacks: signed per attempt, 2xx is success, retried on ZEGO's schedule and beyond."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import httpx
import structlog

from cdnrec.callbacks.signing import signed
from cdnrec.config import CallbackSettings
from cdnrec.store import Store
from cdnrec.store.cache import AppCache
from cdnrec.store.deliveries import ABANDONED, DELIVERED, PENDING
from cdnrec.store.models import Delivery

log = structlog.get_logger("cdnrec.callbacks")


class CallbackSender:
    """Delivers the outbox; a slow receiver only delays its own deliveries."""

    def __init__(
        self,
        store: Store,
        apps: AppCache,
        settings: CallbackSettings,
        *,
        clock: Callable[[], float] = time.time,
        concurrency: int = 32,
    ) -> None:
        self._store = store
        self._apps = apps
        self._settings = settings
        self._clock = clock
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[str] = set()
        self._attempts: set[asyncio.Task[None]] = set()
        self._http = httpx.AsyncClient(timeout=settings.timeout, follow_redirects=False)

    def nudge(self) -> None:
        """A delivery was queued: look now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        while True:
            self._wake.clear()
            try:
                await self.send_due()
                wait = await self._until_next_due()
            except Exception:
                log.exception("callbacks.loop_failed")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _until_next_due(self) -> float:
        next_ms = await self._store.deliveries.next_due_ms()
        if next_ms is None:
            return 5.0
        return min(5.0, max(0.05, next_ms / 1000 - self._clock()))

    async def send_due(self) -> None:
        """Start an attempt for every due delivery not already in flight."""
        due = await self._store.deliveries.due(int(self._clock() * 1000), limit=200)
        for delivery in due:
            if delivery.id not in self._inflight:
                self._inflight.add(delivery.id)
                attempt = asyncio.create_task(self._attempt(delivery))
                self._attempts.add(attempt)
                attempt.add_done_callback(self._attempts.discard)

    async def _attempt(self, delivery: Delivery) -> None:
        try:
            async with self._slots:
                await self._deliver(delivery)
        except Exception:
            log.exception("callbacks.attempt_crashed", delivery=delivery.id)
        finally:
            self._inflight.discard(delivery.id)
            self._wake.set()

    async def _deliver(self, delivery: Delivery) -> None:
        app = await self._apps.get(delivery.app_id)
        if app is None:
            await self._outcome(delivery, None, "app no longer exists", final=True)
            return
        body = signed(delivery.payload, app.signing_secret(), self._clock())
        status: int | None = None
        try:
            response = await self._http.post(delivery.url, json=body)
            status = response.status_code
            error = "" if 200 <= status < 300 else f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        await self._outcome(delivery, status, error, final=False)

    async def _outcome(
        self, delivery: Delivery, status: int | None, error: str, *, final: bool
    ) -> None:
        now = self._clock()
        now_ms = int(now * 1000)
        attempts = delivery.attempts + 1
        if not error:
            state, next_ms = DELIVERED, now_ms
        elif final:
            state, next_ms = ABANDONED, now_ms
        else:
            state, next_ms = self._retry(delivery, attempts, now)
        await self._store.deliveries.attempted(
            delivery.id, state=state, status=status, error=error, next_ms=next_ms, now_ms=now_ms
        )
        log.info(
            "callbacks.attempt",
            delivery=delivery.id,
            kind=delivery.event,
            attempt=attempts,
            state=state,
            error=error or None,
        )
        if state != PENDING and delivery.event == "record":
            await self._store.files.announced(delivery.subject)
        elif state != PENDING and delivery.event == "compose":
            await self._store.jobs.announced(delivery.subject)

    def _retry(self, delivery: Delivery, attempts: int, now: float) -> tuple[str, int]:
        schedule = self._settings.schedule
        if attempts <= len(schedule):
            return PENDING, int((now + schedule[attempts - 1]) * 1000)
        if now - delivery.created_ms / 1000 < self._settings.horizon:
            return PENDING, int((now + self._settings.late_interval) * 1000)
        return ABANDONED, int(now * 1000)

    async def close(self) -> None:
        """Finish the attempts in flight (a few seconds at most), then close the HTTP client."""
        if self._attempts:
            await asyncio.wait(self._attempts, timeout=self._settings.timeout + 1)
        for attempt in list(self._attempts):
            attempt.cancel()
        await asyncio.gather(*self._attempts, return_exceptions=True)
        await self._http.aclose()
