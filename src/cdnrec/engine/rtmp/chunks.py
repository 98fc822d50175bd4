"""RTMP chunk streams: reassembling messages from chunks, and chunking messages to send."""

from __future__ import annotations

from dataclasses import dataclass, field

SET_CHUNK_SIZE = 1
"""The protocol control message that changes the peer's chunk size."""


class ChunkError(ValueError):
    """Bytes that break the chunk stream protocol."""


@dataclass(slots=True)
class Message:
    """A reassembled RTMP message."""

    type: int
    ts: int
    stream_id: int
    body: bytes


@dataclass(slots=True)
class _Stream:
    """What the previous chunk of one chunk stream said (later headers inherit it)."""

    ts: int = 0
    ts_field: int = 0
    length: int = 0
    type: int = 0
    stream_id: int = 0
    extended: bool = False
    left: int = 0
    parts: list[bytes] = field(default_factory=list)


_HEADER_LEN = (11, 7, 3, 0)


class ChunkReader:
    """Turns received bytes into messages; incomplete chunks wait for more bytes."""

    def __init__(self, max_message: int = 16 * 1024 * 1024) -> None:
        self.chunk_size = 128
        self.max_message = max_message
        self._streams: dict[int, _Stream] = {}
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Every message completed by ``data``, in order."""
        buf = self._buf
        buf += data
        out: list[Message] = []
        pos = 0
        while True:
            nxt = self._chunk(buf, pos, out)
            if nxt < 0:
                break
            pos = nxt
        del buf[:pos]
        return out

    def _chunk(self, buf: bytearray, pos: int, out: list[Message]) -> int:
        """Parse one chunk at ``pos``; its end, or -1 when it is not complete yet."""
        n = len(buf)
        if pos >= n:
            return -1
        b0 = buf[pos]
        fmt, csid = b0 >> 6, b0 & 0x3F
        pos += 1
        if csid < 2:
            width = csid + 1
            if pos + width > n:
                return -1
            csid = 64 + buf[pos] + (buf[pos + 1] << 8 if width == 2 else 0)
            pos += width
        cs = self._streams.get(csid)
        if cs is None:
            if fmt != 0:
                raise ChunkError(f"chunk stream {csid} starts without a full header")
            cs = self._streams[csid] = _Stream()
        hl = _HEADER_LEN[fmt]
        if pos + hl > n:
            return -1
        new = cs.left == 0
        if fmt < 3:
            field_ = (buf[pos] << 16) | (buf[pos + 1] << 8) | buf[pos + 2]
            extended = field_ == 0xFFFFFF
        else:
            field_, extended = cs.ts_field, cs.extended
        end = pos + hl
        if extended:
            if end + 4 > n:
                return -1
            field_ = int.from_bytes(buf[end : end + 4], "big")
            end += 4
        if new:
            length = cs.length
            if fmt <= 1:
                length = (buf[pos + 3] << 16) | (buf[pos + 4] << 8) | buf[pos + 5]
                if length > self.max_message:
                    raise ChunkError(f"message of {length} bytes is too long")
            take = min(self.chunk_size, length)
        else:
            take = min(self.chunk_size, cs.left)
        if end + take > n:
            return -1
        if new:
            if fmt <= 1:
                cs.length = length
                cs.type = buf[pos + 6]
                if fmt == 0:
                    cs.stream_id = int.from_bytes(buf[pos + 7 : pos + 11], "little")
            cs.ts = field_ if fmt == 0 else (cs.ts + field_) & 0xFFFFFFFF
            cs.left = cs.length
            cs.parts = []
        if fmt < 3:
            cs.ts_field, cs.extended = field_, extended
        cs.parts.append(bytes(buf[end : end + take]))
        cs.left -= take
        if cs.left == 0:
            body = cs.parts[0] if len(cs.parts) == 1 else b"".join(cs.parts)
            cs.parts = []
            out.append(Message(cs.type, cs.ts, cs.stream_id, body))
            if cs.type == SET_CHUNK_SIZE and len(body) >= 4:
                self.chunk_size = max(1, int.from_bytes(body[:4], "big") & 0x7FFFFFFF)
        return end + take


def chunk(csid: int, msg_type: int, stream_id: int, ts: int, body: bytes, size: int) -> bytes:
    """``body`` as a message on chunk stream ``csid`` (2..63): a full header, then continuations."""
    ts &= 0xFFFFFFFF
    ext = ts >= 0xFFFFFF
    head = bytes([csid]) + min(ts, 0xFFFFFF).to_bytes(3, "big") + len(body).to_bytes(3, "big")
    head += bytes([msg_type]) + stream_id.to_bytes(4, "little")
    extra = ts.to_bytes(4, "big") if ext else b""
    parts = [head + extra + body[:size]]
    for at in range(size, len(body), size):
        parts.append(bytes([0xC0 | csid]) + extra + body[at : at + size])
    return b"".join(parts)
