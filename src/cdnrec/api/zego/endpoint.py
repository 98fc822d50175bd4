"""The ZEGO-compatible endpoint at `/`: gateway checks, rate limits, dispatch on `Action`."""

from __future__ import annotations

import time

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse

from cdnrec.api.metrics import ApiMetrics
from cdnrec.api.zego import actions
from cdnrec.api.zego.codes import ApiError, Code
from cdnrec.api.zego.envelope import envelope
from cdnrec.api.zego.gateway import Gateway
from cdnrec.api.zego.params import Params, read_params
from cdnrec.auth import RateLimiter
from cdnrec.store.models import App

log = structlog.get_logger("cdnrec.api")

_FAMILY_LIMIT_CODE = {
    actions.MEDIA: Code.TOO_FREQUENT,
    actions.STREAM_STATE: Code.STATE_TOO_FREQUENT,
}


class ZegoEndpoint:
    """Answers every request with the envelope; HTTP 500 only for a bug of ours."""

    def __init__(
        self,
        gateway: Gateway,
        limiter: RateLimiter,
        services: actions.Services,
        metrics: ApiMetrics,
    ) -> None:
        self._gateway = gateway
        self._limiter = limiter
        self._services = services
        self._metrics = metrics

    async def handle(self, request: Request) -> JSONResponse:
        """Handle one API request."""
        started = time.perf_counter()
        label = "unknown"
        status = 200
        try:
            if request.method not in ("GET", "POST"):
                raise ApiError(Code.BAD_PARAMETER, f"use GET or POST, not {request.method}")
            params = await read_params(request)
            name = (params.first("Action") or "").strip()
            if name in actions.ACTIONS:
                label = name
            body = envelope(0, "success", await self._run(name, params))
        except ApiError as exc:
            body = envelope(int(exc.code), exc.message)
        except Exception:
            log.exception("api.internal_error", action=label)
            status = 500
            body = envelope(int(Code.INTERNAL), "internal error; the request was not carried out")
        self._metrics.observe(label, body["Code"], time.perf_counter() - started)
        return JSONResponse(body, status_code=status)

    async def _run(self, name: str, params: Params) -> object:
        if not name:
            raise ApiError(Code.ACTION_MISSING, "Action is missing")
        app = await self._gateway.authenticate(params)
        action = actions.lookup(name)
        await self._admit(app, action)
        return await action.handler(self._services, app, params)

    async def _admit(self, app: App, action: actions.Action) -> None:
        limits = self._services.limits
        limit = limits.media_rps if action.family == actions.MEDIA else limits.stream_state_rps
        if not await self._limiter.admit(f"{app.app_id}:{action.family}", limit):
            raise ApiError(
                _FAMILY_LIMIT_CODE[action.family],
                f"request too frequent: at most {limit} per second for this app",
            )
