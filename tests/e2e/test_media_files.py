"""SearchMedia, DeleteMedia and retention on files cdnrec really recorded from a live source."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from cdnrec.catalog import RetentionSweeper
from tests.e2e.helpers import all_files, recording_settings
from tests.support.origins import NginxRtmp, publish
from tests.support.receiver import Receiver
from tests.support.service import APP_ID, SECRET, RunningService, make_settings, wait_for


async def _future_sweeper(service: Any) -> RetentionSweeper:
    """A sweeper whose clock is two days ahead: every file with 1 d retention has expired."""
    return RetentionSweeper(service.store, service.catalog, clock=lambda: time.time() + 2 * 86400)


def _settings(tmp_path: Path, origin: NginxRtmp, callback_url: str) -> Any:
    source = f"rtmp://127.0.0.1:{origin.port}/live/{{stream_id}}"
    vendor = {"sources": [source], "formats": ["flv", "mp4"], "interval": 2.0, "retention": "1d"}
    app = {
        "app_id": APP_ID,
        "server_secret": SECRET,
        "callback_url": callback_url,
        "vendors": {"Tencent": vendor, "Huawei": vendor, "Ws": vendor},
    }
    base = recording_settings(tmp_path, origin, callback_url)
    return make_settings(
        tmp_path,
        apps=[app],
        callbacks=base.callbacks.model_dump(),
        recorder=base.recorder.model_dump(),
        limits={"media_rps": 1000},
    )


def _record(service: RunningService, vendor: str, stream_id: str, files: int) -> None:
    with service.client() as client:
        assert (
            client.call("StartCDNRecord", {"StreamId[]": [stream_id], "Vendor": vendor})["Code"]
            == 0
        )
        wait_for(lambda: len(_files(client, vendor, stream_id)) >= files, 40)
        client.call("StopCDNRecord", {"StreamId[]": [stream_id], "Vendor": vendor})
        wait_for(lambda: _task(client, vendor, stream_id)["State"] == "ended", 30)


def _task(client: Any, vendor: str, stream_id: str) -> dict[str, Any]:
    answer = client.call("DescribeCDNRecordTask", {"StreamId": stream_id, "Vendor": vendor})
    return dict(answer["Data"]["Tasks"][0])


def _files(client: Any, vendor: str, stream_id: str) -> list[dict[str, Any]]:
    return list(_task(client, vendor, stream_id)["Files"])


def test_search_delete_and_retention(
    tmp_path: Path, origin: NginxRtmp, av_clip: Path, stream_id: str
) -> None:
    receiver = Receiver()  # down: files are stored but not announced yet
    publisher = publish(av_clip, origin.url(stream_id))
    service = RunningService(_settings(tmp_path, origin, receiver.url)).start()
    try:
        _record(service, "Tencent", stream_id, 4)
        _record(service, "Huawei", stream_id, 2)
        client = service.client()
        tencent = _files(client, "Tencent", stream_id)
        sweeper: RetentionSweeper = service.run(_future_sweeper)
        assert service.run(lambda _: sweeper.sweep()) == 0, "unannounced files must stay"

        # SearchMedia, Tencent: paged, newest first, matches the recorded files
        page = client.call("SearchMedia", {"Vendor": "Tencent", "PageSize": "2", "PageNumber": "0"})
        assert page["Code"] == 0, page
        data = page["Data"]["Tencent"]
        assert data["TotalCount"] == len(tencent)
        assert len(data["MediaInfoSet"]) == 2
        every = client.call("SearchMedia", {"Vendor": "Tencent", "PageSize": "100"})["Data"][
            "Tencent"
        ]
        assert sorted(m["FileId"] for m in every["MediaInfoSet"]) == sorted(
            f["FileId"] for f in tencent
        )
        info = every["MediaInfoSet"][0]["BasicInfo"]
        assert info["Name"].startswith(stream_id)
        assert info["ExpireTime"].endswith("Z")
        assert httpx.get(info["MediaUrl"]).status_code == 200
        mp4s = client.call(
            "SearchMedia", {"Vendor": "Tencent", "NamePrefix": stream_id, "PageSize": "100"}
        )
        assert mp4s["Data"]["Tencent"]["TotalCount"] == len(tencent)
        none = client.call("SearchMedia", {"Vendor": "Tencent", "NamePrefix": "zz_"})
        assert none["Data"]["Tencent"]["TotalCount"] == 0
        too_far = client.call(
            "SearchMedia", {"Vendor": "Tencent", "PageSize": "100", "PageNumber": "50"}
        )
        assert too_far["Code"] == 2

        # SearchMedia, Huawei: Keys are ObsObject keys, paged by marker
        first = client.call("SearchMedia", {"Vendor": "Huawei", "MaxKeys": "1"})["Data"]["Huawei"]
        assert len(first["Keys"]) == 1
        assert first["NextMarker"]
        rest = client.call("SearchMedia", {"Vendor": "Huawei", "Marker": first["NextMarker"]})
        keys = [k["Key"] for k in first["Keys"] + rest["Data"]["Huawei"]["Keys"]]
        huawei = _files(client, "Huawei", stream_id)
        assert sorted(keys) == sorted(f["Key"] for f in huawei)
        assert rest["Data"]["Huawei"]["NextMarker"] == ""

        # DeleteMedia: unknown ids change nothing; known ones disappear from search and disk
        victim = tencent[0]
        unknown = client.call(
            "DeleteMedia", {"Vendor": "Tencent", "FileId[]": [victim["FileId"], "123"]}
        )
        assert unknown["Code"] == 41003
        root = tmp_path / "files"
        assert (root / victim["Key"]).exists()
        deleted = client.call("DeleteMedia", {"Vendor": "Tencent", "FileId[]": [victim["FileId"]]})
        assert deleted["Code"] == 0, deleted
        assert not (root / victim["Key"]).exists()
        after = client.call("SearchMedia", {"Vendor": "Tencent", "PageSize": "100"})["Data"][
            "Tencent"
        ]
        assert victim["FileId"] not in {m["FileId"] for m in after["MediaInfoSet"]}
        by_key = client.call(
            "DeleteMedia", {"Vendor": "Huawei", "Media.0.FileId": huawei[0]["Key"]}
        )
        assert by_key["Code"] == 0
        assert not (root / huawei[0]["Key"]).exists()
        too_many = client.call(
            "DeleteMedia", {"Vendor": "Tencent", "FileId[]": [str(i) for i in range(101)]}
        )
        assert too_many["Code"] == 2

        # retention: once announced, expired files go; a recording still being written stays
        receiver.start()
        wait_for(
            lambda: all(
                f["State"] in ("announced", "deleted") for f in all_files(service, stream_id)
            ),
            30,
        )
        with service.client() as c2:
            c2.call("StartCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Ws"})
            wait_for(lambda: any(f["State"] == "writing" for f in _files(c2, "Ws", stream_id)), 30)
        removed = service.run(lambda _: sweeper.sweep())
        assert removed == len(tencent) - 1 + len(huawei) - 1
        assert not any(
            p.is_file() for p in (root / str(APP_ID) / stream_id).rglob("*.flv") if "Ws" in p.name
        )
        writing = [f for f in _files(client, "Ws", stream_id) if f["State"] == "writing"]
        assert writing, "the file being written was kept"
        client.call("StopCDNRecord", {"StreamId[]": [stream_id], "Vendor": "Ws"})
        client.close()
    finally:
        service.stop()
        receiver.down()
        publisher.stop()
