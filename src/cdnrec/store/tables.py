"""The SQL schema of the store, as SQLAlchemy Core tables (times are UTC epoch milliseconds)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

apps = Table(
    "apps",
    metadata,
    Column("app_id", BigInteger, primary_key=True, autoincrement=False),
    Column("server_secret", String(128), nullable=False),
    Column("callback_url", Text),
    Column("callback_secret", String(128)),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("source", String(16), nullable=False, default="store"),
    Column("created_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
)

vendor_configs = Table(
    "vendor_configs",
    metadata,
    Column("app_id", BigInteger, primary_key=True, autoincrement=False),
    Column("vendor", String(16), primary_key=True),
    Column("config", JSON, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("app_id", BigInteger, nullable=False),
    Column("vendor", String(16), nullable=False),
    Column("stream_id", String(256), nullable=False),
    Column("refs", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("phase", String(32), nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
    Column("created_ms", BigInteger, nullable=False),
    Column("deadline_ms", BigInteger, nullable=False),
    Column("stop_ms", BigInteger),
    Column("ended_ms", BigInteger),
    Column("owner", String(64)),
    Column("lease_ms", BigInteger),
    Column("attempts", Integer, nullable=False, default=0),
    Index(
        "uq_tasks_active_stream",
        "app_id",
        "vendor",
        "stream_id",
        unique=True,
        sqlite_where=text("active"),
        postgresql_where=text("active"),
    ),
    Index("ix_tasks_state", "state"),
)

files = Table(
    "files",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("public_id", String(20), nullable=False, unique=True),
    Column("handle", String(36), nullable=False, unique=True),
    Column("task_id", String(32), nullable=False),
    Column("app_id", BigInteger, nullable=False),
    Column("vendor", String(16), nullable=False),
    Column("stream_id", String(256), nullable=False),
    Column("format", String(8), nullable=False),
    Column("state", String(16), nullable=False),
    Column("partial_path", Text),
    Column("key", Text),
    Column("storage", String(64), nullable=False, default="local"),
    Column("begin_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger),
    Column("duration", Float),
    Column("size", BigInteger),
    Column("codecs", JSON),
    Column("sha256", String(64)),
    Column("gaps", JSON),
    Column("repaired", Boolean, nullable=False, default=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expire_ms", BigInteger),
    Index("ix_files_app_stream", "app_id", "vendor", "stream_id"),
    Index("ix_files_state", "state"),
    Index("ix_files_task", "task_id"),
    Index("ix_files_key", "key"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("app_id", BigInteger, nullable=False),
    Column("event", String(16), nullable=False),
    Column("subject", String(32), nullable=False),
    Column("url", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_ms", BigInteger, nullable=False),
    Column("last_status", Integer),
    Column("last_error", Text, nullable=False, default=""),
    Column("created_ms", BigInteger, nullable=False),
    Column("delivered_ms", BigInteger),
    Index("uq_deliveries_subject", "event", "subject", unique=True),
    Index("ix_deliveries_due", "state", "next_ms"),
)
