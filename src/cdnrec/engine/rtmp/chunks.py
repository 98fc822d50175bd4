"""RTMP chunk streams: reassembling messages from chunks, and chunking messages to send."""

from __future__ import annotations

from dataclasses import dataclass, field

from cdnrec.engine.flv.tags import Tag

SET_CHUNK_SIZE = 1
"""The protocol control message that changes the peer's chunk size."""


class ChunkError(ValueError):
    """Bytes that break the chunk stream protocol."""


Message = Tag
"""A reassembled RTMP message: its type, timestamp and body, which is all an FLV tag holds (an
audio or video message is handed on as the tag it is; the message stream ID is not kept)."""


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
    """Turns received bytes into messages; incomplete chunks wait for more bytes.

    One loop over the chunks of a read, with what it touches in local variables: this runs for
    every frame of every stream, about two chunks per video frame and one per audio frame.
    """

    def __init__(self, max_message: int = 16 * 1024 * 1024) -> None:
        self.chunk_size = 128
        self.max_message = max_message
        self._streams: dict[int, _Stream] = {}
        self._rest = b""

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Every message completed by ``data``, in order."""
        buf = b"".join((self._rest, data)) if self._rest else bytes(data)
        n = len(buf)
        streams = self._streams
        size = self.chunk_size
        out: list[Message] = []
        pos = 0
        while pos < n:
            b0 = buf[pos]
            fmt, csid = b0 >> 6, b0 & 0x3F
            at = pos + 1
            if csid < 2:
                at += csid + 1
                if at > n:
                    break
                csid = 64 + buf[pos + 1] + (buf[pos + 2] << 8 if csid == 1 else 0)
            cs = streams.get(csid)
            if cs is None:
                if fmt != 0:
                    raise ChunkError(f"chunk stream {csid} starts without a full header")
                cs = streams[csid] = _Stream()
            end = at + _HEADER_LEN[fmt]
            if end > n:
                break
            if fmt < 3:
                field_ = (buf[at] << 16) | (buf[at + 1] << 8) | buf[at + 2]
                extended = field_ == 0xFFFFFF
            else:
                field_, extended = cs.ts_field, cs.extended
            if extended:
                if end + 4 > n:
                    break
                field_ = int.from_bytes(buf[end : end + 4], "big")
                end += 4
            new = cs.left == 0
            if new:
                length = cs.length
                if fmt <= 1:
                    length = (buf[at + 3] << 16) | (buf[at + 4] << 8) | buf[at + 5]
                    if length > self.max_message:
                        raise ChunkError(f"message of {length} bytes is too long")
                take = size if size < length else length
            else:
                take = size if size < cs.left else cs.left
            if end + take > n:
                break
            if new:
                if fmt <= 1:
                    cs.length = length
                    cs.type = buf[at + 6]
                    if fmt == 0:
                        cs.stream_id = int.from_bytes(buf[at + 7 : at + 11], "little")
                cs.ts = field_ if fmt == 0 else (cs.ts + field_) & 0xFFFFFFFF
                cs.left = cs.length
            if fmt < 3:
                cs.ts_field, cs.extended = field_, extended
            pos = end + take
            cs.left -= take
            if cs.left == 0:
                if cs.parts:
                    cs.parts.append(buf[end:pos])
                    body = b"".join(cs.parts)
                    cs.parts = []
                else:
                    body = buf[end:pos]
                out.append(Tag(cs.type, cs.ts, body))
                if cs.type == SET_CHUNK_SIZE and len(body) >= 4:
                    size = self.chunk_size = max(1, int.from_bytes(body[:4], "big") & 0x7FFFFFFF)
            else:
                cs.parts.append(buf[end:pos])
        self._rest = buf[pos:]
        return out


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
