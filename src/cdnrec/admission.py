"""Admission control (product.md §6): Start takes new streams only while recorders have room."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cdnrec.config import Vendor
from cdnrec.store import Store

FULL = "every recorder is full: no room for another recording"
"""Why a stream is refused by admission control."""

FRESH = 1.0
"""How long a read of the recorders' room is used before it is read again, in seconds: Start
stays one query cheaper at 1,000 requests a second, at the price of a place freed by an ended
recording being seen up to a second late."""


@dataclass(frozen=True)
class Reservation:
    """Places a Start took before creating its tasks; settled once it knows how many it made."""

    admitted: set[str]
    count: int
    generation: int


class Places:
    """The places the live recorders have left, read from the store at most every `FRESH` s.

    A Start reserves its places before it creates its tasks (so concurrent Starts of this
    process do not all take the last place) and gives back those it did not use. Another API
    process's Starts within that second are not counted here, so processes side by side may
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
        self._generation = 0

    async def admit(self, app_id: int, vendor: Vendor, stream_ids: list[str]) -> Reservation:
        """Reserve places for `stream_ids`: streams recorded already (Start is idempotent), then
        new ones in request order while places are left. Every stream when no recorder is alive
        (their tasks wait for one)."""
        await self._refresh()
        if self._left is None or self._left >= len(stream_ids):
            return self._reserve(set(stream_ids), len(stream_ids))
        recorded = {s for s in stream_ids if await self._store.tasks.active_for(app_id, vendor, s)}
        new = [s for s in stream_ids if s not in recorded]
        if self._left is not None:  # read again: other Starts may have taken places meanwhile
            new = new[: max(self._left, 0)]
        return self._reserve(recorded | set(new), len(new))

    def settle(self, reservation: Reservation, created: int) -> None:
        """Give back the reserved places for which no task was created (a stream recorded
        already, a Start that failed); nothing when the room was read again meanwhile."""
        if self._left is not None and reservation.generation == self._generation:
            self._left += reservation.count - created

    def _reserve(self, admitted: set[str], count: int) -> Reservation:
        if self._left is None:
            count = 0
        else:
            self._left -= count
        return Reservation(admitted, count, self._generation)

    async def _refresh(self) -> None:
        now = self._monotonic()
        if now - self._read_at >= FRESH:
            seen_since = int((self._clock() - self._seen_within) * 1000)
            self._left = await self._store.recorders.room(seen_since)
            self._read_at = now
            self._generation += 1
