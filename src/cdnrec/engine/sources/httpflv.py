"""An HTTP-FLV download over a plain socket (h11 speaks HTTP), read in batches like RTMP."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import h11

from cdnrec.engine.backlog import share_taken
from cdnrec.engine.flv.tags import FlvError, FlvReader, Tag

_RECV = 64 * 1024  # per read call; a batch of 0.5 s takes a few
_REDIRECTS = 3


class HttpFlvError(Exception):
    """The download failed: refused, not 200, not FLV, closed or timed out."""


class HttpFlvPlay:
    """One live HTTP-FLV download; ``poll()`` returns the tags received since the last call."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.conn = h11.Connection(our_role=h11.CLIENT)
        self.reader = FlvReader()
        self.ended = ""
        self._pending: list[Tag] = []
        self._buf = bytearray(_RECV)
        self.filled = 0.0  # the share of the receive buffer the last poll found waiting

    def open(self, stopping: Callable[[], bool]) -> None:
        """Send the request and read the response head (following redirects); raises on error."""
        url = self.url
        for _ in range(_REDIRECTS + 1):
            location = self._request(url, stopping)
            if location is None:
                assert self.sock is not None
                self.sock.setblocking(False)
                return
            url = urljoin(url, location)
            if urlsplit(url).scheme != "http":
                raise HttpFlvError(f"redirected to a {urlsplit(url).scheme}:// URL")
        raise HttpFlvError("too many redirects")

    def _request(self, url: str, stopping: Callable[[], bool]) -> str | None:
        """One request; the Location of a redirect, or None when the FLV body follows."""
        self.close()
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise HttpFlvError(f"not a plain http:// URL: {parts.scheme}://")
        host, port = parts.hostname, parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.conn = h11.Connection(our_role=h11.CLIENT)
        request = h11.Request(
            method="GET",
            target=target,
            headers=[
                ("Host", parts.netloc.rpartition("@")[2]),
                ("User-Agent", "cdnrec"),
                ("Accept", "*/*"),
                ("Connection", "close"),
            ],
        )
        try:
            self.sock = socket.create_connection((host, port), timeout=self.timeout)
            self.sock.sendall(self.conn.send(request) + self.conn.send(h11.EndOfMessage()))
            return self._head(stopping)
        except HttpFlvError:
            self.close()
            raise
        except FlvError as e:
            self.close()
            raise HttpFlvError(str(e)) from e
        except (OSError, h11.ProtocolError) as e:
            self.close()
            raise HttpFlvError(f"{type(e).__name__}: {e}") from e

    def _head(self, stopping: Callable[[], bool]) -> str | None:
        assert self.sock is not None
        deadline = time.monotonic() + self.timeout
        self.sock.settimeout(min(self.timeout, 0.25))
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                if stopping():
                    raise HttpFlvError("stopped")
                try:
                    n = self.sock.recv_into(self._buf)
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise HttpFlvError(f"no answer within {self.timeout:g} s") from None
                    continue
                self.conn.receive_data(bytes(self._buf[:n]))
            elif isinstance(event, h11.Response):
                if event.status_code in (301, 302, 303, 307, 308):
                    return dict(event.headers).get(b"location", b"").decode() or None
                if event.status_code != 200:
                    raise HttpFlvError(f"HTTP {event.status_code} {event.reason.decode()}")
                self._events()  # body bytes that came with the head
                return None
            elif isinstance(event, h11.ConnectionClosed):
                raise HttpFlvError("the server closed the connection")

    def poll(self) -> list[Tag]:
        """Every tag received so far without blocking; sets ``ended`` when the body ends."""
        sock = self.sock
        buf = self._buf
        drained = 0
        while sock is not None and not self.ended:
            try:
                n = sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self.ended = f"{type(e).__name__}: {e}"
                break
            drained += n
            try:
                self.conn.receive_data(bytes(buf[:n]) if n else b"")
                self._events()
            except (h11.ProtocolError, FlvError) as e:
                self.ended = f"bad HTTP-FLV data: {e}"
            if n == 0:
                self.ended = self.ended or "the server closed the connection"
            if n < len(buf):
                break
        self.filled = share_taken(sock, drained) if sock is not None else 0.0
        tags, self._pending = self._pending, []
        return tags

    def _events(self) -> None:
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Data):
                self._pending.extend(self.reader.feed(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                self.ended = "the stream ended"
                return

    def close(self) -> None:
        """Close the connection (never raises)."""
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
