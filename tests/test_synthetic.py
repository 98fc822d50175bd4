"""The demo's synthetic live source: ffmpeg's live HLS served over local HTTP."""

from __future__ import annotations

import socket
import struct
import time
import urllib.request
from pathlib import Path

import pytest

from cdnrec.synthetic import SyntheticSource
from tests.support.origins import free_port


def _first_segment(folder: Path, timeout: float = 15.0) -> Path:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        segments = sorted(folder.glob("demo*.ts"))
        if segments:
            return segments[0]
        time.sleep(0.1)
    raise TimeoutError("ffmpeg wrote no HLS segment")


def test_a_reader_that_leaves_mid_segment_is_no_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A recording that reaches its EndTime drops its HLS reader in the middle of a segment: the
    demo's source goes on serving and prints no traceback into the newcomer's terminal."""
    port = free_port()
    source = SyntheticSource(tmp_path / "live", "demo", port=port)
    source.start()
    try:
        segment = _first_segment(tmp_path / "live")
        for _ in range(3):  # ask for the segment, then reset the connection at once
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.sendall(f"GET /{segment.name} HTTP/1.1\r\nHost: demo\r\n\r\n".encode())
        time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/demo.m3u8", timeout=5) as answer:
            playlist = answer.read()
    finally:
        source.stop()
    assert playlist.startswith(b"#EXTM3U")
    assert "Traceback" not in capfd.readouterr().err
