"""Start → real recording from a live origin → files stored → one signed callback per file."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import av
import httpx

from tests.e2e.conftest import zego_signature
from tests.e2e.helpers import all_files, describe, extra, recording_settings
from tests.support.origins import NginxRtmp, publish
from tests.support.receiver import Receiver
from tests.support.service import SECRET, RunningService, wait_for


def _start(service: RunningService, stream_id: str) -> str:
    with service.client() as client:
        answer = client.call("StartCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Tencent"})
    assert answer["Code"] == 0, answer
    task_id: str = answer["Data"]["Tencent"][0]["TaskId"]
    return task_id


def _stop(service: RunningService, stream_id: str) -> None:
    with service.client() as client:
        answer = client.call("StopCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Tencent"})
    assert answer["Data"]["Tencent"][0]["Code"] == "", answer


def _all_announced(service: RunningService, stream_id: str) -> bool:
    task = describe(service, stream_id)
    files = task.get("Files", [])
    return (
        task.get("State") == "ended"
        and bool(files)
        and all(f["State"] == "announced" for f in files)
    )


def test_recording_is_stored_and_announced_once_per_file(
    tmp_path: Path, origin: NginxRtmp, av_clip: Path, receiver: Receiver, stream_id: str
) -> None:
    publisher = publish(av_clip, origin.url(stream_id))
    service = RunningService(recording_settings(tmp_path, origin, receiver.url)).start()
    try:
        task_id = _start(service, stream_id)
        wait_for(
            lambda: len([b for b in receiver.records() if b["replay_url"].endswith(".flv")]) >= 2,
            40,
        )
        _stop(service, stream_id)
        wait_for(lambda: _all_announced(service, stream_id), 30)
        # each file's checksum is read after its callback was queued, and follows it
        wait_for(lambda: all(f["Sha256"] for f in describe(service, stream_id)["Files"]), 10)
        files = describe(service, stream_id)["Files"]
        bodies = receiver.records()
        assert sorted(extra(b)["FileID"] for b in bodies) == sorted(f["FileId"] for f in files)
        assert {f["Format"] for f in files} == {"flv", "mp4", "m3u8"}
        for body in bodies:
            assert all(isinstance(v, str) for v in body.values()), body
            assert body["signature"] == zego_signature(SECRET, body["timestamp"], body["nonce"])
            assert body["appid"] == "1234567"
            assert body["stream_alias"] == stream_id
            assert int(body["begin_time"]) <= int(body["end_time"])
            assert extra(body)["TaskId"] == task_id
            assert extra(body)["Duration"] > 0
        _check_downloads(bodies, tmp_path, {f["FileId"]: f["Sha256"] for f in files})
    finally:
        service.stop()
        publisher.stop()


def _check_downloads(bodies: list[dict[str, str]], scratch: Path, sums: dict[str, str]) -> None:
    """Each callback's URL serves its file, with the SHA-256 its record holds (an M3U8's is
    the playlist's); a tampered URL serves nothing."""
    with httpx.Client(timeout=10) as http:
        for body in bodies:
            url = body["replay_url"]
            response = http.get(url)
            assert response.status_code == 200, url
            assert hashlib.sha256(response.content).hexdigest() == sums[extra(body)["FileID"]]
            if url.endswith(".m3u8"):
                segment = next(line for line in response.text.splitlines() if line.endswith(".ts"))
                seg = http.get(url.rsplit("/", 1)[0] + "/" + segment)
                assert seg.status_code == 200
                assert len(seg.content) > 0
            tampered = url.replace("/files/1234567/", "/files/1234567/1")
            assert http.get(tampered).status_code in (403, 404)
        mp4 = next(b["replay_url"] for b in bodies if b["replay_url"].endswith(".mp4"))
        local = scratch / "download.mp4"
        local.write_bytes(http.get(mp4).content)
        with av.open(str(local)) as container:
            kinds = {s.type for s in container.streams}
            assert kinds == {"video", "audio"}
            assert container.duration
            assert container.duration > 0


def test_tencent_task_waits_for_a_stream_that_goes_live_later(
    tmp_path: Path, origin: NginxRtmp, av_clip: Path, receiver: Receiver, stream_id: str
) -> None:
    service = RunningService(
        recording_settings(tmp_path, origin, receiver.url, formats=("flv",))
    ).start()
    publisher = None
    try:
        _start(service, stream_id)
        wait_for(lambda: describe(service, stream_id).get("Phase") in ("waiting", "connecting"))
        assert describe(service, stream_id)["State"] in ("pending", "running")
        publisher = publish(av_clip, origin.url(stream_id))
        wait_for(lambda: len(receiver.records()) >= 1, 40)
        _stop(service, stream_id)
        wait_for(lambda: _all_announced(service, stream_id), 30)
        assert all_files(service, stream_id)
    finally:
        service.stop()
        if publisher:
            publisher.stop()


def test_callbacks_survive_a_down_then_failing_receiver_and_a_restart(
    tmp_path: Path, origin: NginxRtmp, av_clip: Path, stream_id: str
) -> None:
    receiver = Receiver()  # not listening yet: connections are refused
    publisher = publish(av_clip, origin.url(stream_id))
    settings = recording_settings(tmp_path, origin, receiver.url, formats=("flv",), interval=2.0)
    service = RunningService(settings).start()
    try:
        _start(service, stream_id)
        wait_for(lambda: len(all_files(service, stream_id)) >= 2, 40)
        _stop(service, stream_id)
        wait_for(lambda: describe(service, stream_id).get("State") == "ended", 30)
        files = [f["FileId"] for f in all_files(service, stream_id)]
        service.stop()
        receiver.status = 500
        receiver.start()
        service = RunningService(settings).start()
        wait_for(lambda: receiver.attempts >= len(files) + 1, 30)
        assert receiver.records() == []
        receiver.status = 200
        wait_for(lambda: len(receiver.records()) >= len(files), 30)
        wait_for(lambda: _all_announced(service, stream_id), 30)
        delivered = [extra(b)["FileID"] for b in receiver.records()]
        assert sorted(delivered) == sorted(files)
    finally:
        service.stop()
        receiver.down()
        publisher.stop()


def test_a_recording_that_cannot_write_fails_the_task_with_the_reason(
    tmp_path: Path, origin: NginxRtmp, av_clip: Path, stream_id: str
) -> None:
    publisher = publish(av_clip, origin.url(stream_id))
    settings = recording_settings(tmp_path, origin, None, formats=("flv",))
    settings.storage_root().parent.mkdir(parents=True, exist_ok=True)
    settings.storage_root().write_text("not a folder")  # the storage root cannot be created
    service = RunningService(settings).start()
    try:
        _start(service, stream_id)
        wait_for(lambda: describe(service, stream_id).get("State") == "failed", 30)
        task = describe(service, stream_id)
        assert task["Phase"] == "failed"
        assert "Error" in task["Detail"]
        with service.client() as client:
            again = client.call("StartCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Tencent"})
        assert again["Data"]["Tencent"][0]["TaskId"] != task["TaskId"], (
            "a failed task is not reused"
        )
    finally:
        service.stop()
        publisher.stop()


def test_files_left_without_a_checksum_are_read_back_at_the_next_start(
    tmp_path: Path, origin: NginxRtmp, av_clip: Path, receiver: Receiver, stream_id: str
) -> None:
    """A process that stops between a file's callback and its checksum leaves the file without
    one (here: its checksums are erased while the service is down); the next start reads the
    files back."""
    publisher = publish(av_clip, origin.url(stream_id))
    settings = recording_settings(tmp_path, origin, receiver.url, formats=("flv", "m3u8"))
    service = RunningService(settings).start()
    try:
        _start(service, stream_id)
        wait_for(lambda: len(receiver.records()) >= 2, 40)
        _stop(service, stream_id)
        wait_for(lambda: _all_announced(service, stream_id), 30)
        wait_for(lambda: all(f["Sha256"] for f in describe(service, stream_id)["Files"]), 10)
        before = {f["FileId"]: f["Sha256"] for f in describe(service, stream_id)["Files"]}
        service.stop()
        with sqlite3.connect(tmp_path / "cdnrec.db") as db:
            assert db.execute("UPDATE files SET sha256 = NULL").rowcount == len(before)
        service = RunningService(settings).start()
        wait_for(lambda: all(f["Sha256"] for f in describe(service, stream_id)["Files"]), 20)
        after = {f["FileId"]: f["Sha256"] for f in describe(service, stream_id)["Files"]}
        assert after == before
    finally:
        service.stop()
        publisher.stop()
