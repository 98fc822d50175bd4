"""`cdnrec serve` as a process: HTTP dates without uvicorn's tick, and a prompt stop."""

from __future__ import annotations

import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest

from tests.support.service import free_port, wait_for

CONFIG = """
[server]
listen = "127.0.0.1:{port}"
data_dir = "{data}"
"""


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    config = tmp_path / "cdnrec.toml"
    config.write_text(CONFIG.format(port=port, data=tmp_path / "data"))
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdnrec", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=60)
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    log.close()


def test_every_response_carries_one_current_date_header(
    serving: tuple[subprocess.Popen[bytes], str],
) -> None:
    _, url = serving
    for path in ("/healthz", "/missing"):
        answer = httpx.get(f"{url}{path}", timeout=5)
        dates = answer.headers.get_list("date")
        assert len(dates) == 1, answer.headers
        assert abs(parsedate_to_datetime(dates[0]).timestamp() - time.time()) < 5
    time.sleep(1.1)
    later = httpx.get(f"{url}/healthz", timeout=5).headers["date"]
    assert parsedate_to_datetime(later).timestamp() > parsedate_to_datetime(dates[0]).timestamp()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_service_cleanly(
    serving: tuple[subprocess.Popen[bytes], str], sig: signal.Signals, tmp_path: Path
) -> None:
    """The main loop sleeps without a tick: the signal itself must wake it. The service shuts
    down (its database closed: SQLite folds the WAL back in and removes it); then uvicorn
    raises the signal again: SIGINT ends the process quietly (status 0), SIGTERM as SIGTERM."""
    proc, _ = serving
    data = tmp_path / "data"
    proc.send_signal(sig)
    proc.wait(timeout=20)
    assert proc.returncode == (0 if sig == signal.SIGINT else -sig)
    assert (data / "cdnrec.db").exists()
    assert not (data / "cdnrec.db-wal").exists()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")
def test_the_service_runs_on_two_malloc_arenas(
    serving: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    """`memory.limit_arenas` runs before the service's threads start, and the start log says so."""
    started = [
        line
        for line in (tmp_path / "serve.log").read_text().splitlines()
        if "cdnrec.started" in line
    ]
    assert len(started) == 1, started
    assert "malloc_arenas=2" in started[0]
