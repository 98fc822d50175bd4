"""Running one cdnrec process under uvicorn."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from email.utils import formatdate
from typing import TextIO

import structlog
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    """uvicorn's server without its tick.

    uvicorn's main loop wakes every 0.1 s to refresh the Date header (which changes once a
    second) and to see whether it should stop; on an idle service those wakes were most of its
    CPU. Here the Date header is added per response (``DateHeader``) and the main loop sleeps
    until told to stop: setting ``should_exit`` (uvicorn's signal handler does) wakes it.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit = False
        super().__init__(config)

    @property
    def should_exit(self) -> bool:
        """Whether the server should stop; setting it wakes the main loop."""
        return self._exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit = value
        if value and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def main_loop(self) -> None:
        """Sleep until told to stop."""
        self._loop = asyncio.get_running_loop()
        if not self._exit:
            await self._stop.wait()


class DateHeader:
    """ASGI middleware adding the ``Date`` header to every HTTP response (RFC 9110 §6.6.1)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._second = -1
        self._value = b""

    def _date(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._value = formatdate(now, usegmt=True).encode()
            self._second = now
        return self._value

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"date", self._date())]
            await send(message)

        await self.app(scope, receive, dated)


SWITCH_INTERVAL = 0.0005
"""The GIL switch interval of a service (s): how long a busy recorder thread may keep the GIL
while the event loop waits for it."""


async def run(settings: Settings) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), then shut down cleanly."""
    configure_logging()
    sys.setswitchinterval(SWITCH_INTERVAL)
    service = await build_service(settings)
    config = uvicorn.Config(
        DateHeader(create_asgi(service)),
        date_header=False,
        host=settings.server.host,
        port=settings.server.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    await Server(config).serve()
