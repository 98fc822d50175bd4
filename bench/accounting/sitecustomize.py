"""CPU accounting inside a ``cdnrec serve`` process, for ``engine_threads.py --account``.

Python imports this module at start when its folder is on ``PYTHONPATH``; it does nothing unless
``CDNREC_ACCOUNT`` names a file. Then, once the service's event loop starts:

* every asyncio task's steps are timed in thread CPU time, summed by the task's coroutine;
* every call on the SQLite thread (``ThreadedEngine._call``) likewise, by the function called
  (a transaction by the function it runs);
* ``SIGUSR2`` writes the sums (nanoseconds) and the step counts to that file as JSON.

What runs outside a task (the loop's own callbacks, transports, the kernel) is not attributed:
compare the sums with the thread's whole CPU time (``engine_threads.py`` prints both).
"""

from __future__ import annotations

import asyncio
import collections.abc
import json
import os
import signal
import time
from collections import Counter
from typing import Any

SPENT: Counter[str] = Counter()
STEPS: Counter[str] = Counter()
_cpu = time.thread_time_ns


class _Timed(collections.abc.Coroutine):  # type: ignore[type-arg]
    """A coroutine whose steps add their thread CPU time to ``SPENT[key]``."""

    __slots__ = ("_coro", "_key")

    def __init__(self, coro: Any, key: str) -> None:
        self._coro, self._key = coro, key

    def send(self, value: Any) -> Any:
        t = _cpu()
        try:
            return self._coro.send(value)
        finally:
            SPENT[self._key] += _cpu() - t
            STEPS[self._key] += 1

    def throw(self, *exc: Any) -> Any:
        t = _cpu()
        try:
            return self._coro.throw(*exc)
        finally:
            SPENT[self._key] += _cpu() - t

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Any:
        return self


def _task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
    key = "task " + getattr(coro, "__qualname__", type(coro).__name__)
    return asyncio.Task(_Timed(coro, key), loop=loop, **kw)


def _statement(statement: Any) -> str:
    """A short name of a statement: its verb and first table."""
    verb = type(statement).__name__.lower()
    tables = [t.name for t in getattr(statement, "get_final_froms", list)()]
    table = getattr(getattr(statement, "table", None), "name", None)
    return f"{verb} {table or (tables[0] if tables else '?')}"


def _name_of(fn: Any, args: tuple[Any, ...]) -> str:
    """What a call on the SQLite thread runs: a transaction's function, or the function (a
    statement executed alone: by its verb and first table)."""
    if getattr(fn, "__name__", "") == "_execute" and args:
        return "sql _execute " + _statement(args[0])
    inner = args[0] if getattr(fn, "__name__", "") == "_committed" and args else fn
    for cell in getattr(inner, "__closure__", None) or ():
        value = cell.cell_contents
        if callable(value) and hasattr(value, "__qualname__"):
            return "sql tx " + value.__qualname__
    return "sql " + getattr(inner, "__qualname__", repr(inner))


def _account_store() -> None:
    from cdnrec.store import threaded

    call = threaded.ThreadedEngine._call
    if getattr(call, "accounted", False):
        return  # a second event loop of the process (asyncio.run again): counted once

    def timed_call(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        key = _name_of(fn, args)
        t = _cpu()
        try:
            return call(self, fn, *args, **kwargs)
        finally:
            SPENT[key] += _cpu() - t
            STEPS[key] += 1

    timed_call.accounted = True  # type: ignore[attr-defined]
    threaded.ThreadedEngine._call = timed_call  # type: ignore[method-assign]


def _dump(*_: Any) -> None:
    with open(os.environ["CDNREC_ACCOUNT"], "w") as f:
        json.dump({"spent_ns": SPENT, "steps": STEPS}, f)


def _install() -> None:
    lazy_init = asyncio.runners.Runner._lazy_init  # type: ignore[attr-defined]

    def accounted(self: Any) -> None:
        lazy_init(self)
        self._loop.set_task_factory(_task_factory)
        _account_store()

    asyncio.runners.Runner._lazy_init = accounted  # type: ignore[attr-defined]
    signal.signal(signal.SIGUSR2, _dump)


if os.environ.get("CDNREC_ACCOUNT"):
    _install()
