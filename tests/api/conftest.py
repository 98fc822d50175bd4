"""Fixtures of the API suites: services built with an injected clock and probe."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cdnrec.config import Settings
from tests.support.api import NOW, FakeClock, Launch
from tests.support.service import RunningService


@pytest.fixture
def clock() -> FakeClock:
    """A clock frozen at NOW (the start of a second)."""
    return FakeClock(float(NOW))


@pytest.fixture
def launch() -> Iterator[Launch]:
    """Start services (`launch(settings, clock=..., probe=...)`); all are stopped at the end."""
    started: list[RunningService] = []

    def start(settings: Settings, **build: Any) -> RunningService:
        running = RunningService(settings, **build).start()
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        running.stop()
