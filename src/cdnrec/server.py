"""Running one cdnrec process under uvicorn."""

from __future__ import annotations

import logging
import sys
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


async def run(settings: Settings) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), then shut down cleanly."""
    configure_logging()
    # The event loop shares the GIL with one recorder thread per stream; at the default 5 ms
    # switch interval every hop of a database call can wait that long behind busy recorders.
    sys.setswitchinterval(0.0005)
    service = await build_service(settings)
    config = uvicorn.Config(
        create_asgi(service),
        host=settings.server.host,
        port=settings.server.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    await uvicorn.Server(config).serve()
