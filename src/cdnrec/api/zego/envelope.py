"""The response envelope {Code, Message, RequestId, Data} (zego-api.md §1.6)."""

from __future__ import annotations

import secrets
from typing import Any


def new_request_id() -> str:
    """A fresh decimal request id of a 63-bit random number."""
    return str(secrets.randbits(63) | (1 << 62))


def envelope(code: int, message: str, data: Any = None) -> dict[str, Any]:
    """The body of every API answer."""
    return {"Code": code, "Message": message, "RequestId": new_request_id(), "Data": data}
