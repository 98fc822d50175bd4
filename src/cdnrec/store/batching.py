"""Group commit: writes that many coroutines hand in at about the same time share a transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_Waiting = list[tuple[T, "asyncio.Future[None]"]]


class GroupCommit(Generic[T]):
    """Collects items from concurrent callers and writes them in batches, one batch at a time.

    `submit` returns once the batch holding its item is committed. While one batch is written the
    next one fills, so under load one transaction carries everything that arrived meanwhile, and
    an item alone is written at once. When a batch fails its items are written again one at a
    time, so that a bad item fails alone (it raises in its own caller) and the rest get through.
    """

    def __init__(self, write: Callable[[list[T]], Awaitable[None]], *, limit: int = 500) -> None:
        self._write = write
        self._limit = limit
        self._waiting: _Waiting[T] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Write `item` with whatever else is waiting; return once it is committed."""
        committed = asyncio.get_running_loop().create_future()
        self._waiting.append((item, committed))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="group-commit")
        await committed

    async def idle(self) -> None:
        """Wait until every item handed in so far is written (or failed)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.wait({self._flusher})

    async def _flush(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._limit]
            del self._waiting[: self._limit]
            try:
                await self._write_batch(batch)
            except BaseException as exc:  # cancelled: nobody is left hanging
                _settle(batch, exc)
                raise

    async def _write_batch(self, batch: _Waiting[T]) -> None:
        try:
            await self._write([item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch, exc)
                return
            for one in batch:
                await self._write_batch([one])
        else:
            _settle(batch, None)


def _settle(batch: _Waiting[T], error: BaseException | None) -> None:
    for _, committed in batch:
        if committed.done():
            continue
        if error is None:
            committed.set_result(None)
        elif isinstance(error, asyncio.CancelledError):
            committed.cancel()
        else:
            committed.set_exception(error)
