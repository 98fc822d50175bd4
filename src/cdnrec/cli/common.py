"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from cdnrec.config import ConfigError, Settings, load_settings
from cdnrec.store import Store

T = TypeVar("T")

CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="CDNREC_CONFIG",
    help="TOML config file (env CDNREC_CONFIG).",
)


def settings_from(config_path: Path | None) -> Settings:
    """Load settings or exit with the reason."""
    try:
        return load_settings(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store, run `work` on it, close it."""

    async def go() -> T:
        store = await Store.open(settings.database_url())
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())
