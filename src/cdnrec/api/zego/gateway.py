"""The gateway checks every request passes before its Action runs (zego-api.md §1.4–1.5, §1.7.1)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cdnrec.api.zego.codes import ApiError, Code
from cdnrec.api.zego.params import Params
from cdnrec.auth import NonceGuard, request_signature, signature_matches
from cdnrec.store.cache import AppCache
from cdnrec.store.models import App

# ASCII digits only, matched in full: `\d` takes other scripts' digits and `$` a trailing newline.
_UINT32 = re.compile(r"[0-9]{1,10}")
_INT = re.compile(r"-?[0-9]{1,19}")


def _required(params: Params, name: str, code: Code) -> str:
    value = params.first(name)
    if value is None or not value.strip():
        raise ApiError(code, f"{name} is missing")
    return value.strip()


@dataclass
class Gateway:
    """Authenticates a request: parameters present and well-formed, fresh, signed, not replayed."""

    apps: AppCache
    nonces: NonceGuard
    tolerance: float = 600.0
    clock: Callable[[], float] = field(default=time.time)

    async def authenticate(self, params: Params) -> App:
        """Return the calling app, or raise the gateway code that applies."""
        app_id = self._app_id(params)
        nonce = _required(params, "SignatureNonce", Code.NONCE_MISSING)
        timestamp = self._timestamp(params)
        signature = _required(params, "Signature", Code.SIGNATURE_MISSING)
        version = _required(params, "SignatureVersion", Code.VERSION_MISSING)
        if version != "2.0":
            raise ApiError(
                Code.VERSION_UNSUPPORTED, f"SignatureVersion {version!r} unsupported; use 2.0"
            )
        if abs(self.clock() - timestamp) > self.tolerance:
            raise ApiError(
                Code.SIGNATURE_EXPIRED,
                f"Timestamp is more than {self.tolerance:g} s away from the server's time",
            )
        app = await self.apps.get(app_id)
        if app is None:
            raise ApiError(Code.APP_UNKNOWN, f"AppId {app_id} is unknown")
        expected = request_signature(app_id, nonce, app.server_secret, timestamp)
        if not signature_matches(expected, signature):
            raise ApiError(Code.SIGNATURE_WRONG, "Signature does not match")
        if not await self.nonces.claim(f"{app_id}:{nonce}", 2 * self.tolerance):
            raise ApiError(
                Code.SIGNATURE_WRONG, "SignatureNonce was already used (replayed request)"
            )
        return app

    @staticmethod
    def _app_id(params: Params) -> int:
        raw = params.first("AppId")
        if raw is None or not raw.strip():
            raise ApiError(Code.APPID_MALFORMED, "AppId is missing")
        raw = raw.strip()
        if not _UINT32.fullmatch(raw) or not 0 < int(raw) < 2**32:
            raise ApiError(
                Code.APPID_MALFORMED, f"AppId {raw[:32]!r} is not an unsigned 32-bit integer"
            )
        return int(raw)

    @staticmethod
    def _timestamp(params: Params) -> int:
        raw = _required(params, "Timestamp", Code.TIMESTAMP_MISSING)
        if not _INT.fullmatch(raw):
            raise ApiError(Code.TIMESTAMP_MALFORMED, "Timestamp must be Unix time in seconds")
        return int(raw)
