"""The typed, frozen settings of a cdnrec process (product.md §2–§3)."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cdnrec.config.durations import Duration

FORMATS = ("m3u8", "flv", "mp4", "aac", "mp3")
DEFAULT_PATH_TEMPLATE = "{app_id}/{stream_id}/{date}/{stream_id}_{begin}_{end}.{ext}"


class Vendor(StrEnum):
    """A CDN vendor whose recording API cdnrec plays."""

    TENCENT = "Tencent"
    WS = "Ws"
    HUAWEI = "Huawei"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Frozen):
    """Where the process listens and keeps its data."""

    listen: str = "127.0.0.1:8080"
    public_url: str = "http://127.0.0.1:8080"
    data_dir: Path = Path("data")
    role: Literal["all", "api", "recorder"] = "all"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"listen must be HOST:PORT, got {value!r}")
        return value

    @property
    def host(self) -> str:
        """The host part of `listen`."""
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        """The port part of `listen`."""
        return int(self.listen.rpartition(":")[2])


class DatabaseSettings(_Frozen):
    """The SQL store; empty url means SQLite under data_dir."""

    url: str = ""


class LimitSettings(_Frozen):
    """Request limits of the API (per app)."""

    media_rps: int = Field(20, ge=1)
    stream_state_rps: int = Field(40, ge=1)
    timestamp_tolerance: Duration = 600.0
    max_stream_ids: int = Field(100, ge=1)
    max_task_duration: Duration = 86400.0
    shared: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"


class RecorderSettings(_Frozen):
    """The recording engine of this process."""

    capacity: int = Field(200, ge=0)
    path_template: str = DEFAULT_PATH_TEMPLATE
    lease: Duration = 15.0
    poll: Duration = 0.5
    pull_client: Literal["native", "ffmpeg"] = "native"
    """Who pulls rtmp:// and http:// FLV sources: cdnrec's own client (tags copied) or FFmpeg."""
    pump_threads: int = Field(2, ge=0)
    """Threads that read and write the native pulls of all recordings (0: a thread each)."""


class RetentionSettings(_Frozen):
    """Deleting files: after their retention, and (optionally) when the disk fills up."""

    poll: Duration = 60.0
    high_watermark: float = Field(0.0, ge=0, le=100)


class CallbackSettings(_Frozen):
    """How callbacks are sent (zego-api.md §5.5)."""

    timeout: Duration = 5.0
    schedule: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 32.0)
    horizon: Duration = 86400.0
    late_interval: Duration = 600.0
    extra_params: Literal["string", "object"] = "string"


class VendorSettings(_Frozen):
    """One vendor's CDN recording configuration of an app (product.md §3)."""

    driver: Literal["local"] = "local"
    sources: tuple[str, ...] = ()
    formats: tuple[str, ...] = ("mp4",)
    interval: Duration = 7200.0
    hls_segment: Duration = 10.0
    retention: Duration = 30 * 86400.0
    resume_window: Duration = 30.0
    storage: str = "local"
    wait_for_stream: bool | None = None

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        lowered = tuple(dict.fromkeys(f.lower() for f in value))
        unknown = [f for f in lowered if f not in FORMATS]
        if unknown:
            raise ValueError(f"unknown format(s) {unknown}; choose from {list(FORMATS)}")
        return lowered

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if not 1 <= value <= 7200:
            raise ValueError("interval must be between 1 s and 7200 s")
        return value

    @field_validator("sources")
    @classmethod
    def _sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if "{stream_id}" not in url:
                raise ValueError(f"source {url!r} must contain {{stream_id}}")
            if not re.match(r"^(rtmp|rtmps|http|https|srt)://", url):
                raise ValueError(f"source {url!r} must be rtmp://, http(s):// or srt://")
        return value


class S3Settings(_Frozen):
    """An S3-compatible bucket that vendor configurations can store files in."""

    type: Literal["s3"] = "s3"
    endpoint_url: str = ""
    bucket: str
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = ""
    secret_access_key_file: Path | None = None
    prefix: str = ""
    public_url: str = ""
    presign_ttl: Duration = 3600.0
    keep_local: bool = False

    def secret_key(self) -> str:
        """The secret access key, read from its file when given as one."""
        if self.secret_access_key_file is not None:
            return self.secret_access_key_file.read_text(encoding="utf-8").strip()
        return self.secret_access_key


_SECRET = re.compile(r"^[0-9A-Za-z]{16,128}$")


class AppSettings(_Frozen):
    """An app declared in the config file."""

    app_id: int = Field(ge=1, le=2**32 - 1)
    server_secret: str | None = None
    server_secret_file: Path | None = None
    callback_url: str | None = None
    callback_secret: str | None = None
    enabled: bool = True
    vendors: dict[Vendor, VendorSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_secret(self) -> AppSettings:
        if (self.server_secret is None) == (self.server_secret_file is None):
            raise ValueError(
                f"app {self.app_id}: give exactly one of server_secret, server_secret_file"
            )
        if self.server_secret is not None and not _SECRET.match(self.server_secret):
            raise ValueError(f"app {self.app_id}: server_secret must be 16-128 letters or digits")
        return self

    def secret(self) -> str:
        """The server secret, read from its file when given as one."""
        if self.server_secret is not None:
            return self.server_secret
        assert self.server_secret_file is not None
        return self.server_secret_file.read_text(encoding="utf-8").strip()


class Settings(_Frozen):
    """Everything one cdnrec process is configured with."""

    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    limits: LimitSettings = LimitSettings()
    recorder: RecorderSettings = RecorderSettings()
    callbacks: CallbackSettings = CallbackSettings()
    retention: RetentionSettings = RetentionSettings()
    storage: dict[str, S3Settings] = Field(default_factory=dict)
    apps: tuple[AppSettings, ...] = ()

    @model_validator(mode="after")
    def _known_storage(self) -> Settings:
        if "local" in self.storage:
            raise ValueError(
                "storage.local is the built-in local folder; name S3 targets otherwise"
            )
        for app in self.apps:
            for vendor, cfg in app.vendors.items():
                if cfg.storage != "local" and cfg.storage not in self.storage:
                    raise ValueError(
                        f"app {app.app_id} {vendor}: storage {cfg.storage!r} is not declared "
                        f"as [storage.{cfg.storage}]"
                    )
        return self

    @field_validator("apps")
    @classmethod
    def _unique_apps(cls, value: tuple[AppSettings, ...]) -> tuple[AppSettings, ...]:
        ids = [a.app_id for a in value]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"app_id declared twice: {dupes}")
        return value

    def database_url(self) -> str:
        """The SQLAlchemy URL of the store."""
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.server.data_dir / 'cdnrec.db').as_posix()}"

    def storage_root(self) -> Path:
        """The default local storage folder."""
        return self.server.data_dir / "files"
