"""What the store holds, as plain frozen records (our words, not ZEGO's)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cdnrec.config import Vendor, VendorSettings


class TaskState(StrEnum):
    """Life of a recording task."""

    PENDING = "pending"
    RUNNING = "running"
    STOPPING = "stopping"
    ENDED = "ended"
    FAILED = "failed"


ACTIVE_STATES = frozenset({TaskState.PENDING, TaskState.RUNNING})


class FileState(StrEnum):
    """Life of a recorded file: written, closed on disk, in its storage target, announced."""

    WRITING = "writing"
    CLOSED = "closed"
    STORED = "stored"
    ANNOUNCED = "announced"
    DELETED = "deleted"


@dataclass(frozen=True)
class App:
    """An app that may call the API, with its recording configuration per vendor."""

    app_id: int
    server_secret: str
    callback_url: str | None = None
    callback_secret: str | None = None
    enabled: bool = True
    vendors: dict[Vendor, VendorSettings] = field(default_factory=dict)
    source: str = "store"

    def signing_secret(self) -> str:
        """The secret that signs this app's callbacks."""
        return self.callback_secret or self.server_secret


@dataclass(frozen=True)
class Task:
    """One recording of one stream for one vendor configuration."""

    id: str
    app_id: int
    vendor: Vendor
    stream_id: str
    refs: dict[str, Any]
    config: VendorSettings
    state: TaskState
    created_ms: int
    deadline_ms: int
    phase: str = ""
    detail: str = ""
    stop_ms: int | None = None
    ended_ms: int | None = None
    owner: str | None = None
    lease_ms: int | None = None
    attempts: int = 0

    @property
    def active(self) -> bool:
        """Whether a Start for this stream should return this task."""
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class RecordedFile:
    """One file that a task recorded (or a merge produced)."""

    id: str
    public_id: str
    handle: str
    task_id: str
    app_id: int
    vendor: Vendor
    stream_id: str
    format: str
    state: FileState
    begin_ms: int
    created_ms: int
    kind: str = "recording"
    partial_path: str | None = None
    key: str | None = None
    name: str | None = None
    storage: str = "local"
    end_ms: int | None = None
    duration: float | None = None
    size: int | None = None
    codecs: tuple[str, ...] = ()
    sha256: str | None = None
    gaps: tuple[tuple[float, float], ...] = ()
    repaired: bool = False
    expire_ms: int | None = None


@dataclass(frozen=True)
class Delivery:
    """A callback to send, kept until it is delivered or given up (the outbox)."""

    id: str
    app_id: int
    event: str
    subject: str
    url: str
    payload: dict[str, Any]
    state: str
    attempts: int
    next_ms: int
    created_ms: int
    last_status: int | None = None
    last_error: str = ""
    delivered_ms: int | None = None
