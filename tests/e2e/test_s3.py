"""Recording into an S3-compatible bucket: uploaded before the callback, served, searched, deleted."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from cdnrec.config import Settings
from tests.e2e.helpers import extra
from tests.support.origins import NginxRtmp, publish
from tests.support.receiver import Receiver
from tests.support.s3 import S3Server
from tests.support.service import APP_ID, SECRET, RunningService, make_settings, wait_for


def _settings(
    tmp_path: Path,
    origin: NginxRtmp,
    receiver: Receiver,
    s3_server: S3Server,
    bucket: str,
    formats: list[str],
) -> Settings:
    vendor = {
        "sources": [f"rtmp://127.0.0.1:{origin.port}/live/{{stream_id}}"],
        "formats": formats,
        "interval": 2.0,
        "hls_segment": 1.0,
        "storage": "archive",
    }
    app = {
        "app_id": APP_ID,
        "server_secret": SECRET,
        "callback_url": receiver.url,
        "vendors": {"Tencent": vendor},
    }
    return make_settings(
        tmp_path,
        apps=[app],
        storage={"archive": s3_server.settings(bucket)},
        recorder={"poll": 0.2},
        limits={"media_rps": 1000},
    )


def test_files_land_in_the_bucket_before_their_callback(
    tmp_path: Path,
    origin: NginxRtmp,
    av_clip: Path,
    receiver: Receiver,
    s3_server: S3Server,
    stream_id: str,
) -> None:
    bucket = f"rec{uuid.uuid4().hex[:10]}"
    s3 = s3_server.client()
    s3.create_bucket(Bucket=bucket)
    settings = _settings(tmp_path, origin, receiver, s3_server, bucket, ["mp4", "m3u8"])
    publisher = publish(av_clip, origin.url(stream_id))
    service = RunningService(settings).start()
    client = service.client()
    try:
        client.call("StartCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Tencent"})
        wait_for(lambda: len(receiver.records()) >= 2, 40)
        client.call("StopCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Tencent"})
        wait_for(lambda: any(b["replay_url"].endswith(".m3u8") for b in receiver.records()), 30)
        body = next(b for b in receiver.records() if b["replay_url"].endswith(".mp4"))
        objects = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
        search = client.call("SearchMedia", {"Vendor": "Tencent", "PageSize": "100"})
        media = {m["FileId"]: m for m in search["Data"]["Tencent"]["MediaInfoSet"]}
        key = body["replay_url"].split("/", 7)[-1]
        assert key in objects
        assert not (settings.storage_root() / key).exists(), "uploaded files leave the local folder"
        response = httpx.get(body["replay_url"], follow_redirects=True)
        assert response.status_code == 200
        assert response.content == s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        playlist = next(b for b in receiver.records() if b["replay_url"].endswith(".m3u8"))
        text = httpx.get(playlist["replay_url"], follow_redirects=True).text
        segment = next(line for line in text.splitlines() if line.endswith(".ts"))
        seg_url = playlist["replay_url"].rsplit("/", 1)[0] + "/" + segment
        assert httpx.get(seg_url, follow_redirects=True).status_code == 200
        file_id = extra(body)["FileID"]
        assert (
            httpx.get(media[file_id]["BasicInfo"]["MediaUrl"], follow_redirects=True).status_code
            == 200
        )
        deleted = client.call("DeleteMedia", {"Vendor": "Tencent", "FileId[]": [file_id]})
        assert deleted["Code"] == 0
        remaining = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
        assert remaining < objects
        gone = httpx.get(body["replay_url"], follow_redirects=True)
        assert gone.status_code == 404
    finally:
        client.close()
        service.stop()
        publisher.stop()


def test_no_callback_until_the_bucket_takes_the_file(
    tmp_path: Path,
    origin: NginxRtmp,
    av_clip: Path,
    receiver: Receiver,
    s3_server: S3Server,
    stream_id: str,
) -> None:
    bucket = f"late{uuid.uuid4().hex[:10]}"  # does not exist yet: every upload fails
    settings = _settings(tmp_path, origin, receiver, s3_server, bucket, ["flv"])
    publisher = publish(av_clip, origin.url(stream_id))
    service = RunningService(settings).start()
    client = service.client()
    try:
        client.call("StartCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Tencent"})

        def closed_files() -> list[dict[str, object]]:
            answer = client.call(
                "DescribeCDNRecordTask", {"StreamId": stream_id, "Vendor": "Tencent"}
            )
            return [f for f in answer["Data"]["Tasks"][0]["Files"] if f["State"] == "closed"]

        wait_for(lambda: len(closed_files()) >= 2, 40)
        assert receiver.records() == [], "no callback before the file is in its target"
        staged = settings.storage_root() / str(closed_files()[0]["Key"])
        assert staged.exists(), "the file waits in the local folder"
        s3_server.client().create_bucket(Bucket=bucket)
        wait_for(lambda: len(receiver.records()) >= 2, 40)
        keys = {o["Key"] for o in s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]}
        for body in receiver.records():
            assert body["replay_url"].split("/", 7)[-1] in keys
    finally:
        client.call("StopCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Tencent"})
        client.close()
        service.stop()
        publisher.stop()
