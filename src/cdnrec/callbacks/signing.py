"""The signature of ZEGO callbacks (zego-api.md §5.4)."""

from __future__ import annotations

import hashlib
import secrets
import time


def callback_signature(secret: str, timestamp: str, nonce: str) -> str:
    """sha1 of the three values sorted as strings and concatenated, as lowercase hex."""
    material = "".join(sorted([secret, timestamp, nonce]))
    return hashlib.sha1(material.encode(), usedforsecurity=False).hexdigest()


def signed(payload: dict[str, str], secret: str, now: float | None = None) -> dict[str, str]:
    """`payload` with a fresh timestamp, nonce and signature (re-signed on every attempt)."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = str(secrets.randbelow(10**9))
    return {
        **payload,
        "timestamp": timestamp,
        "nonce": nonce,
        "signature": callback_signature(secret, timestamp, nonce),
    }
