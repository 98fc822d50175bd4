"""MergeMedia, the compose callback and DescribeMediaTask on files cdnrec really recorded."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdnrec.catalog import RetentionSweeper
from cdnrec.client import Client
from cdnrec.media.probe import probe
from tests.e2e.conftest import zego_signature
from tests.e2e.helpers import recording_settings
from tests.support.media import read_packets
from tests.support.origins import NginxRtmp, publish
from tests.support.receiver import Receiver
from tests.support.service import APP_ID, SECRET, RunningService, make_settings, wait_for

FRAME = 1 / 25  # the test clip's frame duration
VENDORS = ("Tencent", "Huawei")
TENCENT_TASK = re.compile(r"^1400341231-EditMedia-[0-9a-f]{32}$")


@dataclass
class Recorded:
    """A service that recorded one live stream for Tencent and Huawei, and its files."""

    tmp: Path
    origin: NginxRtmp
    receiver: Receiver
    service: RunningService
    tencent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    huawei: list[dict[str, Any]] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The local storage root."""
        return self.tmp / "files"

    def settings(self, role: str = "all") -> Any:
        """Settings of (another run of) the service on the same data folder."""
        source = f"rtmp://127.0.0.1:{self.origin.port}/live/{{stream_id}}"
        common = {"sources": [source], "interval": 2.0, "hls_segment": 1.0, "retention": "1d"}
        app = {
            "app_id": APP_ID,
            "server_secret": SECRET,
            "callback_url": self.receiver.url,
            "vendors": {
                "Tencent": {**common, "formats": ["mp4", "mp3", "m3u8"]},
                "Huawei": {**common, "formats": ["mp4"]},
                "Ws": {**common, "formats": ["mp4"]},
            },
        }
        base = recording_settings(self.tmp, self.origin, None)
        return make_settings(
            self.tmp,
            apps=[app],
            callbacks=base.callbacks.model_dump(),
            recorder=base.recorder.model_dump(),
            limits={"media_rps": 1000},
            server={"role": role, "data_dir": str(self.tmp)},
        )

    def client(self) -> Client:
        """A signed client of the current service."""
        return self.service.client()


def _files(client: Client, vendor: str, stream_id: str) -> list[dict[str, Any]]:
    answer = client.call("DescribeCDNRecordTask", {"StreamId": stream_id, "Vendor": vendor})
    return [f for t in answer["Data"]["Tasks"] for f in t["Files"]]


def _done(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in files if f["State"] in ("stored", "announced")]


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory, origin: NginxRtmp, av_clip: Path
) -> Iterator[Recorded]:
    """Record a live stream with a 2 s interval until there are enough files to merge."""
    tmp = tmp_path_factory.mktemp("merge")
    receiver = Receiver().start()
    stream = "mergesrc"
    publisher = publish(av_clip, origin.url(stream))
    rec = Recorded(tmp, origin, receiver, None)  # type: ignore[arg-type]
    rec.service = RunningService(rec.settings()).start()
    try:
        with rec.client() as client:
            for vendor in VENDORS:
                answer = client.call("StartCDNRecord", {"StreamId[]": [stream], "Vendor": vendor})
                assert answer["Code"] == 0, answer

            def enough() -> bool:
                mp4s = [f for f in _done(_files(client, "Tencent", stream)) if f["Format"] == "mp4"]
                huawei = _done(_files(client, "Huawei", stream))
                return len(mp4s) >= 4 and len(huawei) >= 3

            wait_for(enough, 60)
            for vendor in VENDORS:
                client.call("StopCDNRecord", {"StreamId[]": [stream], "Vendor": vendor})
            wait_for(lambda: all(_state(client, v, stream) == "ended" for v in VENDORS), 40)
            wait_for(
                lambda: all(f["State"] == "announced" for f in _all(client, stream) if f["Key"]), 40
            )
            for f in _done(_files(client, "Tencent", stream)):
                rec.tencent.setdefault(f["Format"], []).append(f)
            rec.huawei = [
                f for f in _done(_files(client, "Huawei", stream)) if f["Format"] == "mp4"
            ]
        publisher.stop()
        yield rec
    finally:
        rec.service.stop()
        receiver.down()
        publisher.stop()


def _state(client: Client, vendor: str, stream: str) -> str:
    answer = client.call("DescribeCDNRecordTask", {"StreamId": stream, "Vendor": vendor})
    return str(answer["Data"]["Tasks"][0]["State"])


def _all(client: Client, stream: str) -> list[dict[str, Any]]:
    return _files(client, "Tencent", stream) + _files(client, "Huawei", stream)


def _full(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Files of a whole interval (the last one of a recording may be short)."""
    return [f for f in files if f["Duration"] >= 1.5]


def _describe(client: Client, vendor: str, task_id: str) -> dict[str, Any]:
    answer = client.call("DescribeMediaTask", {"TaskId": task_id, "Vendor": vendor})
    assert answer["Code"] == 0, answer
    data: dict[str, Any] = answer["Data"][vendor]
    return data


def _merge(client: Client, params: dict[str, Any], vendor: str = "Tencent") -> dict[str, Any]:
    answer = client.call("MergeMedia", {"Vendor": vendor, **params})
    assert answer["Code"] == 0, answer
    task_id = answer["Data"][vendor]["TaskId"]
    done = ("FINISH", "FAIL", "SUCCEEDED", "FAILED")
    wait_for(lambda: _describe(client, vendor, task_id)["Status"] in done, 60)
    return _describe(client, vendor, task_id)


def _compose(receiver: Receiver, task_id: str) -> list[dict[str, Any]]:
    return [
        b for b in list(receiver.bodies) if b.get("event") == "compose" and b["task_id"] == task_id
    ]


def _check_timeline(path: Path) -> None:
    """Timestamps rise per stream and the first video packet is a keyframe."""
    packets = read_packets(path)
    for kind in ("video", "audio"):
        dts = [p[2] for p in packets if p[0] == kind]
        assert dts, f"no {kind}"
        assert all(b > a for a, b in itertools.pairwise(dts)), f"{kind} DTS not rising"
    assert next(p for p in packets if p[0] == "video")[4], "first video packet is no keyframe"


def _input_duration(rec: Recorded, files: list[dict[str, Any]]) -> float:
    return sum(probe(rec.root / f["Key"]).duration for f in files)


def test_merge_mp4_callback_search_merge_again_delete(recorded: Recorded) -> None:
    parts = _full(recorded.tencent["mp4"])[:3]
    with recorded.client() as client:
        ids = [f["FileId"] for f in parts]
        task = _merge(client, {"InputFileId[]": ids, "OutputFileName": "joined.mp4"})
        assert task["Status"] == "FINISH", task
        assert TENCENT_TASK.match(task["TaskId"])
        assert task["Event"] == "compose"
        assert task["ThumbnailsUrl"] == []
        file_id = task["FileId"]
        assert file_id.isdigit()
        assert len(file_id) == 19

        # the compose callback: once, signed, every scalar a string, pointing at the file
        wait_for(lambda: _compose(recorded.receiver, task["TaskId"]), 20)
        wait_for(lambda: _delivered(recorded, task), 10)
        [body] = _compose(recorded.receiver, task["TaskId"])
        assert all(isinstance(v, str) for v in body.values())
        assert body["appid"] == str(APP_ID)
        assert body["code"] == "0"
        assert body["file_id"] == file_id
        assert body["signature"] == zego_signature(SECRET, body["timestamp"], body["nonce"])
        replay = httpx.get(body["replay_url"])
        assert replay.status_code == 200

        # the output: valid, plays straight through, as long as its parts
        key = f"{APP_ID}/merged/"
        [path] = list(recorded.root.joinpath(key).rglob("joined.mp4"))
        assert replay.content == path.read_bytes()
        info = probe(path)
        assert info.codecs == ("h264", "aac")
        expected = _input_duration(recorded, parts)
        assert abs(info.duration - expected) <= len(parts) * FRAME, (info.duration, expected)
        _check_timeline(path)

        # it is a file like the recordings: searchable, mergeable, deletable
        found = client.call("SearchMedia", {"Vendor": "Tencent", "FileId[]": [file_id]})
        [media] = found["Data"]["Tencent"]["MediaInfoSet"]
        assert media["BasicInfo"]["Name"] == "joined.mp4"
        again = _merge(
            client, {"InputFileId[]": [file_id, ids[0]], "OutputFileName": "joined-again"}
        )
        assert again["Status"] == "FINISH", again
        [again_path] = list(recorded.root.joinpath(key).rglob("joined-again.mp4"))
        assert (
            abs(
                probe(again_path).duration
                - info.duration
                - probe(recorded.root / parts[0]["Key"]).duration
            )
            <= 2 * FRAME
        )
        deleted = client.call("DeleteMedia", {"Vendor": "Tencent", "FileId[]": [file_id]})
        assert deleted["Code"] == 0, deleted
        assert not path.exists()
        gone = client.call("SearchMedia", {"Vendor": "Tencent", "FileId[]": [file_id]})
        assert gone["Data"]["Tencent"]["MediaInfoSet"] == []
        # the delivery went out exactly once
        assert len(_compose(recorded.receiver, task["TaskId"])) == 1


def _delivered(rec: Recorded, task: dict[str, Any]) -> bool:
    rows = rec.service.run(lambda s: s.store.deliveries.recent())
    return any(
        d.event == "compose" and d.payload["task_id"] == task["TaskId"] and d.state == "delivered"
        for d in rows
    )


def test_merge_to_mp3_and_m3u8(recorded: Recorded) -> None:
    parts = _full(recorded.tencent["mp4"])[:2]
    ids = [f["FileId"] for f in parts]
    expected = _input_duration(recorded, parts)
    with recorded.client() as client:
        mp3 = _merge(client, {"InputFileId[]": ids, "Format": "MP3", "OutputFileName": "sound"})
        assert mp3["Status"] == "FINISH", mp3
        [path] = list(recorded.root.rglob("merged/*/sound.mp3"))
        info = probe(path, "mp3")
        assert info.codecs == ("mp3",)
        assert abs(info.duration - expected) <= 0.1, (info.duration, expected)

        hls = _merge(client, {"InputFileId[]": ids, "Format": "M3U8", "OutputFileName": "hls"})
        assert hls["Status"] == "FINISH", hls
        [playlist] = list(recorded.root.rglob("merged/*/hls.m3u8"))
        text = playlist.read_text()
        assert "#EXT-X-ENDLIST" in text
        segments = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert segments
        assert all(s.startswith("hls/") for s in segments)
        assert all((playlist.parent / s).is_file() for s in segments)
        assert abs(probe(playlist).duration - expected) <= len(parts) * FRAME + 0.1
        assert httpx.get(hls["ReplayUrl"]).status_code == 200

        # an M3U8 recording merges too (MP4 output from the TS segments)
        [m3u8] = recorded.tencent["m3u8"][:1]
        from_hls = _merge(
            client, {"InputFileId[]": [m3u8["FileId"], ids[0]], "OutputFileName": "fromhls"}
        )
        assert from_hls["Status"] == "FINISH", from_hls
        [out] = list(recorded.root.rglob("merged/*/fromhls.mp4"))
        _check_timeline(out)


def test_crop_merge_keeps_the_spans(recorded: Recorded) -> None:
    a, b = _full(recorded.tencent["mp4"])[:2]
    with recorded.client() as client:
        task = _merge(
            client,
            {
                "Type": "1",
                "HandleMediaArgs.0.FileId": a["FileId"],
                "HandleMediaArgs.0.StartTime": "0.52",
                "HandleMediaArgs.0.EndTime": "1.48",
                "HandleMediaArgs.1.FileId": b["FileId"],
                "HandleMediaArgs.1.StartTime": "0.2",
                "OutputFileName": "cropped",
                "ExpireTime": "2",
            },
        )
    assert task["Status"] == "FINISH", task
    [path] = list(recorded.root.rglob("merged/*/cropped.mp4"))
    expected = (1.48 - 0.52) + (probe(recorded.root / b["Key"]).duration - 0.2)
    packets = read_packets(path)
    video = [p for p in packets if p[0] == "video"]
    shown = max(p[3] for p in video) + FRAME - min(p[3] for p in video)
    assert abs(shown - expected) <= 2 * FRAME, (shown, expected)  # one frame per cut
    _check_timeline(path)
    rows = recorded.service.run(
        lambda s: s.store.files.by_key(str(path.relative_to(recorded.root)))
    )
    assert rows.kind == "merge"
    assert rows.expire_ms is not None


def test_huawei_merge_and_describe(recorded: Recorded) -> None:
    keys = [f["Key"] for f in _full(recorded.huawei)[:2]]
    with recorded.client() as client:
        answer = client.call("MergeMedia", {"Vendor": "Huawei", "InputFileId[]": keys})
        assert answer["Code"] == 0, answer
        data = answer["Data"]["Huawei"]
        assert data["TaskId"].isdigit()
        assert re.fullmatch(r"[0-9a-f]{32}", data["RequestId"])
        wait_for(lambda: _describe(client, "Huawei", data["TaskId"])["Status"] == "SUCCEEDED", 60)
        task = _describe(client, "Huawei", data["TaskId"])
        assert re.fullmatch(r"\d{14}", task["CreateTime"])
        assert re.fullmatch(r"\d{14}", task["EndTime"])
        [name] = task["FileName"]
        assert name.startswith(f"{APP_ID}/merged/")
        assert name.endswith(".mp4")
        listed = client.call("SearchMedia", {"Vendor": "Huawei"})["Data"]["Huawei"]["Keys"]
        assert name in {k["Key"] for k in listed}
        none = _describe(client, "Huawei", "123456789")
        assert none["Status"] == "NO_TASK"
        wait_for(lambda: _compose(recorded.receiver, data["TaskId"]), 20)
        assert client.call("DeleteMedia", {"Vendor": "Huawei", "FileId[]": [name]})["Code"] == 0


def test_limits_and_errors(recorded: Recorded) -> None:
    tencent = recorded.tencent["mp4"][0]["FileId"]
    huawei = recorded.huawei[0]["Key"]
    with recorded.client() as client:

        def code(params: dict[str, Any]) -> int:
            return int(client.call("MergeMedia", params)["Code"])

        base = {"Vendor": "Tencent", "OutputFileName": "x"}
        assert code({**base, "InputFileId[]": [tencent] * 11}) == 2
        assert code({**base, "InputFileId[]": [tencent] * 10, "Format": "FLV"}) == 2
        assert code({"Vendor": "Huawei", "InputFileId[]": [huawei] * 21}) == 2
        assert code({"Vendor": "Huawei", "InputFileId[]": [huawei], "Format": "MP3"}) == 2
        assert code({**base, "InputFileId[]": [tencent, "1234567890123456789"]}) == 41003
        assert code({"Vendor": "Huawei", "InputFileId[]": [tencent]}) == 41003
        assert code({"Vendor": "Ws", "InputFileId[]": [tencent]}) == 4
        assert code({"Vendor": "Tencent", "InputFileId[]": [tencent]}) == 2  # no OutputFileName
        assert code({**base, "InputFileId[]": []}) == 2
        assert code({**base, "Type": "2", "InputFileId[]": [tencent]}) == 2
        gap = {
            "Type": "1",
            "HandleMediaArgs.0.FileId": tencent,
            "HandleMediaArgs.2.FileId": tencent,
        }
        assert code({**base, **gap}) == 2
        backwards = {
            "Type": "1",
            "HandleMediaArgs.0.FileId": tencent,
            "HandleMediaArgs.0.StartTime": "3",
            "HandleMediaArgs.0.EndTime": "1",
        }
        assert code({**base, **backwards}) == 2
        assert code({**base, "InputFileId[]": [tencent], "ExpireTime": "-1"}) == 2
        legacy = client.call("MergeMedia", {"Vendor": "Tencent", "InputFile[]": [tencent],
                                            "OutputFile": "legacy"})  # fmt: skip
        assert legacy["Code"] == 0, legacy
        posted = client.call(
            "MergeMedia",
            {"Vendor": "Tencent", "InputFileId[]": [tencent], "OutputFileName": "posted"},
            post=True,
        )
        assert posted["Code"] == 0, posted
        assert client.call("DescribeMediaTask", {"Vendor": "Ws", "TaskId": "x"})["Code"] == 4
        assert client.call("DescribeMediaTask", {"Vendor": "Tencent"})["Code"] == 2


def test_a_crop_past_the_end_fails_with_its_code(recorded: Recorded) -> None:
    a = recorded.tencent["mp4"][0]
    with recorded.client() as client:
        task = _merge(
            client,
            {
                "Type": "1",
                "HandleMediaArgs.0.FileId": a["FileId"],
                "HandleMediaArgs.0.StartTime": "3600",
                "OutputFileName": "nothing",
            },
        )
    assert task["Status"] == "FAIL"
    assert task["FileId"] == ""
    assert "holds no media" in task["Message"]
    wait_for(lambda: _compose(recorded.receiver, task["TaskId"]), 20)
    [body] = _compose(recorded.receiver, task["TaskId"])
    assert body["code"] == "40000"
    assert body["file_id"] == ""
    assert body["replay_url"] == ""
    assert not list(recorded.root.rglob("merged/*/nothing.mp4"))


def test_waiting_job_survives_restart_and_keeps_its_inputs(recorded: Recorded) -> None:
    parts = _full(recorded.tencent["mp4"])[:2]
    recorded.service.stop()
    # an API-only process takes the request; nobody runs jobs there
    recorded.service = RunningService(recorded.settings(role="api")).start()
    with recorded.client() as client:
        answer = client.call(
            "MergeMedia",
            {
                "Vendor": "Tencent",
                "InputFileId[]": [f["FileId"] for f in parts],
                "OutputFileName": "later",
            },
        )
        assert answer["Code"] == 0, answer
        task_id = answer["Data"]["Tencent"]["TaskId"]
        assert _describe(client, "Tencent", task_id)["Status"] == "WAITING"
    # retention two days on: the waiting job's inputs stay, other expired recordings go
    future = RetentionSweeper(
        recorded.service.service.store,  # type: ignore[union-attr]
        recorded.service.service.catalog,  # type: ignore[union-attr]
        clock=lambda: time.time() + 2 * 86400,
    )
    removed = recorded.service.run(lambda _: future.sweep())
    assert removed > 0
    assert all((recorded.root / f["Key"]).exists() for f in parts)
    recorded.service.stop()
    recorded.service = RunningService(recorded.settings()).start()
    with recorded.client() as client:
        wait_for(lambda: _describe(client, "Tencent", task_id)["Status"] == "FINISH", 60)
    wait_for(lambda: _compose(recorded.receiver, task_id), 20)
    [body] = _compose(recorded.receiver, task_id)
    assert body["code"] == "0"
    assert body["signature"] == zego_signature(SECRET, body["timestamp"], body["nonce"])
