"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cdnrec.store import Store


def healthz(_: Request) -> JSONResponse:
    """The process is up."""
    return JSONResponse({"status": "ok"})


def readyz_for(store: Store) -> Callable[[Request], Awaitable[JSONResponse]]:
    """A readiness endpoint that checks the database answers."""

    async def readyz(_: Request) -> JSONResponse:
        try:
            await store.ping()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "database": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    return readyz


def metrics_for(registry: CollectorRegistry) -> Callable[[Request], Response]:
    """The Prometheus exposition of `registry`."""

    def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return metrics
