"""Business parameters of the recording Actions, validated once into plain values."""

from __future__ import annotations

import re

from cdnrec.api.zego.codes import ApiError, Code
from cdnrec.api.zego.params import Params
from cdnrec.config import Vendor

STREAM_ID = re.compile(r"\A[A-Za-z0-9_-]{1,256}\Z")  # \A…\Z: `$` would let "a\n" in
TENCENT_WINDOW = 86400


def vendor(params: Params) -> Vendor:
    """The `Vendor` parameter; unknown vendors are a CDN type mismatch (Code 4)."""
    raw = params.first("Vendor")
    if raw is None or not raw.strip():
        raise ApiError(Code.BAD_PARAMETER, "Vendor is missing")
    for known in Vendor:
        if known.value == raw.strip():
            return known
    choices = ", ".join(v.value for v in Vendor)
    raise ApiError(
        Code.VENDOR_MISMATCH, f"Vendor {raw[:32]!r} is not supported; use one of {choices}"
    )


def stream_ids(params: Params, limit: int) -> list[str]:
    """`StreamId[]` (also `StreamId%5B%5D` and repeated `StreamId`), in order, de-duplicated."""
    given = params.all("StreamId")
    if not given:
        raise ApiError(Code.BAD_PARAMETER, "StreamId[] is missing")
    unique = list(dict.fromkeys(given))
    if len(unique) > limit:
        raise ApiError(
            Code.BAD_PARAMETER, f"at most {limit} StreamId[] per call, got {len(unique)}"
        )
    for stream_id in unique:
        if not STREAM_ID.fullmatch(stream_id):
            shown = stream_id[:40] + ("…" if len(stream_id) > 40 else "")
            raise ApiError(
                Code.BAD_PARAMETER,
                f"StreamId {shown!r} is invalid: use 1-256 characters of A-Z a-z 0-9 - _",
            )
    return unique


def tencent_end_time(params: Params, now: float) -> float | None:
    """`EndTime` for Tencent: Unix seconds in (now, now + 24 h], or None when absent."""
    raw = params.first("EndTime")
    if raw is None or raw.strip() == "":
        return None
    raw = raw.strip()
    if not re.fullmatch(r"[0-9]{1,12}", raw):
        raise ApiError(Code.BAD_PARAMETER, f"EndTime {raw[:20]!r} must be Unix time in seconds")
    end = int(raw)
    if not now < end <= now + TENCENT_WINDOW:
        raise ApiError(
            Code.BAD_PARAMETER, "EndTime must be later than now and at most 24 h from now"
        )
    return float(end)
