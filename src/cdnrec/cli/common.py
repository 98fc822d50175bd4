"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from cdnrec.config import ConfigError, Settings, load_settings
from cdnrec.memory import limit_arenas
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


def run_service(main: Coroutine[Any, Any, None]) -> None:
    """Run the service's main coroutine on uvloop when it is installed (uvicorn[standard] brings
    it), as `uvicorn.run` would; plain asyncio otherwise. Ctrl-C ends it quietly: uvicorn shuts
    the service down first, then raises the interrupt again, which is no error. Its threads
    share two malloc arenas (``memory.py``)."""
    limit_arenas()
    try:
        import uvloop
    except ImportError:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(main)
        return
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        runner.run(main)


def with_store(settings: Settings, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store, run `work` on it, close it."""

    async def go() -> T:
        store = await Store.open(settings.database_url())
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())
