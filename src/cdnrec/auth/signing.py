"""The request signature of ZEGO's server API, version 2.0 (zego-api.md §1.5)."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def request_signature(app_id: int, nonce: str, secret: str, timestamp: int) -> str:
    """md5(AppId + SignatureNonce + ServerSecret + Timestamp) as 32 lowercase hex characters."""
    material = f"{app_id}{nonce}{secret}{timestamp}".encode()
    return hashlib.md5(material, usedforsecurity=False).hexdigest()


def signature_matches(expected: str, given: str) -> bool:
    """Compare two signatures in constant time (case-insensitive hex)."""
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode("utf-8", "replace"))


def new_nonce() -> str:
    """A fresh SignatureNonce: 16 hex characters from 8 random bytes."""
    return secrets.token_hex(8)
