"""Writes to a SQLite database's files, as the kernel reports them (inotify).

A process that polls a shared SQLite file for other processes' work wakes on a timer even when
nothing happens, and on an idle service those wakes were most of its CPU. With a watch the
pollers sleep until one of the database's files is written; on systems without inotify they poll
as before (``FileWatch.open`` returns None).

The reader is attached to the event loop only while someone waits: writes meanwhile queue in the
kernel (identical events coalesce) and wake the next waiter at once, so nothing is missed and a
busy database costs no callbacks between two looks.

The process's own commits write the same files. While one is being written (``writing``), and
when the files are still as the last one left them (``own``), their writes wake nobody at once:
the waiters are woken ``OWN_LATER`` seconds later instead, once for all of them. A commit of
another process whose writes are read in that moment is therefore seen that late, never lost.
Where the watch can look at the database itself (``confirm``), that later wake is one look, and
only the waiters that had seen another revision are woken, and a poller that saw the revision
it found has nothing to look at for those writes (``unchanged``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

try:
    from inotify_simple import INotify, flags
except (ImportError, OSError):  # pragma: no cover - not Linux
    INotify = None

_MASK = 0
if INotify is not None:
    _MASK = flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.DELETE


OWN_LATER = 5.0
"""Seconds after a write of this process's own commits before the waiters are woken anyway."""

ANY = object()
"""A waiter that has seen no revision in particular: every wake wakes it."""


class FileWatch:
    """Counts the writes to some files of one folder; ``after(n)`` waits for the count to pass n."""

    def __init__(self, notify: INotify, names: Iterable[str]) -> None:
        self._notify = notify
        self._names = frozenset(names)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[asyncio.Future[None], object] = {}
        self.generation = 0
        """How many batches of writes to the files were seen so far."""
        self.stamp: Callable[[], object] | None = None
        """The files' state now (size, time), to compare with ``own``; None: no comparing."""
        self._own: object = None
        self._writing = False
        self._later: asyncio.TimerHandle | None = None
        self.doubts = 0
        """How many times writes taken for this process's own were looked at after all
        (``OWN_LATER``): a look trusted because the files were as our commit left them is
        asked again after each."""
        self.confirm: Callable[[], Awaitable[object]] | None = None
        """The database's revision now, asked afresh after a doubt: then only the waiters that
        had seen another revision are woken (None: all of them are)."""
        self._checking: asyncio.Task[None] | None = None
        self._confirmed: tuple[int, int, object] | None = None
        """``(first, last, token)``: the batches of writes after generation ``first`` up to
        ``last`` were all doubts whose look found the revision ``token`` (``unchanged``)."""

    @classmethod
    def open(cls, folder: Path, names: Iterable[str]) -> FileWatch | None:
        """A watch of ``names`` in ``folder``, or None where the system cannot watch files."""
        if INotify is None:
            return None
        try:
            notify = INotify(nonblocking=True)
        except OSError:
            return None
        try:
            notify.add_watch(str(folder), _MASK)
        except OSError:
            notify.close()
            return None
        return cls(notify, names)

    async def after(self, generation: int, seen: object = ANY) -> None:
        """Return once ``self.generation`` is past ``generation`` (at once if it is already);
        ``seen``, the revision the waiter has seen, spares it a doubt that finds that one."""
        if self.generation > generation:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters[waiter] = seen
        self._attach(loop)
        try:
            await waiter
        finally:
            self._waiters.pop(waiter, None)
            if not self._waiters:
                self._detach()

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        self._detach()
        loop.add_reader(self._notify.fileno(), self._readable)
        self._loop = loop

    def _detach(self) -> None:
        if self._later is not None:  # nobody waits: the next waiter looks at once anyway
            self._later.cancel()
            self._later = None
            self.generation += 1
            self.doubts += 1
        if self._loop is not None:
            with contextlib.suppress(Exception):  # the loop may be closed already
                self._loop.remove_reader(self._notify.fileno())
            self._loop = None

    def writing(self) -> None:
        """A commit of this process is about to write the files (called on any thread)."""
        self._writing = True

    def own(self, stamp: object) -> None:
        """This process's commit is done and left the files as ``stamp`` says (any thread)."""
        self._own = stamp
        self._writing = False

    def ours(self, stamp: object) -> bool:
        """Whether the files are as this process's last commit left them, ``stamp`` being
        their state now (and no commit of it is being written)."""
        return not self._writing and stamp == self._own

    def _readable(self) -> None:
        try:
            events = self._notify.read(timeout=0)
        except OSError:
            events = []
        if not any(e.name in self._names or e.mask & flags.Q_OVERFLOW for e in events):
            return
        if self._writing or (self.stamp is not None and self.stamp() == self._own):
            if self._later is None and self._loop is not None:
                self._later = self._loop.call_later(OWN_LATER, self._doubt)
            return
        self._wake()

    def _doubt(self) -> None:
        self._later = None
        self.doubts += 1
        if self.confirm is None or self._loop is None:
            self._wake()
            return
        self._checking = self._loop.create_task(self._check(self.confirm))

    async def _check(self, confirm: Callable[[], Awaitable[object]]) -> None:
        """One look for every waiter after a doubt: wake those that had seen another revision."""
        try:
            now = await confirm()
        except Exception:  # cannot tell: every waiter reads
            self._wake()
            return
        # a doubt scheduled by writes during the look stays: the look may not have seen them
        first = self.generation
        if self._confirmed is not None and self._confirmed[1:] == (first, now):
            first = self._confirmed[0]  # doubts in a row that found the same revision
        self._release(lambda seen: seen is ANY or seen != now)
        self._confirmed = (first, self.generation, now)

    def unchanged(self, generation: int, seen: object) -> bool:
        """Whether a poller that noted ``generation`` before it saw the revision ``seen`` has
        nothing to look at: no writes were seen since, or only writes that a doubt's look then
        found had left the revision at ``seen`` (our own heartbeat's writes are doubted just
        as the next heartbeat begins: without this, the poller would look again for them)."""
        if generation == self.generation:
            return True
        confirmed = self._confirmed
        return (
            confirmed is not None
            and confirmed[0] <= generation
            and confirmed[1] == self.generation
            and confirmed[2] == seen
        )

    def _wake(self) -> None:
        if self._later is not None:
            self._later.cancel()
            self._later = None
        self._release(lambda _: True)

    def _release(self, which: Callable[[object], bool]) -> None:
        """A batch of writes was seen: wake the waiters ``which`` picks by what they saw."""
        self.generation += 1
        for waiter, seen in list(self._waiters.items()):
            if not waiter.done() and which(seen):
                waiter.set_result(None)

    def close(self) -> None:
        """Stop watching (waiters still waiting are left to their timeouts)."""
        self._detach()
        self._notify.close()
