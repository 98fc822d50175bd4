"""Running one cdnrec process under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from types import FrameType
from typing import TextIO

import structlog
import uvicorn

from cdnrec.app import build_service, create_asgi
from cdnrec.config import Settings


def configure_logging(level: int = logging.INFO, out: TextIO | None = None) -> None:
    """Structured, human-readable logs on stderr (or `out`), UTC timestamps."""
    logging.basicConfig(level=level, format="%(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )


class Server(uvicorn.Server):
    """uvicorn's server, ticking once a second instead of ten times.

    uvicorn's main loop wakes every 0.1 s to refresh the Date header (which changes once a second)
    and to see whether it should stop: on an idle service those ticks were about half of its CPU
    (py-spy, session 4). Here it ticks every second, and a signal to stop wakes it at once.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Stop (as uvicorn does), and wake the main loop now."""
        super().handle_exit(sig, frame)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def main_loop(self) -> None:
        """Tick every second until told to stop; each tick counts as ten of uvicorn's."""
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._stop.wait()


SWITCH_INTERVAL = 0.0005
"""The GIL switch interval of a service (s): how long a busy recorder thread may keep the GIL
while the event loop waits for it."""


async def run(settings: Settings) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), then shut down cleanly."""
    configure_logging()
    sys.setswitchinterval(SWITCH_INTERVAL)
    service = await build_service(settings)
    config = uvicorn.Config(
        create_asgi(service),
        host=settings.server.host,
        port=settings.server.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    await Server(config).serve()
