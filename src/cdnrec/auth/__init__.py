"""Request signing, nonce replay protection and per-app rate limits."""

from cdnrec.auth.limits import (
    MemoryNonceGuard,
    MemoryRateLimiter,
    NonceGuard,
    RateLimiter,
    RedisNonceGuard,
    RedisRateLimiter,
)
from cdnrec.auth.signing import new_nonce, request_signature, signature_matches

__all__ = [
    "MemoryNonceGuard",
    "MemoryRateLimiter",
    "NonceGuard",
    "RateLimiter",
    "RedisNonceGuard",
    "RedisRateLimiter",
    "new_nonce",
    "request_signature",
    "signature_matches",
]
