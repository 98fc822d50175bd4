"""Fixtures of the end-to-end suites: clips, a live origin, a callback receiver."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.media import make_clip
from tests.support.origins import NginxRtmp, nginx_missing
from tests.support.receiver import Receiver

_names = itertools.count()


@pytest.fixture(scope="session")
def av_clip(clip_dir: Path) -> Path:
    """An H.264 + AAC clip (generated once, cached)."""
    return make_clip(clip_dir, "av")


@pytest.fixture(scope="session")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxRtmp]:
    """An nginx-rtmp origin for the session."""
    why = nginx_missing()
    if why:
        pytest.skip(f"NGINX-RTMP TESTS SKIPPED: {why}")
    server = NginxRtmp(tmp_path_factory.mktemp("origin"))
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A callback receiver answering 200."""
    running = Receiver().start()
    yield running
    running.down()


@pytest.fixture
def stream_id() -> str:
    """A fresh stream name."""
    return f"e2e{next(_names)}"


def zego_signature(secret: str, timestamp: str, nonce: str) -> str:
    """The callback signature, written again here from the docs (an independent implementation)."""
    parts = [secret, timestamp, nonce]
    parts.sort()
    return hashlib.sha1("".join(parts).encode("utf-8")).hexdigest()
