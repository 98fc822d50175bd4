"""The source interface: open a live URL as a demuxable container."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class SourceError(Exception):
    """The source could not be opened or read (the recorder retries with backoff)."""


def _nothing() -> None:
    return None


@dataclass
class Pull:
    """An open pull: a PyAV input container plus whatever must be released with it."""

    container: Any
    release: Callable[[], None] = field(default=_nothing)

    def close(self) -> None:
        """Close the container and release helpers; never raises."""
        # Closing a broken source must not fail the recording.
        with contextlib.suppress(Exception):
            self.container.close()
        self.release()


class Source(Protocol):
    """A kind of pull URL (RTMP, HTTP-FLV, HLS, SRT)."""

    name: str

    def handles(self, url: str) -> bool:
        """Whether this source kind reads ``url``."""
        ...

    def open(self, url: str, timeout: float) -> Pull:
        """Open ``url``; no single read blocks longer than ``timeout`` s. Raises SourceError."""
        ...
