"""ZEGO return codes (zego-api.md §1.7) and the one exception that carries them."""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    """Every code cdnrec answers with."""

    SUCCESS = 0
    BAD_PARAMETER = 2
    NOT_ENABLED = 3
    VENDOR_MISMATCH = 4
    CONFIG_ERROR = 5
    TOO_FREQUENT = 6
    AUTH_FAILED = 7
    REQUEST_FAILED = 1000
    STATE_TOO_FREQUENT = 1010
    FILE_NOT_FOUND = 41003
    STREAM_NOT_FOUND = 41004
    STREAM_ID_RULE = 30009
    HOST_ERROR = 100000000
    APPID_MALFORMED = 100000001
    TIMESTAMP_MISSING = 100000002
    TIMESTAMP_MALFORMED = 100000003
    SIGNATURE_EXPIRED = 100000004
    SIGNATURE_WRONG = 100000005
    ACTION_MISSING = 100000006
    ACTION_UNSUPPORTED = 100000007
    NONCE_MISSING = 100000008
    SIGNATURE_MISSING = 100000009
    APP_UNKNOWN = 100000010
    APP_CONFIG_UNAVAILABLE = 100000011
    BODY_UNREADABLE = 100000012
    VERSION_MISSING = 100000013
    VERSION_UNSUPPORTED = 100000014
    INTERNAL = 100000015


class ApiError(Exception):
    """A request that cdnrec answers with a non-zero code and a specific message."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
