"""A recorder's writes in one transaction: its files' changes, the checksums read back since its
last write, and its heartbeat, each of them optional (decision 0016).

Alone, each was a transaction of its own: a hand-over to the store's thread and back and a commit.
Together they cost about one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from cdnrec.store.database import Database, transaction
from cdnrec.store.files import Closing, write_checksums, write_files
from cdnrec.store.models import Delivery, RecordedFile
from cdnrec.store.recorders import Beat, write_beat


@dataclass(frozen=True)
class Round:
    """What one transaction of a recorder writes."""

    opened: Sequence[RecordedFile] = ()
    closed: Sequence[Closing] = ()
    now_ms: int = 0
    """When the callbacks of files closed as published fall due."""
    checksums: Sequence[tuple[str, str]] = ()
    """(key, SHA-256 hex digest) of files read back."""
    beat: Beat | None = None


@dataclass(frozen=True)
class Written:
    """What a round's transaction did."""

    queued: list[Delivery] | None
    """The callbacks queued for the closed files (None: not known which, ``insert_once``)."""
    held: set[str] | None
    """The tasks of the beat's ``held`` whose lease was renewed (None: no beat)."""


async def write_round(engine: Database, round_: Round) -> Written:
    """Write ``round_`` in one transaction."""
    return await transaction(engine, _write, round_)


def _write(conn: Connection, r: Round) -> Written:
    queued = write_files(conn, r.opened, r.closed, r.now_ms)
    write_checksums(conn, r.checksums)
    return Written(queued, None if r.beat is None else write_beat(conn, r.beat))
