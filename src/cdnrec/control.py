"""The use cases behind the API: start and stop recordings of streams (product.md §4)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cdnrec.admission import FULL, Places
from cdnrec.config import Vendor, VendorSettings
from cdnrec.store import Store
from cdnrec.store.ids import new_id
from cdnrec.store.models import App, RecordedFile, Task, TaskState

WAITING_VENDORS = frozenset({Vendor.TENCENT})


class ControlError(Exception):
    """A request that cannot be carried out for the app as configured."""


class RecordingDisabled(ControlError):
    """The app has recording switched off."""


class VendorNotConfigured(ControlError):
    """The app has no configuration for the requested vendor."""


class ConfigUnworkable(ControlError):
    """The vendor configuration cannot record (no source, no format)."""


class StreamProbe(Protocol):
    """Asks the sources whether a stream is live right now."""

    async def is_live(self, sources: tuple[str, ...], stream_id: str) -> bool:
        """True when one of the sources serves the stream now."""
        ...


@dataclass(frozen=True)
class StartOutcome:
    """What happened to one stream of a start request."""

    stream_id: str
    task: Task | None
    created: bool = False
    refused: str = ""
    full: bool = False
    """Refused because every recorder is full (admission control), not because of the stream."""


@dataclass(frozen=True)
class StopOutcome:
    """What happened to one stream of a stop request."""

    stream_id: str
    tasks: list[Task] = field(default_factory=list)


def waits_for_stream(vendor: Vendor, config: VendorSettings) -> bool:
    """Whether a task of this vendor configuration waits for a stream that is not live."""
    if config.wait_for_stream is not None:
        return config.wait_for_stream
    return vendor in WAITING_VENDORS


def recording_config(app: App, vendor: Vendor) -> VendorSettings:
    """The vendor configuration a request may record with, or the reason it may not."""
    if not app.enabled:
        raise RecordingDisabled(f"recording is disabled for app {app.app_id}")
    config = app.vendors.get(vendor)
    if config is None:
        raise VendorNotConfigured(f"app {app.app_id} has no CDN recording configured for {vendor}")
    if not config.sources:
        raise ConfigUnworkable(f"the {vendor} configuration of app {app.app_id} has no source")
    if not config.formats:
        raise ConfigUnworkable(f"the {vendor} configuration of app {app.app_id} has no format")
    return config


class Control:
    """Creates and stops recording tasks in the store; recorders pick them up from there."""

    def __init__(
        self,
        store: Store,
        probe: StreamProbe,
        *,
        max_task_duration: float,
        recorder_seen_within: float = 15.0,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._on_change = on_change
        self._places = Places(store, seen_within=recorder_seen_within, clock=clock)
        self._store = store
        self._probe = probe
        self._max_duration = max_task_duration
        self._clock = clock

    def now(self) -> float:
        """The current time in Unix seconds, as this service sees it."""
        return self._clock()

    def latest_deadline(self) -> float:
        """The latest end any task started now may have."""
        return self._clock() + self._max_duration

    async def start(
        self,
        app: App,
        vendor: Vendor,
        stream_ids: list[str],
        *,
        deadline: float | None,
        refs_for: Callable[[VendorSettings], dict[str, Any]],
    ) -> list[StartOutcome]:
        """Start (or return the running) task of each stream."""
        config = recording_config(app, vendor)
        end = min(deadline or self.latest_deadline(), self.latest_deadline())
        live: list[bool] = [True] * len(stream_ids)
        if not waits_for_stream(vendor, config):
            live = await self._live_or_recording(app, vendor, config, stream_ids)
        reservation = await self._places.admit(
            app.app_id, vendor, [s for s, ok in zip(stream_ids, live, strict=True) if ok]
        )
        outcomes: list[StartOutcome] = []
        try:
            for stream_id, is_live in zip(stream_ids, live, strict=True):
                outcomes.append(
                    await self._start_one(app, vendor, config, stream_id, refs_for(config), end)
                    if is_live and stream_id in reservation.admitted
                    else _refused(stream_id, is_live)
                )
        finally:
            self._places.settle(reservation, sum(o.created for o in outcomes))
        self._on_change()
        return outcomes

    async def _start_one(
        self,
        app: App,
        vendor: Vendor,
        config: VendorSettings,
        stream_id: str,
        refs: dict[str, Any],
        end: float,
    ) -> StartOutcome:
        """Create the task of one admitted stream (or find the one it has)."""
        task = Task(
            id=new_id(),
            app_id=app.app_id,
            vendor=vendor,
            stream_id=stream_id,
            refs=refs,
            config=config.model_copy(update={"wait_for_stream": waits_for_stream(vendor, config)}),
            state=TaskState.PENDING,
            created_ms=int(self._clock() * 1000),
            deadline_ms=int(end * 1000),
        )
        stored, created = await self._store.tasks.start(task)
        return StartOutcome(stream_id, stored, created)

    async def _live_or_recording(
        self, app: App, vendor: Vendor, config: VendorSettings, stream_ids: list[str]
    ) -> list[bool]:
        """Whether each stream may start: it is recorded already (Start is idempotent) or live."""
        recording = [
            await self._store.tasks.active_for(app.app_id, vendor, s) is not None
            for s in stream_ids
        ]
        probed = iter(
            await asyncio.gather(
                *(
                    self._probe.is_live(config.sources, s)
                    for s, busy in zip(stream_ids, recording, strict=True)
                    if not busy
                )
            )
        )
        return [busy or next(probed) for busy in recording]

    async def stop(self, app: App, vendor: Vendor, stream_ids: list[str]) -> list[StopOutcome]:
        """Ask the recorders of every active task of each stream to close and announce."""
        if vendor not in app.vendors:
            raise VendorNotConfigured(
                f"app {app.app_id} has no CDN recording configured for {vendor}"
            )
        now_ms = int(self._clock() * 1000)
        outcomes = [
            StopOutcome(s, await self._store.tasks.request_stop(app.app_id, vendor, s, now_ms))
            for s in stream_ids
        ]
        self._on_change()
        return outcomes

    async def tasks_of(
        self, app: App, vendor: Vendor, stream_id: str, limit: int = 20
    ) -> list[tuple[Task, list[RecordedFile]]]:
        """The latest tasks of a stream, newest first, each with its files."""
        found = await self._store.tasks.of_stream(app.app_id, vendor, stream_id, limit)
        return [(task, await self._store.files.for_task(task.id)) for task in found]


def _refused(stream_id: str, live: bool) -> StartOutcome:
    """A stream Start does not record: not live, or no recorder has room for it."""
    if not live:
        return StartOutcome(stream_id, None, refused="stream is not live")
    return StartOutcome(stream_id, None, refused=FULL, full=True)
