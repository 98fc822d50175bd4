"""Sends queued callbacks: signed per attempt, 2xx is success, retried on ZEGO's schedule and beyond."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import structlog

from cdnrec.callbacks.signing import signed
from cdnrec.config import CallbackSettings
from cdnrec.store import Store
from cdnrec.store.batching import GroupCommit
from cdnrec.store.cache import AppCache
from cdnrec.store.deliveries import ABANDONED, DELIVERED, PENDING, Attempt
from cdnrec.store.models import Delivery
from cdnrec.store.revision import quiet, watched

log = structlog.get_logger("cdnrec.callbacks")

LOOKAHEAD = 5.0
"""How often the sender reads the outbox when nothing told it of new deliveries, in seconds. On
SQLite it reads only after another process committed (``revision.quiet``), when its next known
delivery falls due, and at least every ``LONGEST`` seconds."""

LONGEST = 60.0

KEEPALIVE = 1.5
"""How long an idle connection to a receiver is kept for reuse, in seconds: below the 2 s after
which gunicorn (and 5 s after which uvicorn) closes an idle one, so that a reused connection is
still open; a burst of callbacks reuses its connections well within that."""


class CallbackSender:
    """Delivers the outbox; a slow receiver only delays its own deliveries.

    Deliveries queued in this process are handed over as they are committed (`take`); others
    (retries, a restart's leftovers, those of other processes) are picked up from the outbox a
    page at a time. They are sent concurrently (at most `concurrency` at once); the outcomes of
    attempts that end together are recorded in one transaction.
    """

    def __init__(
        self,
        store: Store,
        apps: AppCache,
        settings: CallbackSettings,
        *,
        clock: Callable[[], float] = time.time,
        concurrency: int = 32,
        page: int = 200,
    ) -> None:
        self._store = store
        self._apps = apps
        self._settings = settings
        self._clock = clock
        self._page = page
        self._backlog = False
        self._running = False
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[str] = set()
        self._settled: set[str] = set()
        self._attempts: set[asyncio.Task[None]] = set()
        self._outcomes = GroupCommit(store.deliveries.attempted)
        self._concurrency = concurrency
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        """The HTTP client, made on first use (it binds to the running loop); connections to a
        receiver are kept alive and reused, at most `concurrency` at once."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._concurrency, keepalive_timeout=KEEPALIVE
                ),
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
                trust_env=True,  # HTTP(S)_PROXY and NO_PROXY apply, as they did with httpx
            )
        return self._http

    def nudge(self) -> None:
        """A delivery was queued: look now."""
        self._wake.set()

    def take(self, queued: list[Delivery] | None) -> None:
        """Deliveries this process just put in the outbox (committed): send them now, without
        reading them back. None (not known which were queued) looks in the outbox instead, as
        does a sender that is not running (their rows are sent when it runs).

        The outbox row stays the record: an attempt that does not end (a crash) is sent again
        from it.
        """
        if queued is None or not self._running:
            self.nudge()
            return
        for delivery in queued:
            self._start(delivery)

    async def run(self) -> None:
        """Deliver until cancelled."""
        self._running = True
        try:
            await self._run()
        finally:
            self._running = False

    async def _run(self) -> None:
        revision = self._store.revision
        while True:
            self._wake.clear()
            seen = None
            since = watched(revision)
            try:
                seen = await revision()
                wait = await self.send_due()
            except Exception:
                log.exception("callbacks.loop_failed")
                seen, wait = None, 1.0
            await quiet(
                self._wake, revision, seen, every=min(wait, LOOKAHEAD), longest=wait, since=since
            )

    async def send_due(self) -> float:
        """Start an attempt for every due delivery not already in flight; return how long until
        the next one falls due (at most `LONGEST` seconds; an attempt that is rescheduled wakes
        the loop)."""
        now_ms = int(self._clock() * 1000)
        self._settled.clear()
        pending = await self._store.deliveries.due(now_ms + int(LONGEST * 1000), self._page)
        due = [d for d in pending if d.next_ms <= now_ms]
        self._backlog = len(due) >= self._page
        for delivery in due:
            # one whose attempt ended while this query ran may be stale here: it waits a round
            if delivery.id not in self._settled:
                self._start(delivery)
        later = [d.next_ms for d in pending if d.next_ms > now_ms]
        return max(0.05, later[0] / 1000 - self._clock()) if later else LONGEST

    def _start(self, delivery: Delivery) -> None:
        """Attempt a delivery unless an attempt at it is in flight."""
        if delivery.id in self._inflight:
            return
        self._inflight.add(delivery.id)
        attempt = asyncio.create_task(self._attempt(delivery))
        self._attempts.add(attempt)
        attempt.add_done_callback(self._attempts.discard)

    async def _attempt(self, delivery: Delivery) -> None:
        """Send once, record the outcome (with others that end meanwhile), then let go."""
        rescheduled = False
        try:
            async with self._slots:
                attempt = await self._deliver(delivery)
            await self._outcomes.submit(attempt)
            rescheduled = attempt.state == PENDING
            await self._after(delivery, attempt)
        except Exception:
            log.exception("callbacks.attempt_crashed", delivery=delivery.id)
        finally:
            self._settled.add(delivery.id)
            self._inflight.discard(delivery.id)
            if rescheduled or self._backlog:
                self._wake.set()

    async def _deliver(self, delivery: Delivery) -> Attempt:
        app = await self._apps.get(delivery.app_id)
        if app is None:
            return self._outcome(delivery, None, "app no longer exists", final=True)
        body = signed(delivery.payload, app.signing_secret(), self._clock())
        status: int | None = None
        try:
            async with self._session().post(
                delivery.url, json=body, allow_redirects=False
            ) as response:
                status = response.status
                await response.read()
            error = "" if 200 <= status < 300 else f"HTTP {status}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return self._outcome(delivery, status, error, final=False)

    def _outcome(
        self, delivery: Delivery, status: int | None, error: str, *, final: bool
    ) -> Attempt:
        now = self._clock()
        now_ms = int(now * 1000)
        if not error:
            state, next_ms = DELIVERED, now_ms
        elif final:
            state, next_ms = ABANDONED, now_ms
        else:
            state, next_ms = self._retry(delivery, delivery.attempts + 1, now)
        return Attempt(
            delivery.id, delivery.event, delivery.subject, state, status, error, next_ms, now_ms
        )

    async def _after(self, delivery: Delivery, attempt: Attempt) -> None:
        """Log a recorded attempt; a finished `compose` callback announces its job's file."""
        log.info(
            "callbacks.attempt",
            delivery=delivery.id,
            kind=delivery.event,
            attempt=delivery.attempts + 1,
            state=attempt.state,
            error=attempt.error or None,
        )
        if attempt.state != PENDING and delivery.event == "compose":
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
        await self._outcomes.idle()
        if self._http is not None:
            await self._http.close()
