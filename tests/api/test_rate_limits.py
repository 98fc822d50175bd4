"""Per-app rate limits (Code 6) with an injected clock, in one process and across replicas."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cdnrec.client import Client
from tests.support.api import (
    NOW,
    AlwaysLive,
    FakeClock,
    Launch,
    common_pairs,
    encode,
    envelope_of,
    replaced,
    send,
)
from tests.support.service import APP_ID, SECRET, RunningService, make_settings

SOURCE = "rtmp://127.0.0.1:1/live/{stream_id}"
OTHER_APP = 7654321
OTHER_SECRET = "fedcba9876543210fedcba9876543210"


def app(app_id: int, secret: str) -> dict[str, Any]:
    """An app recording Tencent streams."""
    return {
        "app_id": app_id,
        "server_secret": secret,
        "vendors": {"Tencent": {"sources": [SOURCE]}},
    }


def code_of(
    running: RunningService,
    clock: FakeClock,
    action: str = "StopCDNRecord",
    stream: str = "s1",
    *,
    app_id: int = APP_ID,
    secret: str = SECRET,
) -> int:
    """The Code of one signed call at the clock's time."""
    with Client(running.url, app_id, secret, clock=clock) as client:
        answer = client.call(action, {"StreamId[]": [stream], "Vendor": "Tencent"})
    code: int = answer["Code"]
    return code


def codes(running: RunningService, clock: FakeClock, count: int, **kwargs: Any) -> list[int]:
    """The Codes of `count` calls in a row."""
    return [code_of(running, clock, stream=f"s{i}", **kwargs) for i in range(count)]


def burst(running: RunningService, clock: FakeClock, count: int, **kwargs: Any) -> list[int]:
    """The Codes of `count` calls sent at once from many threads."""
    with ThreadPoolExecutor(16) as pool:
        futures = [
            pool.submit(code_of, running, clock, "StopCDNRecord", f"b{i}", **kwargs)
            for i in range(count)
        ]
        return [f.result() for f in futures]


@pytest.fixture
def running(tmp_path: Path, launch: Launch, clock: FakeClock) -> RunningService:
    """A service with the default limits (20/s, 40/s for stream state) and two apps."""
    settings = make_settings(
        tmp_path,
        apps=[app(APP_ID, SECRET), app(OTHER_APP, OTHER_SECRET)],
        server={"role": "api"},
    )
    return launch(settings, clock=clock, probe=AlwaysLive())


def state_code(running: RunningService, clock: FakeClock, stream: str) -> int:
    """The Code of one DescribeRTCStreamState at the clock's time."""
    with Client(running.url, APP_ID, SECRET, clock=clock) as client:
        answer = client.call("DescribeRTCStreamState", {"StreamId": stream, "Sequence": "1"})
    code: int = answer["Code"]
    return code


def test_twenty_per_second_are_admitted_and_the_21st_gets_code_6(
    running: RunningService, clock: FakeClock
) -> None:
    assert codes(running, clock, 20) == [0] * 20
    with Client(running.url, APP_ID, SECRET, clock=clock) as client:
        answer = client.call("StartCDNRecord", {"StreamId[]": ["late"], "Vendor": "Tencent"})
    assert answer["Code"] == 6
    assert answer["Message"] == "request too frequent: at most 20 per second for this app"
    assert answer["Data"] is None
    assert running.run(lambda s: s.store.tasks.list()) == []
    clock.advance(0.999)
    assert code_of(running, clock) == 6
    clock.advance(0.001)
    assert codes(running, clock, 20) == [0] * 20
    assert code_of(running, clock) == 6


def test_a_burst_from_many_connections_admits_exactly_the_limit(
    running: RunningService, clock: FakeClock
) -> None:
    answers = burst(running, clock, 40)
    assert answers.count(0) == 20
    assert answers.count(6) == 20


def test_start_stop_and_describe_share_one_budget(
    running: RunningService, clock: FakeClock
) -> None:
    assert [code_of(running, clock, "StartCDNRecord", f"s{i}") for i in range(10)] == [0] * 10
    assert [code_of(running, clock, "StopCDNRecord", f"s{i}") for i in range(9)] == [0] * 9
    assert code_of(running, clock, "DescribeCDNRecordTask", "s0") == 0
    assert code_of(running, clock, "StartCDNRecord", "s99") == 6
    assert code_of(running, clock, "StopCDNRecord", "s99") == 6
    assert code_of(running, clock, "DescribeCDNRecordTask", "s0") == 6


def test_stream_state_has_its_own_budget_of_40_and_answers_1010(
    running: RunningService, clock: FakeClock
) -> None:
    assert [state_code(running, clock, f"st{i}") for i in range(40)] == [0] * 40
    with Client(running.url, APP_ID, SECRET, clock=clock) as client:
        answer = client.call("DescribeRTCStreamState", {"StreamId": "late", "Sequence": "1"})
    assert answer["Code"] == 1010
    assert answer["Message"] == "request too frequent: at most 40 per second for this app"
    assert codes(running, clock, 21) == [0] * 20 + [6]
    assert state_code(running, clock, "later") == 1010
    clock.advance(1)
    assert state_code(running, clock, "next") == 0


def test_each_app_has_its_own_budget(running: RunningService, clock: FakeClock) -> None:
    assert codes(running, clock, 21)[-1] == 6
    assert codes(running, clock, 20, app_id=OTHER_APP, secret=OTHER_SECRET) == [0] * 20
    assert code_of(running, clock, app_id=OTHER_APP, secret=OTHER_SECRET) == 6


def test_requests_refused_by_the_gateway_do_not_count(
    running: RunningService, clock: FakeClock
) -> None:
    for _ in range(25):
        pairs = common_pairs(APP_ID, SECRET, "StopCDNRecord", NOW)
        bad = replaced(pairs, "Signature", "0" * 32)
        assert envelope_of(send(running.url, encode(bad)))["Code"] == 100000005
        unsupported = common_pairs(APP_ID, SECRET, "TranscodeMedia", NOW)
        assert envelope_of(send(running.url, encode(unsupported)))["Code"] == 100000007
    assert codes(running, clock, 20) == [0] * 20


def test_the_limit_is_configurable(tmp_path: Path, launch: Launch, clock: FakeClock) -> None:
    settings = make_settings(tmp_path, limits={"media_rps": 5}, server={"role": "api"})
    running = launch(settings, clock=clock)
    assert codes(running, clock, 6) == [0, 0, 0, 0, 0, 6]
    clock.advance(1)
    assert codes(running, clock, 6) == [0, 0, 0, 0, 0, 6]


# -- replicas sharing Redis -----------------------------------------------------------------


@pytest.fixture
def replicas(
    tmp_path: Path, launch: Launch, redis_url: str
) -> tuple[RunningService, RunningService, FakeClock, int]:
    """Two API replicas on one database and one Redis, an app of their own and a shared clock.

    The app id and the second are random, so counters of earlier runs in Redis never collide.
    """
    app_id = secrets.randbelow(2**31) + 2**31
    clock = FakeClock(float(NOW + secrets.randbelow(10**8)))
    database = {"url": f"sqlite:///{tmp_path / 'shared.db'}"}
    limits = {"shared": "redis", "redis_url": redis_url}

    def replica(name: str) -> RunningService:
        settings = make_settings(
            tmp_path / name,
            apps=[app(app_id, SECRET)],
            database=database,
            limits=limits,
            server={"role": "api"},
        )
        return launch(settings, clock=clock)

    return replica("a"), replica("b"), clock, app_id


def test_replicas_share_one_budget(
    replicas: tuple[RunningService, RunningService, FakeClock, int],
) -> None:
    a, b, clock, app_id = replicas
    assert codes(a, clock, 10, app_id=app_id) == [0] * 10
    assert codes(b, clock, 10, app_id=app_id) == [0] * 10
    assert code_of(a, clock, app_id=app_id) == 6
    assert code_of(b, clock, app_id=app_id) == 6
    clock.advance(1)
    assert code_of(b, clock, app_id=app_id) == 0
    assert code_of(a, clock, app_id=app_id) == 0


def test_a_burst_across_replicas_admits_exactly_the_limit(
    replicas: tuple[RunningService, RunningService, FakeClock, int],
) -> None:
    a, b, clock, app_id = replicas
    with ThreadPoolExecutor(16) as pool:
        futures = [
            pool.submit(code_of, a if i % 2 else b, clock, "StopCDNRecord", f"x{i}", app_id=app_id)
            for i in range(60)
        ]
        answers = [f.result() for f in futures]
    assert answers.count(0) == 20
    assert answers.count(6) == 40


def test_a_nonce_used_on_one_replica_is_refused_on_the_other(
    replicas: tuple[RunningService, RunningService, FakeClock, int],
) -> None:
    a, b, clock, app_id = replicas
    pairs = common_pairs(app_id, SECRET, "StopCDNRecord", int(clock()))
    query = encode([*pairs, ("StreamId[]", "s1"), ("Vendor", "Tencent")])
    assert envelope_of(send(a.url, query))["Code"] == 0
    replayed = envelope_of(send(b.url, query))
    assert replayed["Code"] == 100000005
    assert "SignatureNonce was already used" in replayed["Message"]
    assert envelope_of(send(a.url, query))["Code"] == 100000005
