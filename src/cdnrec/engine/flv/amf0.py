"""AMF0, the value encoding of RTMP commands and FLV script tags (only what RTMP play needs)."""

from __future__ import annotations

import struct
from typing import Any

_NUMBER, _BOOL, _STRING, _OBJECT, _NULL, _UNDEFINED = 0x00, 0x01, 0x02, 0x03, 0x05, 0x06
_ECMA, _END, _STRICT, _DATE, _LONG_STRING = 0x08, 0x09, 0x0A, 0x0B, 0x0C
_DOUBLE = struct.Struct(">d")


class AmfError(ValueError):
    """Bytes that are not valid AMF0 (or use a type this decoder does not know)."""


def _key(name: str) -> bytes:
    raw = name.encode()
    return len(raw).to_bytes(2, "big") + raw


def encode(value: Any) -> bytes:
    """One AMF0 value: None, bool, int/float, str, dict (object) or list (strict array)."""
    if value is None:
        return bytes([_NULL])
    if isinstance(value, bool):
        return bytes([_BOOL, int(value)])
    if isinstance(value, int | float):
        return bytes([_NUMBER]) + _DOUBLE.pack(float(value))
    if isinstance(value, str):
        raw = value.encode()
        if len(raw) > 0xFFFF:
            return bytes([_LONG_STRING]) + len(raw).to_bytes(4, "big") + raw
        return bytes([_STRING]) + len(raw).to_bytes(2, "big") + raw
    if isinstance(value, dict):
        body = b"".join(_key(k) + encode(v) for k, v in value.items())
        return bytes([_OBJECT]) + body + b"\x00\x00" + bytes([_END])
    if isinstance(value, list | tuple):
        return bytes([_STRICT]) + len(value).to_bytes(4, "big") + b"".join(map(encode, value))
    raise TypeError(f"AMF0 cannot encode {type(value).__name__}")


def encode_ecma(values: dict[str, Any]) -> bytes:
    """An AMF0 ECMA array (what FLV ``onMetaData`` carries)."""
    body = b"".join(_key(k) + encode(v) for k, v in values.items())
    return bytes([_ECMA]) + len(values).to_bytes(4, "big") + body + b"\x00\x00" + bytes([_END])


def decode_all(data: bytes) -> list[Any]:
    """Every value in ``data`` in order (a command: name, transaction id, arguments)."""
    out: list[Any] = []
    pos = 0
    while pos < len(data):
        value, pos = _decode(data, pos)
        out.append(value)
    return out


def _need(data: bytes, pos: int, n: int) -> None:
    if pos + n > len(data):
        raise AmfError("truncated AMF0 value")


def _string(data: bytes, pos: int, width: int) -> tuple[str, int]:
    _need(data, pos, width)
    n = int.from_bytes(data[pos : pos + width], "big")
    pos += width
    _need(data, pos, n)
    return data[pos : pos + n].decode("utf-8", "replace"), pos + n


def _props(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    while True:
        key, pos = _string(data, pos, 2)
        _need(data, pos, 1)
        if not key and data[pos] == _END:
            return out, pos + 1
        out[key], pos = _decode(data, pos)


def _decode(data: bytes, pos: int) -> tuple[Any, int]:
    _need(data, pos, 1)
    marker = data[pos]
    pos += 1
    if marker == _NUMBER:
        _need(data, pos, 8)
        return _DOUBLE.unpack_from(data, pos)[0], pos + 8
    if marker == _BOOL:
        _need(data, pos, 1)
        return bool(data[pos]), pos + 1
    if marker == _STRING:
        return _string(data, pos, 2)
    if marker == _LONG_STRING:
        return _string(data, pos, 4)
    if marker in (_NULL, _UNDEFINED):
        return None, pos
    if marker == _OBJECT:
        return _props(data, pos)
    if marker == _ECMA:
        _need(data, pos, 4)
        return _props(data, pos + 4)
    if marker == _STRICT:
        _need(data, pos, 4)
        count = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        items = []
        for _ in range(count):
            item, pos = _decode(data, pos)
            items.append(item)
        return items, pos
    if marker == _DATE:
        _need(data, pos, 10)
        return _DOUBLE.unpack_from(data, pos)[0], pos + 10
    raise AmfError(f"AMF0 type 0x{marker:02x} is not supported")
