"""`kill -9` of the service mid-file: files repaired (also one whose record was not written yet)
and announced once, the task continues."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import av
import httpx

from cdnrec.client import Client
from tests.e2e.helpers import extra
from tests.support.origins import NginxRtmp, publish
from tests.support.receiver import Receiver
from tests.support.service import APP_ID, SECRET, free_port, wait_for

CONFIG = """
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
data_dir = "{data}"

[limits]
media_rps = 1000

[recorder]
poll = 0.2
lease = "2s"

[callbacks]
schedule = [0.3, 0.3, 0.3]
late_interval = 0.5

[[apps]]
app_id = {app_id}
server_secret = "{secret}"
callback_url = "{callback}"

[apps.vendors.Tencent]
sources = ["rtmp://127.0.0.1:{origin}/live/{{stream_id}}"]
formats = ["flv", "mp4", "m3u8"]
interval = "3s"
hls_segment = 1
"""


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cdnrec", "serve", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _files(client: Client, stream_id: str) -> list[dict[str, object]]:
    answer = client.call("DescribeCDNRecordTask", {"StreamId": stream_id, "Vendor": "Tencent"})
    return [f for t in answer["Data"]["Tasks"] for f in t["Files"]]


def _mp4_holds_media(root: Path) -> bool:
    """Whether the newest MP4 partial has a fragment of media on disk (False while a split
    renames it away)."""
    try:
        parts = sorted(root.glob(".partial/*/mp4_*.mp4.part"), key=lambda p: p.stat().st_mtime)
        return bool(parts) and b"moof" in parts[-1].read_bytes()
    except FileNotFoundError:
        return False


def _forget_writing_flv(database: Path) -> None:
    """Remove the record of the FLV file being written, as if the kill came before it was
    written (a file opened at a split waits a moment for the close of the one before): only
    its partial's sidecar tells of it."""
    with sqlite3.connect(database) as db:
        forgotten = db.execute("DELETE FROM files WHERE state = 'writing' AND format = 'flv'")
        assert forgotten.rowcount == 1


def _task(client: Client, stream_id: str) -> dict[str, object]:
    answer = client.call("DescribeCDNRecordTask", {"StreamId": stream_id, "Vendor": "Tencent"})
    task: dict[str, object] = answer["Data"]["Tasks"][0]
    return task


def test_kill_9_mid_file_repairs_announces_once_and_continues(
    tmp_path: Path, origin: NginxRtmp, av_clip: Path, receiver: Receiver, stream_id: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "cdnrec.toml"
    config.write_text(
        CONFIG.format(
            port=port,
            data=tmp_path / "data",
            app_id=APP_ID,
            secret=SECRET,
            callback=receiver.url,
            origin=origin.port,
        )
    )
    publisher = publish(av_clip, origin.url(stream_id))
    log = tmp_path / "service.log"
    proc = _serve(config, log)
    client = Client(url, APP_ID, SECRET)
    try:
        wait_for(lambda: _healthy(url), 30)
        client.call("StartCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Tencent"})
        wait_for(lambda: len(receiver.records()) >= 3, 40)  # the first file of each format
        wait_for(lambda: any(f["State"] == "writing" for f in _files(client, stream_id)), 20)
        # into the middle of a file, once its MP4 holds a fragment: before that an MP4 partial
        # has no media (a fragment is ~1 s, built from reads 1 s apart), and a partial without
        # media is discarded on restart rather than repaired
        wait_for(lambda: _mp4_holds_media(tmp_path / "data" / "files"), 20)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at = time.time()
        _forget_writing_flv(tmp_path / "data" / "cdnrec.db")
        proc = _serve(config, log)
        wait_for(lambda: _healthy(url), 30)
        wait_for(lambda: any(f.get("Repaired") for f in _files(client, stream_id)), 30)
        wait_for(
            lambda: any(int(str(f["BeginTime"])) > killed_at for f in _files(client, stream_id)),
            30,
        )
        client.call("StopCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Tencent"})
        wait_for(lambda: _task(client, stream_id)["State"] == "ended", 30)
        wait_for(
            lambda: all(f["State"] == "announced" for f in _files(client, stream_id)),
            30,
        )
        files = _files(client, stream_id)
        announced = Counter(extra(b)["FileID"] for b in receiver.records())
        assert sorted(announced) == sorted(str(f["FileId"]) for f in files)
        assert set(announced.values()) == {1}, "a file was announced more than once"
        repaired = [f for f in files if f["Repaired"]]
        assert {f["Format"] for f in repaired} == {"flv", "mp4", "m3u8"}
        root = tmp_path / "data" / "files"
        for file in files:
            _assert_valid(root / str(file["Key"]))
    finally:
        client.call("StopCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Tencent"})
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        client.close()
        publisher.stop()


def _assert_valid(path: Path) -> None:
    assert path.is_file(), path
    with av.open(str(path)) as container:
        video = [s for s in container.streams if s.type == "video"]
        packets = [p for p in container.demux(video[0]) if p.size] if video else []
        assert packets, f"{path} has no video packets"
        assert packets[0].is_keyframe, f"{path} does not start on a keyframe"
