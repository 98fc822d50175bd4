"""A signed client for the ZEGO-compatible API, for scripts, tests and `cdnrec call`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx

from cdnrec.auth.signing import new_nonce, request_signature

Pairs = Iterable[tuple[str, str]] | Mapping[str, str | Sequence[str]]


def signed_params(
    app_id: int,
    secret: str,
    action: str,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> list[tuple[str, str]]:
    """The common parameters of one request, signed with version 2.0."""
    ts = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or new_nonce()
    return [
        ("Action", action),
        ("AppId", str(app_id)),
        ("SignatureNonce", nonce),
        ("Timestamp", str(ts)),
        ("Signature", request_signature(app_id, nonce, secret, ts)),
        ("SignatureVersion", "2.0"),
    ]


def _pairs(params: Pairs | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    if isinstance(params, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in params.items():
            values = [value] if isinstance(value, str) else value
            out.extend((key, str(v)) for v in values)
        return out
    return [(k, str(v)) for k, v in params]


class Client:
    """Calls Actions on a cdnrec (or ZEGO) endpoint and returns the decoded envelope."""

    def __init__(
        self,
        base_url: str,
        app_id: int,
        secret: str,
        *,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = app_id
        self._secret = secret
        self._clock = clock
        self._http = httpx.Client(base_url=base_url, timeout=timeout)

    def call(self, action: str, params: Pairs | None = None, *, post: bool = False) -> Any:
        """Send `action` with business `params` (query for GET, JSON body for POST)."""
        common: list[tuple[str, Any]] = list(
            signed_params(self.app_id, self._secret, action, timestamp=int(self._clock()))
        )
        business: list[tuple[str, Any]] = _pairs(params)
        if post:
            body: dict[str, Any] = {}
            for key, value in business:
                name = key.removesuffix("[]")
                if key.endswith("[]") or name in body:
                    existing = body.get(name, [])
                    body[name] = [*(existing if isinstance(existing, list) else [existing]), value]
                else:
                    body[name] = value
            response = self._http.post("/", params=common, json=body)
        else:
            response = self._http.get("/", params=common + business)
        return response.json()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
