"""FLV tags: what a tag carries, how its body is laid out, and how tags are written to a file."""

from __future__ import annotations

import struct
from typing import Any

from cdnrec.engine.flv.amf0 import encode, encode_ecma

AUDIO, VIDEO, SCRIPT = 8, 9, 18
"""FLV tag types (the same numbers as RTMP message types)."""

AVC, HEVC = 7, 12
"""Video codec IDs with a packet type and a composition time (12: the widely used HEVC ID)."""

AAC = 10
"""The audio codec ID with a packet type."""

_HEADER = struct.Struct(">II3x")  # type << 24 | size, ts lo24 << 8 | ts hi8, stream id 0
_PREV = struct.Struct(">I")


class Tag:
    """One FLV tag: its type, timestamp in ms and body (everything after the 11-byte header)."""

    __slots__ = ("av", "body", "ts", "type")

    def __init__(self, type_: int, ts: int, body: bytes) -> None:
        self.type = type_
        self.ts = ts
        self.body = body
        self.av: Any = None
        """The PyAV packet made from this tag, once a PyAV writer needed one."""

    def is_config(self) -> bool:
        """A sequence header (AVC/HEVC decoder configuration or AAC AudioSpecificConfig)."""
        body = self.body
        if len(body) < 2:
            return False
        if self.type == VIDEO:
            return body[0] & 0x0F in (AVC, HEVC) and body[1] == 0
        return self.type == AUDIO and body[0] >> 4 == AAC and body[1] == 0

    def is_media(self) -> bool:
        """A coded audio or video frame (not a config, end-of-sequence or command frame)."""
        body = self.body
        if not body:
            return False
        if self.type == VIDEO:
            if body[0] >> 4 == 5:  # video info/command frame
                return False
            return body[0] & 0x0F not in (AVC, HEVC) or (len(body) > 5 and body[1] == 1)
        if self.type == AUDIO:
            return body[0] >> 4 != AAC or (len(body) > 2 and body[1] == 1)
        return False

    def is_keyframe(self) -> bool:
        """A video key frame (every audio frame counts as one)."""
        return self.type != VIDEO or self.body[0] >> 4 == 1

    def cts(self) -> int:
        """Composition time offset in ms (pts - dts) of an AVC/HEVC frame, else 0."""
        body = self.body
        if self.type != VIDEO or body[0] & 0x0F not in (AVC, HEVC):
            return 0
        v = (body[2] << 16) | (body[3] << 8) | body[4]
        return v - (1 << 24) if v & 0x800000 else v

    def payload_offset(self) -> int:
        """Where the codec's own data starts in the body (what FFmpeg's demuxer returns)."""
        if self.type == VIDEO:
            return 5 if self.body[0] & 0x0F in (AVC, HEVC) else 1
        return 2 if self.body[0] >> 4 == AAC else 1

    def codec_id(self) -> int:
        """The FLV codec ID of an audio or video tag."""
        b0 = self.body[0]
        return b0 & 0x0F if self.type == VIDEO else b0 >> 4


def is_enhanced(tag: Tag) -> bool:
    """An Enhanced RTMP video tag (FourCC codecs), which this reader does not parse."""
    return tag.type == VIDEO and bool(tag.body) and bool(tag.body[0] & 0x80)


def file_header(video: bool, audio: bool) -> bytes:
    """The 9-byte FLV header plus the first (zero) PreviousTagSize."""
    flags = (4 if audio else 0) | (1 if video else 0)
    return b"FLV\x01" + bytes([flags]) + b"\x00\x00\x00\x09" + b"\x00\x00\x00\x00"


def tag_header(type_: int, ts: int, size: int) -> bytes:
    """The 11-byte header of a tag with ``size`` body bytes at ``ts`` ms."""
    return _HEADER.pack((type_ << 24) | size, ((ts & 0xFFFFFF) << 8) | ((ts >> 24) & 0xFF))


def tag_trailer(size: int) -> bytes:
    """The PreviousTagSize that follows a tag with ``size`` body bytes."""
    return _PREV.pack(size + 11)


def tag_bytes(type_: int, ts: int, body: bytes) -> bytes:
    """A whole tag: header, body and trailer."""
    return tag_header(type_, ts, len(body)) + body + tag_trailer(len(body))


class Metadata:
    """An ``onMetaData`` script tag whose duration and file size are filled in at close."""

    def __init__(self, fields: dict[str, Any]) -> None:
        values: dict[str, Any] = {"duration": 0.0, "filesize": 0.0, **fields}
        self.body = encode("onMetaData") + encode_ecma(values)
        self._at = {k: self._offset(k) for k in ("duration", "filesize")}

    def _offset(self, key: str) -> int:
        """Offset in ``body`` of the 8-byte double of ``key``."""
        raw = key.encode()
        return self.body.index(len(raw).to_bytes(2, "big") + raw) + 2 + len(raw) + 1

    def patch_offsets(self, tag_start: int) -> dict[str, int]:
        """File offsets of the duration and filesize doubles when the tag starts at ``tag_start``."""
        return {k: tag_start + 11 + v for k, v in self._at.items()}


DOUBLE = struct.Struct(">d")
"""How the patched metadata values are written."""


class FlvError(ValueError):
    """Bytes that are not an FLV stream."""


class FlvReader:
    """Turns an FLV byte stream (header, then tags) into tags; partial tags wait for more."""

    def __init__(self, max_tag: int = 16 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._header = True
        self.max_tag = max_tag

    def feed(self, data: bytes | bytearray | memoryview) -> list[Tag]:
        """Every tag completed by ``data``, in order."""
        buf = self._buf
        buf += data
        pos = 0
        if self._header:
            if len(buf) < 9:
                return []
            if buf[:3] != b"FLV":
                raise FlvError("the response is not FLV")
            pos = int.from_bytes(buf[5:9], "big") + 4
            self._header = False
        out: list[Tag] = []
        n = len(buf)
        while pos + 11 <= n:
            size = (buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]
            if size > self.max_tag:
                raise FlvError(f"tag of {size} bytes is too long")
            end = pos + 11 + size
            if end + 4 > n:
                break
            ts = (buf[pos + 4] << 16) | (buf[pos + 5] << 8) | buf[pos + 6] | (buf[pos + 7] << 24)
            out.append(Tag(buf[pos] & 0x1F, ts, bytes(buf[pos + 11 : end])))
            pos = end + 4
        del buf[: min(pos, n)]
        return out
