"""An RTMP play session over a plain socket: connect, play, then read tags in batches."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from cdnrec.engine.backlog import share_taken
from cdnrec.engine.flv import amf0
from cdnrec.engine.flv.tags import AUDIO, SCRIPT, VIDEO, Tag
from cdnrec.engine.rtmp.chunks import ChunkError, ChunkReader, Message, chunk

_ACK, _USER, _WINDOW, _PEER_BW = 3, 4, 5, 6
_DATA_AMF3, _CMD_AMF3, _DATA, _CMD, _AGGREGATE = 15, 17, 18, 20, 22
_STREAM_EOF, _PING, _PONG = 1, 6, 7
_CHUNK = 4096
_RECV = 64 * 1024  # per read call; a batch of 0.5 s takes a few


class RtmpError(Exception):
    """The session failed: refused, not found, closed, timed out or spoke bad RTMP."""


class Target:
    """Where an rtmp:// URL points: host, port, application and play path."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "rtmp" or not parts.hostname:
            raise RtmpError(f"not a plain rtmp:// URL: {parts.scheme}://")
        path = parts.path.lstrip("/")
        app, _, name = path.partition("/")
        if not app or not name:
            raise RtmpError("an rtmp:// URL needs /application/stream")
        self.host = parts.hostname
        self.port = parts.port or 1935
        self.app = app
        self.play_path = name + (f"?{parts.query}" if parts.query else "")
        netloc = self.host if parts.port is None else f"{self.host}:{self.port}"
        self.tc_url = f"rtmp://{netloc}/{app}"


class RtmpPlay:
    """One live play of one stream; ``poll()`` returns the tags received since the last call.

    The socket is non-blocking after the handshake: the caller decides how often to poll,
    so a recorder reads every ~100 ms in one system call instead of once per frame.
    """

    def __init__(self, url: str, timeout: float) -> None:
        self.target = Target(url)
        self.timeout = timeout
        self.reader = ChunkReader()
        self.sock: socket.socket | None = None
        self.ended = ""
        self._stream_id = 0
        self._window = 2_500_000
        self._received = 0
        self._acked = 0
        self._pending: list[Tag] = []
        self._buf = bytearray(_RECV)
        self.filled = 0.0  # the share of the receive buffer the last poll found waiting

    # -- setup ---------------------------------------------------------------------------------
    def open(self, stopping: Callable[[], bool]) -> None:
        """Connect, handshake, ``connect``, ``createStream`` and ``play``; raises RtmpError."""
        t = self.target
        try:
            self.sock = socket.create_connection((t.host, t.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._handshake()
            self._send(2, 1, 0, _CHUNK.to_bytes(4, "big"))
            self._command(3, 0, "connect", 1, self._connect_args())
            self._await_result(1, stopping)
            self._command(3, 0, "createStream", 2, None)
            result = self._await_result(2, stopping)
            sid = result[3] if len(result) > 3 else None
            self._stream_id = int(sid) if isinstance(sid, int | float) and sid else 1
            self._command(8, self._stream_id, "play", 0, None, t.play_path, -1000)
            buffer_ms = self._stream_id.to_bytes(4, "big") + (3000).to_bytes(4, "big")
            self._send(2, _USER, 0, (3).to_bytes(2, "big") + buffer_ms)
            self._await_play(stopping)
        except OSError as e:
            self.close()
            raise RtmpError(f"{type(e).__name__}: {e}") from e
        except (RtmpError, ChunkError, amf0.AmfError, ValueError, IndexError) as e:
            self.close()
            raise RtmpError(str(e)) from e
        self.sock.setblocking(False)

    def _connect_args(self) -> dict[str, object]:
        t = self.target
        return {
            "app": t.app,
            "flashVer": "LNX 9,0,124,2",
            "tcUrl": t.tc_url,
            "fpad": False,
            "capabilities": 15.0,
            "audioCodecs": 4071.0,
            "videoCodecs": 252.0,
            "videoFunction": 1.0,
        }

    def _handshake(self) -> None:
        assert self.sock is not None
        c1 = bytes(8) + os.urandom(1528)
        self.sock.sendall(b"\x03" + c1)
        s0s1 = self._recv_exact(1 + 1536)
        if s0s1[0] != 3:
            raise RtmpError(f"server answered RTMP version {s0s1[0]}")
        self.sock.sendall(s0s1[1:])  # C2 echoes S1
        self._recv_exact(1536)  # S2

    def _recv_exact(self, n: int) -> bytes:
        assert self.sock is not None
        data = bytearray()
        while len(data) < n:
            got = self.sock.recv(n - len(data))
            if not got:
                raise RtmpError("the server closed the connection during the handshake")
            data += got
        return bytes(data)

    def _await_result(self, txn: int, stopping: Callable[[], bool]) -> list[object]:
        """Read until the ``_result`` of transaction ``txn``; an ``_error`` raises."""
        while True:
            found: list[object] = []
            for msg in self._read_blocking(stopping):  # every message of a batch is handled
                cmd = self._control(msg)
                if cmd and len(cmd) > 1 and cmd[1] == txn and not found:
                    if cmd[0] != "_result":
                        raise RtmpError(f"server refused: {_describe(cmd)}")
                    found = cmd
            if found:
                return found

    def _await_play(self, stopping: Callable[[], bool]) -> None:
        """Read until NetStream.Play.Start (or media: some servers send no status)."""
        while True:
            started = False
            for msg in self._read_blocking(stopping):  # every message of a batch is handled
                code = _status_code(self._control(msg))
                if code == "NetStream.Play.Start" or msg.type in (AUDIO, VIDEO):
                    started = True
                elif code and ("Failed" in code or "NotFound" in code or "BadName" in code):
                    raise RtmpError(f"play refused: {code}")
            if started:
                return

    def _read_blocking(self, stopping: Callable[[], bool]) -> list[Message]:
        assert self.sock is not None
        deadline = time.monotonic() + self.timeout
        self.sock.settimeout(min(self.timeout, 0.25))
        while True:
            if stopping():
                raise RtmpError("stopped")
            try:
                n = self.sock.recv_into(self._buf)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise RtmpError(f"no answer within {self.timeout:g} s") from None
                continue
            if n == 0:
                raise RtmpError("the server closed the connection")
            msgs = self._received_bytes(n)
            if msgs:
                return msgs

    # -- reading -------------------------------------------------------------------------------
    def poll(self) -> list[Tag]:
        """Every tag received so far without blocking; sets ``ended`` when the play is over."""
        sock = self.sock
        if sock is None:
            return []
        buf = self._buf
        drained = 0
        while not self.ended:
            try:
                n = sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self.ended = f"{type(e).__name__}: {e}"
                break
            if n == 0:
                self.ended = "the server closed the connection"
                break
            drained += n
            try:
                for msg in self._received_bytes(n):
                    if msg.type == VIDEO or msg.type == AUDIO:
                        self._pending.append(msg)
                    else:
                        self._other(msg)
            except (ChunkError, amf0.AmfError) as e:
                self.ended = f"bad RTMP data: {e}"
            if n < len(buf):
                break
        self.filled = share_taken(sock, drained)
        tags, self._pending = self._pending, []
        return tags

    def _received_bytes(self, n: int) -> list[Message]:
        self._received += n
        if self._received - self._acked >= self._window // 2:
            self._acked = self._received
            self._send(2, _ACK, 0, (self._received & 0xFFFFFFFF).to_bytes(4, "big"))
        return self.reader.feed(memoryview(self._buf)[:n])

    def _other(self, msg: Message) -> None:
        if msg.type in (_DATA, _DATA_AMF3, _AGGREGATE):
            self._media(msg)
            return
        code = _status_code(self._control(msg))
        if code in ("NetStream.Play.UnpublishNotify", "NetStream.Play.Stop"):
            self.ended = f"the stream ended ({code})"

    def _media(self, msg: Message) -> None:
        if msg.type in (AUDIO, VIDEO):
            self._pending.append(msg)
        elif msg.type == _AGGREGATE:
            self._pending.extend(_split_aggregate(msg))
        else:
            body = msg.body[1:] if msg.type == _DATA_AMF3 else msg.body
            self._pending.append(Tag(SCRIPT, msg.ts, body))

    def _control(self, msg: Message) -> list[object]:
        """Answer protocol control messages; the decoded command of a command message."""
        body = msg.body
        if msg.type == _WINDOW and len(body) >= 4:
            self._window = max(1, int.from_bytes(body[:4], "big"))
        elif msg.type == _PEER_BW and len(body) >= 4:
            self._send(2, _WINDOW, 0, body[:4])
        elif msg.type == _USER and len(body) >= 2:
            event = int.from_bytes(body[:2], "big")
            if event == _PING:
                self._send(2, _USER, 0, _PONG.to_bytes(2, "big") + body[2:6])
            elif event == _STREAM_EOF:
                self.ended = "the stream ended (StreamEOF)"
        elif msg.type in (_CMD, _CMD_AMF3):
            return amf0.decode_all(body[1:] if msg.type == _CMD_AMF3 else body)
        elif msg.type in (AUDIO, VIDEO, _DATA, _DATA_AMF3, _AGGREGATE):
            self._media(msg)
        return []

    # -- sending -------------------------------------------------------------------------------
    def _command(self, csid: int, stream_id: int, name: str, txn: int, *args: object) -> None:
        body = amf0.encode(name) + amf0.encode(txn) + b"".join(amf0.encode(a) for a in args)
        self._send(csid, _CMD, stream_id, body)

    def _send(self, csid: int, msg_type: int, stream_id: int, body: bytes) -> None:
        if self.sock is None:
            return
        data = chunk(csid, msg_type, stream_id, 0, body, _CHUNK if msg_type != 1 else 128)
        try:
            if self.sock.getblocking() or self.sock.gettimeout() is not None:
                self.sock.sendall(data)
            else:
                self._send_nonblocking(data)
        except OSError as e:
            self.ended = self.ended or f"{type(e).__name__}: {e}"

    def _send_nonblocking(self, data: bytes) -> None:
        assert self.sock is not None
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            try:
                view = view[self.sock.send(view) :]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the server does not read") from None
                time.sleep(0.005)

    def close(self) -> None:
        """Close the connection (never raises)."""
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


def _status_code(cmd: list[object]) -> str:
    if len(cmd) >= 4 and cmd[0] == "onStatus" and isinstance(cmd[3], dict):
        return str(cmd[3].get("code", ""))
    return ""


def _describe(cmd: list[object]) -> str:
    info = cmd[3] if len(cmd) > 3 and isinstance(cmd[3], dict) else {}
    return str(info.get("description") or info.get("code") or cmd[0])


def _split_aggregate(msg: Message) -> list[Tag]:
    """The FLV tags inside an aggregate message, re-timed to the message's timestamp."""
    body, pos, out = msg.body, 0, []
    base: int | None = None
    while pos + 11 <= len(body):
        size = int.from_bytes(body[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(body[pos + 4 : pos + 7], "big") | (body[pos + 7] << 24)
        base = ts if base is None else base
        data = body[pos + 11 : pos + 11 + size]
        if len(data) < size:
            break
        out.append(Tag(body[pos], (msg.ts + ts - base) & 0xFFFFFFFF, bytes(data)))
        pos += 11 + size + 4
    return out
