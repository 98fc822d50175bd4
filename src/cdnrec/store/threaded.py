"""SQLite through SQLAlchemy's synchronous engine, awaited from the event loop on one thread.

What a SQLite statement costs a service is mostly the way there: through SQLAlchemy's asyncio
adaptation of aiosqlite every statement took two or three hand-overs between the loop and
aiosqlite's thread, and a greenlet switch per driver call. Here the one connection lives on one
thread of its own; a statement is one hand-over, its rows are fetched there, and the loop gets
them as `Rows`. A transaction holds the connection for its whole length (an `asyncio.Lock`, so
waiting is fair and costs no thread), as the single-connection pool did before.

The hand-over itself is a queue and one ``call_soon_threadsafe`` (``_Thread``): through
``loop.run_in_executor`` and a one-worker ``ThreadPoolExecutor`` each statement also paid for a
concurrent future, its chaining to an asyncio future and a check that the callable is not a
coroutine function, which was a good part of the event loop's CPU per recorded file.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from queue import SimpleQueue
from typing import Any, Concatenate, ParamSpec, TypeVar

import structlog
from sqlalchemy import Connection, Engine, Row
from sqlalchemy.exc import MultipleResultsFound, NoResultFound
from sqlalchemy.sql.base import Executable

log = structlog.get_logger("cdnrec.store")

P = ParamSpec("P")
T = TypeVar("T")

Parameters = Mapping[str, Any] | Sequence[Mapping[str, Any]] | None


class Rows:
    """What a statement returned, fetched on the database's thread: its rows (none for a
    statement that returns none) and how many rows it changed."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: Sequence[Row[Any]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Iterator[Row[Any]]:
        return iter(self._rows)

    def all(self) -> Sequence[Row[Any]]:
        """Every row."""
        return self._rows

    def first(self) -> Row[Any] | None:
        """The first row, or None."""
        return self._rows[0] if self._rows else None

    def one(self) -> Row[Any]:
        """The only row; raises when there is none or more than one."""
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0]

    def scalar(self) -> Any:
        """The first column of the first row, or None."""
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        """The first column of the only row."""
        return self.one()[0]


Reply = Callable[[Any, BaseException | None], None]
"""What to do with a call's result, or its error (called on the thread)."""


class _Thread:
    """One thread that runs calls in the order they were queued, started at the first call."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._calls: SimpleQueue[tuple[Callable[[], Any], Reply] | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def call(self, fn: Callable[[], Any], reply: Reply) -> None:
        """Queue ``fn``; ``reply(result, error)`` follows on the thread."""
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._serve, name=self._name)
                    self._thread.daemon = True
                    self._thread.start()
        self._calls.put((fn, reply))

    def ask(self, fn: Callable[[], T]) -> Awaitable[T]:
        """Run ``fn`` on the thread; its result (or error) on the caller's event loop. A call
        still queued when its awaiter is cancelled is skipped, as an executor's would be."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()

        def run() -> T | None:
            return None if answer.cancelled() else fn()

        def reply(result: Any, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, answer, result, error)

        self.call(run, reply)
        return answer

    def stop(self) -> None:
        """Let the thread finish what is queued, then end it (and wait for that)."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread.join()
            self._thread = None

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, reply = item
            error: BaseException | None = None
            result: Any = None
            try:
                result = fn()
            except BaseException as e:
                error = e
            try:
                reply(result, error)
            except Exception:  # e.g. the caller's loop is closed: the thread goes on
                log.exception("store.reply_failed")


def _settle(answer: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if answer.done():
        return  # cancelled meanwhile
    if error is not None:
        answer.set_exception(error)
    else:
        answer.set_result(result)


class ThreadedConnection:
    """The engine's connection while one transaction (or read) holds it."""

    def __init__(self, engine: ThreadedEngine) -> None:
        self._engine = engine
        self.dialect = engine.dialect

    async def execute(self, statement: Executable, parameters: Parameters = None) -> Rows:
        """Run a statement (executemany with a list of parameter sets)."""
        return await self._engine.run(_execute, statement, parameters)

    async def run_sync(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Call `fn(connection, …)` on the database's thread, inside this transaction."""
        return await self._engine.run(fn, *args, **kwargs)


class ThreadedEngine:
    """A synchronous SQLAlchemy engine whose one connection is used from one thread only."""

    def __init__(self, engine: Engine) -> None:
        self.sync_engine = engine
        self.dialect = engine.dialect
        self.url = engine.url
        self._thread = _Thread("sqlite")
        self._conn: Connection | None = None  # touched on the thread only
        self._turn = asyncio.Lock()
        self._turn_loop: asyncio.AbstractEventLoop | None = None
        self._disposed = False
        self._reset = False  # a read ended: roll back before the next call (on the thread)
        self.on_commit: Callable[[bool], None] | None = None
        """Called on the thread around each commit of this process: ``False`` before it,
        ``True`` after it (``revision.py`` tells its watch which writes are this process's)."""

    async def run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Call `fn(connection, …)` on the database's thread and wait for its answer."""
        return await self._thread.ask(functools.partial(self._call, fn, *args, **kwargs))

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[ThreadedConnection]:
        """Hold the connection for a transaction: committed when the block ends, rolled back
        when it raises."""
        async with self._held():
            try:
                yield ThreadedConnection(self)
            except BaseException:
                self._later(_rollback)
                raise
            try:
                await self.run(self._commit)
            except BaseException:
                self._later(_rollback)  # e.g. the database was busy: nothing stays half done
                raise

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[ThreadedConnection]:
        """Hold the connection for reads; whatever the block began is rolled back after it, on
        the thread, just before the next call (reads in SQLite's autocommit mode hold no lock
        meanwhile; waking the thread for a rollback of its own cost as much as the read)."""
        async with self._held():
            try:
                yield ThreadedConnection(self)
            finally:
                self._reset = True

    async def transact(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Call `fn(connection, …)` on the database's thread and commit: a whole transaction in
        one hand-over (rolled back when `fn` or the commit raises)."""

        def bound(conn: Connection) -> T:
            return fn(conn, *args, **kwargs)

        async with self._held():
            return await self.run(self._committed, bound)

    async def dispose(self) -> None:
        """Close the connection and stop the thread (once; later calls do nothing)."""
        if self._disposed:
            return
        self._disposed = True
        async with self._held():
            await self._thread.ask(self._close)
        self._thread.stop()

    def _held(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._turn_loop is not loop:  # a lock belongs to one loop (tests run several)
            self._turn, self._turn_loop = asyncio.Lock(), loop
        return self._turn

    def _later(self, fn: Callable[[Connection], None]) -> None:
        """Queue `fn(connection)` on the thread without waiting (it runs before anything queued
        after it); a failure is logged."""
        self._thread.call(functools.partial(self._call, fn), _log_failure)

    def _call(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self.sync_engine.connect()
            self._reset = False
        elif self._reset:
            self._reset = False
            self._conn.rollback()
        return fn(self._conn, *args, **kwargs)

    def _commit(self, conn: Connection) -> None:
        self._note_commit(False)
        try:
            conn.commit()
        finally:
            self._note_commit(True)

    def _note_commit(self, done: bool) -> None:
        if self.on_commit is not None:
            try:
                self.on_commit(done)
            except Exception:  # the commit stands (or fails) whatever the note does
                log.exception("store.commit_note_failed")

    def _committed(self, conn: Connection, fn: Callable[[Connection], T]) -> T:
        try:
            result = fn(conn)
            self._commit(conn)
        except BaseException:
            conn.rollback()
            raise
        return result

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.sync_engine.dispose()


def _execute(conn: Connection, statement: Executable, parameters: Parameters) -> Rows:
    result = conn.execute(statement, parameters)
    changed = result.rowcount  # read while the cursor is open (-1 for a query)
    rows: Sequence[Row[Any]] = result.all() if result.returns_rows else ()
    return Rows(rows, changed)


def _rollback(conn: Connection) -> None:
    conn.rollback()


def _log_failure(_result: Any, error: BaseException | None) -> None:
    if error is not None:
        log.error("store.rollback_failed", error=f"{type(error).__name__}: {error}")
