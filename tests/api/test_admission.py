"""Admission control (product.md §6): when every recorder is full, Start refuses new streams per
stream, in each vendor's shape, instead of overloading the recorders."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from cdnrec.admission import FULL
from cdnrec.config import Vendor
from cdnrec.store import TaskState
from cdnrec.store.notify import APPLICATION_NAME
from tests.api.test_records import UNLIMITED, Api
from tests.support.api import FakeClock, Launch, LiveStreams
from tests.support.service import make_settings, wait_for


def serve(tmp_path: Path, launch: Launch, clock: FakeClock, *, role: str, capacity: int = 2) -> Api:
    """A service of `role` whose recorder (if any) may hold `capacity` recordings; sources are
    unreachable, so Tencent tasks wait for their stream and keep their place."""
    probe = LiveStreams(("w1", "w2", "h1", "h2"))
    settings = make_settings(
        tmp_path,
        limits=UNLIMITED,
        server={"role": role},
        recorder={"capacity": capacity},
    )
    return Api(launch(settings, clock=clock, probe=probe), clock, probe)


def tencent_codes(answer: dict[str, object]) -> list[tuple[str, str]]:
    assert answer["Code"] == 0, answer
    entries = answer["Data"]["Tencent"]  # type: ignore[index]
    return [(e["StreamName"], e["Code"]) for e in entries]


def test_a_full_recorder_refuses_new_streams_but_not_those_it_records(
    tmp_path: Path, launch: Launch, clock: FakeClock
) -> None:
    api = serve(tmp_path, launch, clock, role="all")
    answer = api.start("Tencent", "s1", "s2", "s3")
    assert tencent_codes(answer) == [
        ("s1", ""),
        ("s2", ""),
        ("s3", "LimitExceeded.MaximumRunningTask"),
    ]
    assert answer["Data"]["Tencent"][2]["Message"] == FULL
    assert answer["Data"]["Tencent"][2]["TaskId"] == ""
    assert api.active(Vendor.TENCENT, "s3") is None
    # Start is idempotent: streams already recorded are answered as before
    assert tencent_codes(api.start("Tencent", "s2", "s1")) == [("s2", ""), ("s1", "")]


def test_ws_and_huawei_streams_refused_for_room_get_503(
    tmp_path: Path, launch: Launch, clock: FakeClock
) -> None:
    api = serve(tmp_path, launch, clock, role="all", capacity=1)
    ws = api.start("Ws", "w1", "w2")["Data"]["Ws"]["list"]
    assert [(e["id"], e["task"], e["http_code"]) for e in ws] == [
        ("w1", "mp4", 200),
        ("w1", "flv", 200),
        ("w2", "mp4", 503),
        ("w2", "flv", 503),
    ]
    assert {e["msg"] for e in ws if e["id"] == "w2"} == {FULL}
    [h1] = api.start("Huawei", "h1")["Data"]["Huawei"]
    assert (h1["StreamName"], h1["Code"], h1["Message"]) == ("h1", 503, FULL)


def test_a_place_is_free_again_once_a_stopped_recording_ended(
    tmp_path: Path, launch: Launch, clock: FakeClock
) -> None:
    api = serve(tmp_path, launch, clock, role="all", capacity=1)
    assert tencent_codes(api.start("Tencent", "s1")) == [("s1", "")]
    assert tencent_codes(api.start("Tencent", "s2")) == [("s2", "LimitExceeded.MaximumRunningTask")]
    [stopped] = api.stop("Tencent", "s1")["Data"]["Tencent"]
    assert stopped["Code"] == ""
    wait_for(lambda: {t.state for t in api.tasks()} == {TaskState.ENDED})
    # the recorders' room is read again at most a second later
    wait_for(lambda: tencent_codes(api.start("Tencent", "s2")) == [("s2", "")])


def test_an_api_process_counts_the_room_of_recorder_processes(
    tmp_path: Path, launch: Launch, clock: FakeClock
) -> None:
    recorder = serve(tmp_path, launch, clock, role="recorder", capacity=1)
    api = serve(tmp_path, launch, clock, role="api")
    assert tencent_codes(api.start("Tencent", "s1", "s2")) == [
        ("s1", ""),
        ("s2", "LimitExceeded.MaximumRunningTask"),
    ]
    wait_for(lambda: [t.owner for t in api.tasks()] != [None])  # the recorder took s1
    recorder.running.stop()
    # no recorder is alive: Start queues the stream, and a recorder that comes takes it
    wait_for(lambda: tencent_codes(api.start("Tencent", "s2")) == [("s2", "")])
    assert api.active(Vendor.TENCENT, "s2") is not None


def test_a_recorder_process_hears_of_a_start_at_once_on_postgresql(
    tmp_path: Path, launch: Launch, clock: FakeClock, postgres_url: str
) -> None:
    """A StartCDNRecord answered by an API process reaches a recorder process by NOTIFY: it
    claims the task long before its next poll (an hour away here)."""

    def on_postgres(role: str, poll: float) -> Api:
        settings = make_settings(
            tmp_path / role,
            limits=UNLIMITED,
            server={"role": role},
            database={"url": postgres_url},
            recorder={"poll": poll},
        )
        return Api(launch(settings, clock=clock, probe=LiveStreams()), clock, LiveStreams())

    recorder = on_postgres("recorder", 3600.0)
    api = on_postgres("api", 0.5)
    recorder_owner = recorder.running.service.supervisor.owner  # type: ignore[union-attr]
    assert tencent_codes(api.start("Tencent", "n1")) == [("n1", "")]
    wait_for(lambda: [t.owner for t in api.tasks()] == [recorder_owner], timeout=10)
    [stopped] = api.stop("Tencent", "n1")["Data"]["Tencent"]
    assert stopped["Code"] == ""
    wait_for(lambda: [t.state for t in api.tasks()] == [TaskState.ENDED], timeout=10)
    # the listening connection is cut: the recorder connects again and hears the next Start
    assert asyncio.run(_terminate_listeners(postgres_url)) == 1
    assert tencent_codes(api.start("Tencent", "n2")) == [("n2", "")]
    wait_for(lambda: recorder_owner in [t.owner for t in api.tasks()], timeout=15)


async def _terminate_listeners(url: str) -> int:
    """Cut cdnrec's listening connections to the database at `url`; how many there were."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return len(
            await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = $1",
                APPLICATION_NAME,
            )
        )
    finally:
        await conn.close()
