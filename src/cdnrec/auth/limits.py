"""Per-app request limits and the nonce replay guard, in memory or in Redis (shared by replicas)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis


class RateLimiter(Protocol):
    """Counts requests per key in one-second windows."""

    async def admit(self, key: str, limit: int) -> bool:
        """Count one request for `key`; False when the current second already had `limit`."""
        ...


class NonceGuard(Protocol):
    """Remembers nonces for a while so that a signed request cannot be replayed."""

    async def claim(self, key: str, ttl: float) -> bool:
        """Record `key`; False when it was already recorded within its ttl."""
        ...


class MemoryRateLimiter:
    """Fixed one-second windows counted in this process."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._counts: dict[str, int] = {}

    async def admit(self, key: str, limit: int) -> bool:
        """Count one request; refuse past `limit` in the current wall-clock second."""
        second = int(self._clock())
        if second != self._second:
            self._second = second
            self._counts = {}
        count = self._counts.get(key, 0) + 1
        self._counts[key] = count
        return count <= limit


class MemoryNonceGuard:
    """Nonces kept in a dict and pruned as they expire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_entries: int = 1_000_000):
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._max = max_entries
        self._next_prune = 0.0

    async def claim(self, key: str, ttl: float) -> bool:
        """Record the nonce unless it is still remembered."""
        now = self._clock()
        if now >= self._next_prune or len(self._seen) >= self._max:
            self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
            self._next_prune = now + 1.0
        expiry = self._seen.get(key)
        if expiry is not None and expiry > now:
            return False
        self._seen[key] = now + ttl
        return True


class RedisRateLimiter:
    """Fixed one-second windows counted in Redis, so many API processes share one limit."""

    def __init__(self, redis: Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock

    async def admit(self, key: str, limit: int) -> bool:
        """INCR the counter of this second (expiring after two) and compare with `limit`."""
        bucket = f"cdnrec:rl:{key}:{int(self._clock())}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(bucket)
            pipe.expire(bucket, 2)
            count, _ = await pipe.execute()
        return int(count) <= limit


class RedisNonceGuard:
    """Nonces remembered in Redis with SET NX EX."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def claim(self, key: str, ttl: float) -> bool:
        """Record the nonce unless another request (on any replica) already used it."""
        stored = await self._redis.set(f"cdnrec:nonce:{key}", b"1", nx=True, ex=max(1, int(ttl)))
        return bool(stored)
