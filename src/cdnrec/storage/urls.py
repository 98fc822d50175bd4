"""Signed, expiring URLs under /files/ for locally stored files (the callbacks' replay_url).

The path carries the signature, `/files/{app_id}/{expires}/{signature}/{key}`, so that an M3U8
playlist's relative segment URLs resolve under the same signature: a playlist `X.m3u8` is signed
for the scope `X`, which also covers its segments in the folder `X/`.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote


def scope_of(key: str) -> str:
    """What a signature for `key` grants: the key, or a playlist's stem (it and its segments)."""
    return key[: -len(".m3u8")] if key.endswith(".m3u8") else key


def url_signature(secret: str, app_id: int, expires: int, scope: str) -> str:
    """HMAC-SHA256 over app, expiry and scope, keyed with the app's secret."""
    message = f"{app_id}\n{expires}\n{scope}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


def file_url(public_url: str, app_id: int, secret: str, key: str, expires: int) -> str:
    """The signed URL of a stored file."""
    signature = url_signature(secret, app_id, expires, scope_of(key))
    return f"{public_url.rstrip('/')}/files/{app_id}/{expires}/{signature}/{quote(key)}"


def grants(secret: str, app_id: int, expires: int, signature: str, key: str) -> bool:
    """Whether `signature` grants access to `key` (the file itself or a playlist's segment)."""
    candidates = [scope_of(key)]
    if "/" in key:
        candidates.append(key.rsplit("/", 1)[0])
    return any(
        hmac.compare_digest(url_signature(secret, app_id, expires, c), signature)
        for c in candidates
    )
