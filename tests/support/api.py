"""Helpers for API tests: an injectable clock, raw signed requests, envelope checks, a probe."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

import httpx

from cdnrec.auth import new_nonce, request_signature
from tests.support.service import RunningService

NOW = 1_700_000_000
"""The time injected clocks start at (the start of a second)."""

Launch = Callable[..., RunningService]
"""Starts a RunningService(settings, **build) that the test's teardown stops."""

ENVELOPE_KEYS = {"Code", "Message", "RequestId", "Data"}
DECIMAL = re.compile(r"^[0-9]{1,20}$")


class FakeClock:
    """A clock that stands still until a test moves it (safe to read from the service thread)."""

    def __init__(self, now: float) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def set(self, now: float) -> None:
        """Jump to `now`."""
        with self._lock:
            self._now = now

    def advance(self, seconds: float) -> None:
        """Move forward by `seconds`."""
        with self._lock:
            self._now += seconds


class LiveStreams:
    """A StreamProbe that calls exactly the given stream IDs live."""

    def __init__(self, live: Iterable[str] = ()) -> None:
        self.live = set(live)
        self.asked: list[str] = []

    async def is_live(self, sources: tuple[str, ...], stream_id: str) -> bool:
        """True when `stream_id` was declared live."""
        self.asked.append(stream_id)
        return stream_id in self.live


class AlwaysLive:
    """A StreamProbe that calls every stream live."""

    async def is_live(self, sources: tuple[str, ...], stream_id: str) -> bool:
        """Always True."""
        return True


def common_pairs(
    app_id: int | str,
    secret: str,
    action: str,
    timestamp: int,
    *,
    nonce: str | None = None,
) -> list[tuple[str, str]]:
    """Signed common parameters; `app_id` is signed as given."""
    nonce = nonce or new_nonce()
    signature = request_signature(int(app_id), nonce, secret, timestamp)
    return [
        ("Action", action),
        ("AppId", str(app_id)),
        ("SignatureNonce", nonce),
        ("Timestamp", str(timestamp)),
        ("Signature", signature),
        ("SignatureVersion", "2.0"),
    ]


def encode(pairs: Iterable[tuple[str, str]], *, keep_brackets: bool = False) -> str:
    """A query string; `keep_brackets` leaves `[]` in names raw (as PHP and axios send them)."""
    safe = "[]" if keep_brackets else ""
    return "&".join(f"{quote(k, safe=safe)}={quote(v, safe='')}" for k, v in pairs)


def without(pairs: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    """The pairs minus every `name`."""
    return [(k, v) for k, v in pairs if k != name]


def replaced(pairs: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    """The pairs with `name` set to `value`."""
    return [(k, value if k == name else v) for k, v in pairs]


def send(
    base_url: str,
    query: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send `query` exactly as written (no re-encoding) to `/`."""
    with httpx.Client(timeout=30) as http:
        return http.request(method, f"{base_url}/?{query}", content=body, headers=headers)


def envelope_of(response: httpx.Response) -> dict[str, Any]:
    """The decoded envelope, after checking that the answer has the ZEGO shape."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) == ENVELOPE_KEYS, body
    assert isinstance(body["Code"], int)
    assert not isinstance(body["Code"], bool)
    assert isinstance(body["Message"], str)
    assert body["Message"]
    assert isinstance(body["RequestId"], str)
    assert DECIMAL.match(body["RequestId"]), body["RequestId"]
    return body
