"""How full a socket's receive buffer was when a batched read drained it, and when to read next.

A native pull reads its socket about once a second (``flvpull.POLL``); what arrives meanwhile
waits in the kernel's receive buffer. When a second of the stream does not fit there, the sender
stops at the closed TCP window and the recording falls further behind the live stream every
second, without losing a frame until the origin's own buffers overflow. Linux usually grows the
buffer of a connection read this way, but not always: a 1.7 Mbit/s recording once kept only 60 %
of the stream's pace through a 45 s benchmark window, as it does on a connection whose buffer is
held at the 128 KiB it starts with (docs/decisions/0012-receive-backlog.md). So a pull paces its
reads by the share of the buffer each drain took: once a second while that share stays small,
more often when it would not.
"""

from __future__ import annotations

import socket

FILL = 0.4
"""The share of the receive buffer a drain should take at most (the kernel holds data only up to
a part of the buffer's size, its window: about half of it on a new connection)."""


def share_taken(sock: socket.socket, drained: int) -> float:
    """The share of ``sock``'s receive buffer, as big as the kernel has made it now, that
    ``drained`` bytes read at once took (0 when nothing was read: no system call)."""
    if drained <= 0:
        return 0.0
    return drained / max(1, sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def next_pause(waited: float, share: float, longest: float, shortest: float) -> float:
    """Seconds to wait before the next read: as long as the stream's pace, seen in the last read
    (``share`` of the buffer, ``waited`` seconds after the read before), takes to fill ``FILL``
    of the buffer, between ``shortest`` and ``longest`` (nothing read: ``longest``). A pull whose
    second of stream fits easily reads every ``longest``; one whose buffer fills settles on the
    pause that keeps it under ``FILL``."""
    if share <= 0.0:
        return longest
    return min(longest, max(shortest, waited * FILL / share))
