"""Group commit: concurrent writes share a batch, a bad item fails alone, nothing is left waiting."""

from __future__ import annotations

import asyncio

import pytest

from cdnrec.store.batching import GroupCommit


class Log:
    """A writer that keeps every batch it was given; items listed in `bad` make a batch fail."""

    def __init__(self, bad: frozenset[int] = frozenset(), delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.bad = bad
        self.delay = delay

    async def write(self, batch: list[int]) -> None:
        await asyncio.sleep(self.delay)
        if self.bad & set(batch):
            raise ValueError(f"bad item in {batch}")
        self.batches.append(batch)


async def test_items_handed_in_together_are_written_in_one_batch() -> None:
    log = Log()
    commit = GroupCommit(log.write)
    await asyncio.gather(*(commit.submit(n) for n in range(10)))
    assert log.batches == [list(range(10))]


async def test_items_that_arrive_during_a_write_go_out_in_the_next_batch() -> None:
    log = Log(delay=0.05)
    commit = GroupCommit(log.write)
    first = asyncio.create_task(commit.submit(0))
    await asyncio.sleep(0.01)  # the first batch is being written
    await asyncio.gather(first, *(commit.submit(n) for n in range(1, 5)))
    assert log.batches == [[0], [1, 2, 3, 4]]


async def test_a_batch_holds_at_most_the_limit() -> None:
    log = Log()
    commit = GroupCommit(log.write, limit=3)
    await asyncio.gather(*(commit.submit(n) for n in range(7)))
    assert log.batches == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_bad_item_fails_alone_and_the_others_are_written() -> None:
    log = Log(bad=frozenset({2}))
    commit = GroupCommit(log.write)
    results = await asyncio.gather(*(commit.submit(n) for n in range(4)), return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["NoneType", "NoneType", "ValueError", "NoneType"]
    assert log.batches == [[0], [1], [3]]


async def test_a_cancelled_caller_does_not_stop_its_item_and_idle_waits_for_it() -> None:
    log = Log(delay=0.05)
    commit = GroupCommit(log.write)
    caller = asyncio.create_task(commit.submit(1))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await commit.idle()
    assert log.batches == [[1]]
    await commit.idle()  # nothing in flight: returns at once
