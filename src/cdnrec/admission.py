"""Admission control (product.md §6): Start takes new streams only while recorders have room."""

from __future__ import annotations

import time
from collections.abc import Callable

from cdnrec.config import Vendor
from cdnrec.store import Store

FULL = "every recorder is full: no room for another recording"
"""Why a stream is refused by admission control."""

FRESH = 1.0
"""How long a read of the recorders' room is used before it is read again, in seconds: Start
stays one query cheaper at 1,000 requests a second, at the price of a place freed by an ended
recording being seen up to a second late."""


class Places:
    """The places the live recorders have left, read from the store at most every `FRESH` s and
    counted down by the tasks this process creates meanwhile.

    Another API process's Starts within that second are not counted here, so Starts may
    overshoot a little; recorders still take no more than their capacity and the rest wait.
    """

    def __init__(
        self,
        store: Store,
        *,
        seen_within: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._seen_within = seen_within
        self._clock = clock
        self._monotonic = monotonic
        self._left: int | None = None
        self._read_at = float("-inf")

    async def admit(self, app_id: int, vendor: Vendor, stream_ids: list[str]) -> set[str]:
        """Those of `stream_ids` there is room for: streams recorded already (Start is
        idempotent), then new ones in request order while places are left. Every stream when no
        recorder is alive (their tasks wait for one)."""
        left = await self._places()
        if left is None or left >= len(stream_ids):
            return set(stream_ids)
        admitted = set()
        for stream_id in stream_ids:
            if await self._store.tasks.active_for(app_id, vendor, stream_id) is not None:
                admitted.add(stream_id)
            elif left > 0:
                admitted.add(stream_id)
                left -= 1
        return admitted

    def taken(self, count: int) -> None:
        """`count` tasks were created here since the last read."""
        if self._left is not None:
            self._left -= count

    async def _places(self) -> int | None:
        now = self._monotonic()
        if now - self._read_at >= FRESH:
            seen_since = int((self._clock() - self._seen_within) * 1000)
            self._left = await self._store.recorders.room(seen_since)
            self._read_at = now
        return self._left
