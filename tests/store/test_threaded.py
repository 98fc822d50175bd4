"""SQLite on a thread of its own: one connection, transactions one at a time, never the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError, MultipleResultsFound, NoResultFound

from cdnrec.store.database import open_engine
from cdnrec.store.threaded import ThreadedEngine, _Thread

CREATE = text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
INSERT = text("INSERT INTO t (k, v) VALUES (:k, :v)")
ALL = text("SELECT k, v FROM t ORDER BY k")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[ThreadedEngine]:
    opened = open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(opened, ThreadedEngine)
    async with opened.begin() as conn:
        await conn.execute(CREATE)
    yield opened
    await opened.dispose()


async def _rows(engine: ThreadedEngine) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        return [(r.k, r.v) for r in await conn.execute(ALL)]


async def test_statements_run_on_the_stores_thread_not_the_loop(engine: ThreadedEngine) -> None:
    async with engine.connect() as conn:
        name = await conn.run_sync(lambda _c: threading.current_thread().name)
    assert name.startswith("sqlite")
    assert name != threading.current_thread().name


async def test_rows_answer_like_a_result(engine: ThreadedEngine) -> None:
    async with engine.begin() as conn:
        inserted = await conn.execute(INSERT, [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}])
    assert inserted.rowcount == 2
    async with engine.connect() as conn:
        rows = await conn.execute(ALL)
        assert [tuple(r) for r in rows.all()] == [(1, "a"), (2, "b")]
        assert rows.first() is not None
        assert rows.first() == (1, "a")
        assert rows.scalar() == 1
        with pytest.raises(MultipleResultsFound):
            rows.one()
        none = await conn.execute(text("SELECT k FROM t WHERE k = 3"))
        assert none.first() is None
        assert none.scalar() is None
        with pytest.raises(NoResultFound):
            none.scalar_one()
        one = await conn.execute(text("SELECT v FROM t WHERE k = 2"))
        assert one.scalar_one() == "b"


async def test_a_block_that_raises_is_rolled_back_and_the_connection_goes_on(
    engine: ThreadedEngine,
) -> None:
    async def gives_up() -> None:
        async with engine.begin() as conn:
            await conn.execute(INSERT, {"k": 1, "v": "lost"})
            raise RuntimeError("the caller gave up")

    async def duplicates() -> None:
        async with engine.begin() as conn:
            await conn.execute(INSERT, {"k": 2, "v": "lost too"})
            await conn.execute(INSERT, {"k": 2, "v": "duplicate"})

    with pytest.raises(RuntimeError):
        await gives_up()
    with pytest.raises(IntegrityError):
        await duplicates()
    async with engine.begin() as conn:
        await conn.execute(INSERT, {"k": 3, "v": "kept"})
    assert await _rows(engine) == [(3, "kept")]


async def test_transactions_take_turns(engine: ThreadedEngine) -> None:
    """Two writers that interleave their statements would read each other's uncommitted rows
    and roll each other back; each sees only its own and the committed ones."""
    seen: dict[str, list[tuple[int, str]]] = {}

    async def writer(name: str, base: int) -> None:
        async with engine.begin() as conn:
            await conn.execute(INSERT, {"k": base, "v": name})
            await asyncio.sleep(0.01)  # the other writer runs meanwhile
            await conn.execute(INSERT, {"k": base + 1, "v": name})
            seen[name] = [(r.k, r.v) for r in await conn.execute(ALL)]

    await asyncio.gather(writer("a", 10), writer("b", 20))
    first, second = sorted(seen.values(), key=len)
    assert len(first) == 2
    assert len(second) == 4
    assert await _rows(engine) == sorted(second)


async def test_a_cancelled_transaction_leaves_nothing_behind(engine: ThreadedEngine) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        async with engine.begin() as conn:
            await conn.execute(INSERT, {"k": 1, "v": "cancelled"})
            started.set()
            await asyncio.sleep(10)

    job = asyncio.create_task(slow())
    await started.wait()
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    async with engine.begin() as conn:
        await conn.execute(INSERT, {"k": 2, "v": "next"})
    assert await _rows(engine) == [(2, "next")]


async def test_reads_end_their_transaction(engine: ThreadedEngine, tmp_path: Path) -> None:
    """A read that kept its snapshot would hide later commits of other connections."""
    async with engine.connect() as conn:
        assert (await conn.execute(ALL)).all() == []
    other = open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(other, ThreadedEngine)
    async with other.begin() as conn:
        await conn.execute(INSERT, {"k": 1, "v": "from another connection"})
    await other.dispose()
    assert await _rows(engine) == [(1, "from another connection")]


async def test_a_read_holds_no_lock_until_the_next_call(
    engine: ThreadedEngine, tmp_path: Path
) -> None:
    """A read's rollback waits for the next call; meanwhile another connection can write."""
    async with engine.connect() as conn:
        assert (await conn.execute(ALL)).all() == []
    other = sqlite3.connect(tmp_path / "db.sqlite", timeout=0.1)
    other.execute("INSERT INTO t (k, v) VALUES (1, 'while the read is not rolled back yet')")
    other.commit()
    other.close()
    assert await _rows(engine) == [(1, "while the read is not rolled back yet")]


async def test_a_transaction_is_one_call_committed_or_rolled_back(engine: ThreadedEngine) -> None:
    def insert(conn: Connection, k: int, v: str) -> int:
        return conn.execute(INSERT, {"k": k, "v": v}).rowcount

    assert await engine.transact(insert, 1, "a") == 1

    def insert_then_fail(conn: Connection) -> None:
        conn.execute(INSERT, {"k": 2, "v": "b"})
        conn.execute(INSERT, {"k": 1, "v": "taken"})

    with pytest.raises(IntegrityError):
        await engine.transact(insert_then_fail)
    assert await _rows(engine) == [(1, "a")]  # nothing of the failed one, and it goes on
    notes: list[bool] = []
    engine.on_commit = notes.append
    await engine.transact(insert, 3, "c")
    assert notes == [False, True]  # told before and after the commit


async def test_dispose_closes_once(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert isinstance(engine, ThreadedEngine)

    def connection_of(conn: Connection) -> Connection:
        return conn

    async with engine.connect() as conn:
        held = await conn.run_sync(connection_of)
    await engine.dispose()
    await engine.dispose()
    assert held.closed


async def test_a_call_still_queued_when_its_caller_gives_up_is_skipped() -> None:
    """As with an executor: a statement whose caller was cancelled before it started never
    runs (a cancelled commit must not commit behind the caller's back)."""
    thread = _Thread("sqlite-test")
    busy, release, ran = threading.Event(), threading.Event(), []
    try:
        first = asyncio.ensure_future(thread.ask(lambda: busy.set() or release.wait(5)))
        await asyncio.to_thread(busy.wait, 5)
        second = asyncio.ensure_future(thread.ask(lambda: ran.append("second")))
        await asyncio.sleep(0)
        second.cancel()
        release.set()
        assert await first is True
        assert await thread.ask(lambda: "after") == "after"
        assert ran == []
        assert second.cancelled()
    finally:
        thread.stop()


async def test_a_reply_that_fails_does_not_stop_the_thread() -> None:
    thread = _Thread("sqlite-test")

    def reply(_result: object, _error: BaseException | None) -> None:
        raise RuntimeError("the caller's loop is gone")

    try:
        thread.call(lambda: 1, reply)
        assert await thread.ask(lambda: threading.current_thread().name) == "sqlite-test"
    finally:
        thread.stop()
