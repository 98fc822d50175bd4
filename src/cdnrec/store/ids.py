"""Random identifiers: internal row ids and the public ids of files."""

from __future__ import annotations

import secrets
import uuid


def new_id() -> str:
    """A row id: 32 lowercase hex characters."""
    return uuid.uuid4().hex


def new_public_id() -> str:
    """A 19-digit decimal file id, shaped like a VOD file id."""
    return str(secrets.randbelow(9 * 10**18) + 10**18)


def new_handle() -> str:
    """A 36-character hex handle for a file."""
    return secrets.token_hex(18)
