"""StartCDNRecord / StopCDNRecord over real HTTP: business codes, vendor shapes, task life."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cdnrec.client import Client
from cdnrec.config import Vendor
from cdnrec.store import Task, TaskState
from tests.support.api import (
    NOW,
    FakeClock,
    Launch,
    LiveStreams,
    common_pairs,
    encode,
    envelope_of,
    send,
)
from tests.support.service import APP_ID, SECRET, RunningService, make_settings

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX36 = re.compile(r"^[0-9a-f]{36}$")
CALL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
SOURCE = "rtmp://127.0.0.1:1/live/{stream_id}"
UNLIMITED = {"media_rps": 100_000}


@dataclass
class Api:
    """A running service with its clock and probe, and a client signing at the service's time."""

    running: RunningService
    clock: FakeClock
    probe: LiveStreams

    def call(
        self,
        action: str,
        params: dict[str, Any],
        *,
        post: bool = False,
        app_id: int = APP_ID,
        secret: str = SECRET,
    ) -> dict[str, Any]:
        """Call `action` and return the envelope (checked for its shape)."""
        with Client(self.running.url, app_id, secret, clock=self.clock) as client:
            answer: dict[str, Any] = client.call(action, params, post=post)
        assert set(answer) == {"Code", "Message", "RequestId", "Data"}
        return answer

    def start(self, vendor: str, *streams: str, **extra: str) -> dict[str, Any]:
        """StartCDNRecord of `streams`."""
        return self.call("StartCDNRecord", {"StreamId[]": list(streams), "Vendor": vendor, **extra})

    def stop(self, vendor: str, *streams: str) -> dict[str, Any]:
        """StopCDNRecord of `streams`."""
        return self.call("StopCDNRecord", {"StreamId[]": list(streams), "Vendor": vendor})

    def raw(self, business: str, action: str = "StartCDNRecord") -> dict[str, Any]:
        """Send business parameters exactly as written after signed common ones."""
        common = encode(common_pairs(APP_ID, SECRET, action, int(self.clock())))
        return envelope_of(send(self.running.url, f"{common}&{business}"))

    def tasks(self) -> list[Task]:
        """Every task in the store, newest first."""
        result: list[Task] = self.running.run(lambda service: service.store.tasks.list())
        return result

    def active(self, vendor: Vendor, stream_id: str) -> Task | None:
        """The active task of a stream."""
        result: Task | None = self.running.run(
            lambda service: service.store.tasks.active_for(APP_ID, vendor, stream_id)
        )
        return result


def serve(
    tmp_path: Path,
    launch: Launch,
    clock: FakeClock,
    *,
    live: tuple[str, ...] = (),
    apps: list[dict[str, Any]] | None = None,
    limits: dict[str, Any] | None = None,
    role: str = "api",
) -> Api:
    """A service with an injected clock and a probe calling `live` streams live.

    The API role by default: no recorder picks the tasks up, so their states stay as the API
    left them.
    """
    probe = LiveStreams(live)
    settings = make_settings(tmp_path, apps=apps, limits=limits or UNLIMITED, server={"role": role})
    return Api(launch(settings, clock=clock, probe=probe), clock, probe)


def one_app(**vendors: dict[str, Any]) -> list[dict[str, Any]]:
    """The test app with exactly these vendor configurations."""
    return [{"app_id": APP_ID, "server_secret": SECRET, "vendors": vendors}]


@pytest.fixture
def api(tmp_path: Path, launch: Launch, clock: FakeClock) -> Api:
    """The default test app (Tencent mp4; Ws mp4+flv; Huawei mp4); streams `up*` are live."""
    return serve(tmp_path, launch, clock, live=("up", "up1", "up2", "w1", "h1"))


# -- Code 2: stream IDs and EndTime -------------------------------------------------------


@pytest.mark.parametrize(
    ("streams", "why"),
    [
        (["../x"], "StreamId '../x' is invalid"),
        (["a/b"], "is invalid"),
        (["ok", "..%2Fx"], "is invalid"),
        (["a" * 257], "is invalid"),
        ([""], "StreamId '' is invalid"),
        (["a b"], "is invalid"),
        (["abc\n"], "is invalid"),
        (["stré"], "is invalid"),
        (["x.flv"], "is invalid"),
        (["\x00"], "is invalid"),
        ([f"s{i}" for i in range(101)], "at most 100 StreamId[] per call, got 101"),
        ([], "StreamId[] is missing"),
    ],
    ids=[
        "dotdot",
        "slash",
        "encoded-slash",
        "257-chars",
        "empty",
        "space",
        "newline",
        "non-ascii",
        "dot",
        "nul",
        "101-ids",
        "none",
    ],
)
@pytest.mark.parametrize("action", ["StartCDNRecord", "StopCDNRecord"])
def test_bad_stream_ids_get_code_2(api: Api, action: str, streams: list[str], why: str) -> None:
    answer = api.call(action, {"StreamId[]": streams, "Vendor": "Tencent"})
    assert answer["Code"] == 2, answer
    assert why in answer["Message"]
    assert api.tasks() == []


def test_the_longest_stream_id_and_the_most_ids_are_accepted(api: Api) -> None:
    longest = "A-z_9" * 51 + "x"
    assert len(longest) == 256
    many = [f"s{i}" for i in range(99)] + [longest]
    answer = api.start("Tencent", *many)
    assert answer["Code"] == 0, answer
    assert [e["StreamName"] for e in answer["Data"]["Tencent"]] == many
    assert len(api.tasks()) == 100


def test_duplicates_count_once_toward_the_id_limit(api: Api) -> None:
    answer = api.start("Tencent", *[f"s{i}" for i in range(100)], "s0", "s1")
    assert answer["Code"] == 0, answer
    assert len(answer["Data"]["Tencent"]) == 100


@pytest.mark.parametrize(
    ("end_time", "why"),
    [
        (str(NOW - 3600), "later than now"),
        (str(NOW), "later than now"),
        (str(NOW + 86401), "at most 24 h"),
        ("tomorrow", "must be Unix time in seconds"),
        (f"{NOW + 60}.5", "must be Unix time in seconds"),
        (str(-(NOW + 60)), "must be Unix time in seconds"),
        (str(NOW + 60) + "000", "must be Unix time in seconds"),
    ],
    ids=["past", "now", "beyond-24h", "words", "fraction", "negative", "millis"],
)
def test_bad_tencent_end_times_get_code_2(api: Api, end_time: str, why: str) -> None:
    answer = api.start("Tencent", "s1", EndTime=end_time)
    assert answer["Code"] == 2, answer
    assert why in answer["Message"]
    assert api.tasks() == []


@pytest.mark.parametrize("offset", [1, 3600, 86400])
def test_a_tencent_end_time_within_24_hours_ends_the_task_then(api: Api, offset: int) -> None:
    answer = api.start("Tencent", "s1", EndTime=str(NOW + offset))
    assert answer["Code"] == 0, answer
    task = api.active(Vendor.TENCENT, "s1")
    assert task is not None
    assert task.deadline_ms == (NOW + offset) * 1000


def test_without_end_time_a_tencent_task_ends_after_the_maximum_duration(api: Api) -> None:
    assert api.start("Tencent", "s1")["Code"] == 0
    task = api.active(Vendor.TENCENT, "s1")
    assert task is not None
    assert task.deadline_ms == (NOW + 86400) * 1000


@pytest.mark.parametrize("vendor", ["Ws", "Huawei"])
@pytest.mark.parametrize("end_time", [str(NOW - 3600), str(NOW + 10**6), "tomorrow", ""])
def test_end_time_is_ignored_for_ws_and_huawei(api: Api, vendor: str, end_time: str) -> None:
    answer = api.start(vendor, "up", EndTime=end_time)
    assert answer["Code"] == 0, answer
    task = api.active(Vendor(vendor), "up")
    assert task is not None
    assert task.deadline_ms == (NOW + 86400) * 1000


# -- Codes 3, 4, 5, 6 ---------------------------------------------------------------------


def test_an_app_with_recording_disabled_gets_code_3(
    tmp_path: Path, launch: Launch, clock: FakeClock
) -> None:
    apps = [{**one_app(Tencent={"sources": [SOURCE]})[0], "enabled": False}]
    api = serve(tmp_path, launch, clock, apps=apps)
    answer = api.start("Tencent", "s1")
    assert answer["Code"] == 3, answer
    assert "recording is disabled" in answer["Message"]
    assert api.tasks() == []


@pytest.mark.parametrize("vendor", ["Aliyun", "tencent", "Wangsu", "Huawei2"])
def test_an_unknown_vendor_gets_code_4(api: Api, vendor: str) -> None:
    answer = api.start(vendor, "s1")
    assert answer["Code"] == 4, answer
    assert "is not supported; use one of Tencent, Ws, Huawei" in answer["Message"]


def test_a_missing_vendor_gets_code_2(api: Api) -> None:
    answer = api.call("StartCDNRecord", {"StreamId[]": ["s1"]})
    assert answer["Code"] == 2
    assert answer["Message"] == "Vendor is missing"


@pytest.mark.parametrize("action", ["StartCDNRecord", "StopCDNRecord"])
def test_a_vendor_the_app_has_no_configuration_for_gets_code_4(
    tmp_path: Path, launch: Launch, clock: FakeClock, action: str
) -> None:
    api = serve(tmp_path, launch, clock, apps=one_app(Tencent={"sources": [SOURCE]}))
    answer = api.call(action, {"StreamId[]": ["s1"], "Vendor": "Ws"})
    assert answer["Code"] == 4, answer
    assert "no CDN recording configured for Ws" in answer["Message"]


@pytest.mark.parametrize(
    ("config", "why"),
    [({"sources": []}, "has no source"), ({"sources": [SOURCE], "formats": []}, "has no format")],
    ids=["no-sources", "no-formats"],
)
def test_an_unworkable_vendor_configuration_gets_code_5(
    tmp_path: Path, launch: Launch, clock: FakeClock, config: dict[str, Any], why: str
) -> None:
    api = serve(tmp_path, launch, clock, apps=one_app(Tencent=config))
    answer = api.start("Tencent", "s1")
    assert answer["Code"] == 5, answer
    assert why in answer["Message"]
    assert api.tasks() == []


def test_too_many_requests_in_a_second_get_code_6(
    tmp_path: Path, launch: Launch, clock: FakeClock
) -> None:
    api = serve(tmp_path, launch, clock, limits={"media_rps": 2})
    assert api.start("Tencent", "s1")["Code"] == 0
    assert api.stop("Tencent", "s1")["Code"] == 0
    answer = api.start("Tencent", "s2")
    assert answer["Code"] == 6, answer
    assert answer["Message"] == "request too frequent: at most 2 per second for this app"
    assert api.active(Vendor.TENCENT, "s2") is None


# -- array encodings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "business",
    [
        "StreamId[]=b&StreamId[]=a&StreamId[]=b&StreamId[]=c&Vendor=Tencent",
        "StreamId%5B%5D=b&StreamId%5B%5D=a&StreamId%5B%5D=b&StreamId%5B%5D=c&Vendor=Tencent",
        "StreamId%5b%5d=b&StreamId%5b%5d=a&StreamId%5b%5d=c&Vendor=Tencent",
        "StreamId=b&StreamId=a&StreamId=c&StreamId=a&Vendor=Tencent",
        "StreamId[]=b&StreamId%5B%5D=a&StreamId=c&Vendor=Tencent",
    ],
    ids=["brackets", "encoded-brackets", "lowercase-encoding", "repeated", "mixed"],
)
def test_stream_id_arrays_in_every_encoding_keep_order_without_duplicates(
    api: Api, business: str
) -> None:
    answer = api.raw(business)
    assert answer["Code"] == 0, answer
    assert [e["StreamName"] for e in answer["Data"]["Tencent"]] == ["b", "a", "c"]
    assert sorted(t.stream_id for t in api.tasks()) == ["a", "b", "c"]


# -- vendor shapes ------------------------------------------------------------------------


def test_tencent_start_answers_one_entry_per_stream_with_string_codes(api: Api) -> None:
    answer = api.start("Tencent", "s1", "s2")
    assert answer["Code"] == 0
    assert answer["Message"] == "success"
    assert list(answer["Data"]) == ["Tencent"]
    entries = answer["Data"]["Tencent"]
    assert [e["StreamName"] for e in entries] == ["s1", "s2"]
    for entry in entries:
        assert set(entry) == {"StreamName", "TaskId", "RequestId", "Code", "Message"}
        assert entry["Code"] == ""
        assert entry["Message"] == ""
        assert UUID.match(entry["RequestId"])
        assert re.fullmatch(r"[A-Za-z0-9]{64,}", entry["TaskId"])
    assert entries[0]["TaskId"] != entries[1]["TaskId"]
    assert entries[0]["RequestId"] != entries[1]["RequestId"]
    stored = api.active(Vendor.TENCENT, "s1")
    assert stored is not None
    assert stored.refs["TaskId"] == entries[0]["TaskId"]
    assert stored.state is TaskState.PENDING


def test_ws_start_answers_one_object_with_an_entry_per_stream_and_format(api: Api) -> None:
    answer = api.start("Ws", "up1", "up2")
    assert answer["Code"] == 0
    assert list(answer["Data"]) == ["Ws"]
    ws = answer["Data"]["Ws"]
    assert set(ws) == {"msg", "http_code", "trace_id", "call_time", "list"}
    assert ws["msg"] is None
    assert ws["http_code"] == 200
    assert UUID.match(ws["trace_id"])
    assert CALL_TIME.match(ws["call_time"])
    pairs = [(e["id"], e["task"]) for e in ws["list"]]
    assert pairs == [("up1", "mp4"), ("up1", "flv"), ("up2", "mp4"), ("up2", "flv")]
    for entry in ws["list"]:
        assert set(entry) == {"task", "id", "http_code", "msg", "persistentId"}
        assert entry["http_code"] == 200
        assert entry["msg"] == "success"
        assert HEX36.match(entry["persistentId"])
    assert len({e["persistentId"] for e in ws["list"]}) == 4
    stored = api.active(Vendor.WS, "up1")
    assert stored is not None
    assert stored.refs["PersistentIds"] == {
        e["task"]: e["persistentId"] for e in ws["list"] if e["id"] == "up1"
    }


def test_huawei_start_answers_one_entry_per_stream_with_int_codes(api: Api) -> None:
    answer = api.start("Huawei", "up1", "up2")
    assert answer["Code"] == 0
    assert list(answer["Data"]) == ["Huawei"]
    entries = answer["Data"]["Huawei"]
    assert [e["StreamName"] for e in entries] == ["up1", "up2"]
    for entry in entries:
        assert set(entry) == {"StreamName", "RequestId", "Code", "Message"}
        assert type(entry["Code"]) is int
        assert entry["Code"] == 0
        assert entry["Message"] == "success"
        assert HEX32.match(entry["RequestId"])
    assert api.active(Vendor.HUAWEI, "up2") is not None


# -- streams that are not live ------------------------------------------------------------


def test_ws_start_of_a_stream_that_is_not_live_fails_for_that_stream_only(api: Api) -> None:
    answer = api.start("Ws", "up", "down")
    assert answer["Code"] == 0, answer
    entries = answer["Data"]["Ws"]["list"]
    assert [(e["id"], e["task"], e["http_code"]) for e in entries] == [
        ("up", "mp4", 200),
        ("up", "flv", 200),
        ("down", "mp4", 404),
        ("down", "flv", 404),
    ]
    assert {e["msg"] for e in entries if e["id"] == "down"} == {"stream is not live"}
    assert {e["persistentId"] for e in entries if e["id"] == "down"} == {""}
    assert api.active(Vendor.WS, "down") is None
    assert api.active(Vendor.WS, "up") is not None


def test_huawei_start_of_a_stream_that_is_not_live_fails_for_that_stream_only(api: Api) -> None:
    answer = api.start("Huawei", "down", "up")
    assert answer["Code"] == 0, answer
    down, up = answer["Data"]["Huawei"]
    assert (down["StreamName"], down["Code"], down["Message"]) == (
        "down",
        404,
        "stream is not live",
    )
    assert (up["StreamName"], up["Code"]) == ("up", 0)
    assert api.active(Vendor.HUAWEI, "down") is None


def test_the_real_probe_finds_an_unreachable_source_not_live(
    tmp_path: Path, launch: Launch, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path, limits=UNLIMITED, server={"role": "api"})
    running = launch(settings, clock=clock)
    with Client(running.url, APP_ID, SECRET, clock=clock) as client:
        answer = client.call("StartCDNRecord", {"StreamId[]": ["s1"], "Vendor": "Huawei"})
    assert answer["Code"] == 0, answer
    [entry] = answer["Data"]["Huawei"]
    assert (entry["Code"], entry["Message"]) == (404, "stream is not live")


def test_tencent_waits_for_a_stream_that_is_not_live(api: Api) -> None:
    answer = api.start("Tencent", "down")
    assert answer["Code"] == 0
    assert answer["Data"]["Tencent"][0]["Code"] == ""
    task = api.active(Vendor.TENCENT, "down")
    assert task is not None
    assert task.state is TaskState.PENDING
    assert api.probe.asked == []


# -- idempotence, stop, restart -----------------------------------------------------------


def test_starting_a_recording_stream_again_returns_the_running_task(api: Api) -> None:
    first = api.start("Tencent", "s1")["Data"]["Tencent"][0]
    again = api.start("Tencent", "s2", "s1")["Data"]["Tencent"]
    assert again[1]["TaskId"] == first["TaskId"]
    assert again[1]["Code"] == ""
    assert len([t for t in api.tasks() if t.stream_id == "s1"]) == 1


def test_ws_start_again_returns_the_same_persistent_ids(api: Api) -> None:
    first = api.start("Ws", "w1")["Data"]["Ws"]["list"]
    again = api.start("Ws", "w1")["Data"]["Ws"]["list"]
    assert [e["persistentId"] for e in again] == [e["persistentId"] for e in first]


def test_start_again_is_idempotent_even_when_the_stream_just_went_away(api: Api) -> None:
    first = api.start("Ws", "w1")["Data"]["Ws"]["list"]
    api.probe.live.discard("w1")
    again = api.start("Ws", "w1")["Data"]["Ws"]["list"]
    assert [(e["http_code"], e["persistentId"]) for e in again] == [
        (200, e["persistentId"]) for e in first
    ]
    assert api.start("Huawei", "h1")["Data"]["Huawei"][0]["Code"] == 0
    api.probe.live.discard("h1")
    assert api.start("Huawei", "h1")["Data"]["Huawei"][0]["Code"] == 0


def test_stop_answers_the_task_it_stopped(api: Api) -> None:
    task_id = api.start("Tencent", "s1")["Data"]["Tencent"][0]["TaskId"]
    answer = api.stop("Tencent", "s1")
    assert answer["Code"] == 0
    [entry] = answer["Data"]["Tencent"]
    assert set(entry) >= {"StreamName", "RequestId", "Code", "Message"}
    assert (entry["StreamName"], entry["TaskId"], entry["Code"]) == ("s1", task_id, "")
    assert UUID.match(entry["RequestId"])
    [task] = api.tasks()
    assert task.state is TaskState.STOPPING
    assert task.stop_ms == NOW * 1000


def test_ws_and_huawei_stop_answer_in_their_shapes(api: Api) -> None:
    started = api.start("Ws", "up")["Data"]["Ws"]["list"]
    stopped = api.stop("Ws", "up")["Data"]["Ws"]["list"]
    assert [(e["task"], e["persistentId"], e["http_code"]) for e in stopped] == [
        (e["task"], e["persistentId"], 200) for e in started
    ]
    api.start("Huawei", "up")
    [entry] = api.stop("Huawei", "up")["Data"]["Huawei"]
    assert (entry["StreamName"], entry["Code"], entry["Message"]) == ("up", 0, "success")


@pytest.mark.parametrize("vendor", ["Tencent", "Ws", "Huawei"])
def test_stop_of_a_stream_with_nothing_active_fails_per_stream(api: Api, vendor: str) -> None:
    api.start("Tencent", "s1")
    answer = api.stop(vendor, "idle", "s1")
    assert answer["Code"] == 0, answer
    data = answer["Data"][vendor]
    if vendor == "Tencent":
        idle, s1 = data
        assert (idle["Code"], idle["Message"]) == (
            "InvalidParameter.TaskNotExist",
            "no active recording for this stream",
        )
        assert (idle["StreamName"], idle["TaskId"]) == ("idle", "")
        assert s1["Code"] == ""
    elif vendor == "Ws":
        assert [(e["id"], e["task"], e["http_code"]) for e in data["list"]] == [
            ("idle", "mp4", 404),
            ("idle", "flv", 404),
            ("s1", "mp4", 404),
            ("s1", "flv", 404),
        ]
    else:
        assert [(e["StreamName"], e["Code"]) for e in data] == [("idle", 404), ("s1", 404)]
    stopped = vendor == "Tencent"
    assert (api.active(Vendor.TENCENT, "s1") is None) is stopped


def test_stop_twice_finds_nothing_the_second_time(api: Api) -> None:
    api.start("Tencent", "s1")
    assert api.stop("Tencent", "s1")["Data"]["Tencent"][0]["Code"] == ""
    assert api.stop("Tencent", "s1")["Data"]["Tencent"][0]["Code"] != ""


def test_start_after_stop_creates_a_new_task(api: Api) -> None:
    first = api.start("Tencent", "s1")["Data"]["Tencent"][0]["TaskId"]
    api.stop("Tencent", "s1")
    second = api.start("Tencent", "s1")["Data"]["Tencent"][0]["TaskId"]
    assert second != first
    states = sorted(t.state.value for t in api.tasks())
    assert states == ["pending", "stopping"]


def test_start_and_stop_accept_a_json_body(api: Api) -> None:
    start = api.call("StartCDNRecord", {"StreamId[]": ["p1", "p2"], "Vendor": "Tencent"}, post=True)
    assert start["Code"] == 0, start
    assert [e["StreamName"] for e in start["Data"]["Tencent"]] == ["p1", "p2"]
    stop = api.call("StopCDNRecord", {"StreamId[]": ["p2"], "Vendor": "Tencent"}, post=True)
    assert stop["Code"] == 0, stop
    assert stop["Data"]["Tencent"][0]["TaskId"] == start["Data"]["Tencent"][1]["TaskId"]


def test_a_json_body_may_name_the_array_with_brackets(api: Api) -> None:
    common = encode(common_pairs(APP_ID, SECRET, "StartCDNRecord", NOW))
    body = b'{"StreamId[]": ["j1", "j2", "j1"], "Vendor": "Huawei", "EndTime": 12}'
    api.probe.live |= {"j1", "j2"}
    response = send(
        api.running.url,
        common,
        method="POST",
        body=body,
        headers={"Content-Type": "application/json"},
    )
    answer = envelope_of(response)
    assert answer["Code"] == 0, answer
    assert [e["StreamName"] for e in answer["Data"]["Huawei"]] == ["j1", "j2"]


def test_a_json_body_with_wrong_types_gets_code_2(api: Api) -> None:
    common = encode(common_pairs(APP_ID, SECRET, "StartCDNRecord", NOW))
    body = b'{"StreamId": [{"id": "x"}], "Vendor": "Tencent"}'
    answer = envelope_of(send(api.running.url, common, method="POST", body=body))
    assert answer["Code"] == 2, answer


def test_tasks_survive_a_restart(tmp_path: Path, launch: Launch, clock: FakeClock) -> None:
    first = serve(tmp_path, launch, clock, role="all")
    task_id = first.start("Tencent", "s1")["Data"]["Tencent"][0]["TaskId"]
    first.running.stop()
    second = serve(tmp_path, launch, clock, role="all")
    assert second.running.url != first.running.url
    again = second.start("Tencent", "s1")["Data"]["Tencent"][0]
    assert again["TaskId"] == task_id
    task = second.active(Vendor.TENCENT, "s1")
    assert task is not None
    assert task.state in {TaskState.PENDING, TaskState.RUNNING}
    assert second.stop("Tencent", "s1")["Data"]["Tencent"][0]["TaskId"] == task_id
