"""Gateway codes of zego-api.md §1.7.1: each provoked alone, everything else valid."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.api import (
    NOW,
    FakeClock,
    common_pairs,
    encode,
    envelope_of,
    replaced,
    send,
    without,
)
from tests.support.service import APP_ID, SECRET, RunningService, make_settings

Pairs = list[tuple[str, str]]
_streams = itertools.count()


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    """The service's clock, frozen at NOW."""
    return FakeClock(float(NOW))


@pytest.fixture(scope="module")
def gateway_service(
    tmp_path_factory: pytest.TempPathFactory, clock: FakeClock
) -> Iterator[RunningService]:
    """One service for the module; the rate limit is raised so that it never interferes."""
    settings = make_settings(
        tmp_path_factory.mktemp("gateway"),
        limits={"media_rps": 100_000},
        server={"role": "api"},
    )
    running = RunningService(settings, clock=clock).start()
    yield running
    running.stop()


def valid(
    action: str = "StartCDNRecord", *, timestamp: int = NOW, nonce: str | None = None
) -> Pairs:
    """A valid, signed StartCDNRecord of a fresh stream."""
    pairs = common_pairs(APP_ID, SECRET, action, timestamp, nonce=nonce)
    return [*pairs, ("StreamId[]", f"gw{next(_streams)}"), ("Vendor", "Tencent")]


def resigned(pairs: Pairs, **changes: str) -> Pairs:
    """`pairs` with common parameters changed, the signature recomputed over the new values."""
    out = [(k, changes.get(k, v)) for k, v in pairs]
    values = dict(out)
    fresh = common_pairs(
        values["AppId"],
        SECRET,
        values["Action"],
        int(values["Timestamp"]),
        nonce=values["SignatureNonce"],
    )
    return replaced(out, "Signature", dict(fresh)["Signature"])


Mutation = Callable[[Pairs], Pairs]

CASES: list[tuple[str, Mutation, int, str]] = [
    ("appid-missing", lambda p: without(p, "AppId"), 100000001, "AppId is missing"),
    ("appid-empty", lambda p: replaced(p, "AppId", ""), 100000001, "AppId is missing"),
    ("appid-letters", lambda p: replaced(p, "AppId", "12a45"), 100000001, "AppId '12a45'"),
    ("appid-too-big", lambda p: replaced(p, "AppId", str(2**32)), 100000001, "unsigned 32-bit"),
    ("appid-zero", lambda p: replaced(p, "AppId", "0"), 100000001, "unsigned 32-bit"),
    ("appid-negative", lambda p: replaced(p, "AppId", "-5"), 100000001, "unsigned 32-bit"),
    ("appid-float", lambda p: replaced(p, "AppId", "1234567.0"), 100000001, "unsigned 32-bit"),
    ("appid-non-ascii-digits", lambda p: replaced(p, "AppId", "١٢٣"), 100000001, "unsigned 32-bit"),
    ("timestamp-missing", lambda p: without(p, "Timestamp"), 100000002, "Timestamp is missing"),
    ("timestamp-empty", lambda p: replaced(p, "Timestamp", " "), 100000002, "Timestamp is missing"),
    (
        "timestamp-letters",
        lambda p: replaced(p, "Timestamp", "yesterday"),
        100000003,
        "Unix time in seconds",
    ),
    (
        "timestamp-fraction",
        lambda p: replaced(p, "Timestamp", f"{NOW}.5"),
        100000003,
        "Unix time in seconds",
    ),
    (
        "timestamp-millis-overflow",
        lambda p: replaced(p, "Timestamp", "9" * 25),
        100000003,
        "Unix time in seconds",
    ),
    ("timestamp-old", lambda p: resigned(p, Timestamp=str(NOW - 601)), 100000004, "600 s"),
    ("timestamp-future", lambda p: resigned(p, Timestamp=str(NOW + 601)), 100000004, "600 s"),
    ("timestamp-millis", lambda p: resigned(p, Timestamp=str(NOW * 1000)), 100000004, "600 s"),
    (
        "signature-wrong",
        lambda p: replaced(p, "Signature", "0" * 32),
        100000005,
        "Signature does not match",
    ),
    (
        "signature-other-secret",
        lambda p: replaced(
            p,
            "Signature",
            dict(
                common_pairs(
                    APP_ID, "f" * 32, "StartCDNRecord", NOW, nonce=dict(p)["SignatureNonce"]
                )
            )["Signature"],
        ),
        100000005,
        "Signature does not match",
    ),
    (
        "signature-over-other-nonce",
        lambda p: replaced(p, "SignatureNonce", "0123456789abcdef"),
        100000005,
        "Signature does not match",
    ),
    ("action-missing", lambda p: without(p, "Action"), 100000006, "Action is missing"),
    ("action-empty", lambda p: replaced(p, "Action", ""), 100000006, "Action is missing"),
    (
        "action-unknown",
        lambda p: replaced(p, "Action", "StartTheWorld"),
        100000007,
        "'StartTheWorld' is not supported",
    ),
    (
        "action-lowercase",
        lambda p: replaced(p, "Action", "startcdnrecord"),
        100000007,
        "is not supported",
    ),
    (
        "action-of-zego-not-served",
        lambda p: replaced(p, "Action", "TranscodeMedia"),
        100000007,
        "'TranscodeMedia' is not supported",
    ),
    (
        "nonce-missing",
        lambda p: without(p, "SignatureNonce"),
        100000008,
        "SignatureNonce is missing",
    ),
    (
        "nonce-empty",
        lambda p: replaced(p, "SignatureNonce", ""),
        100000008,
        "SignatureNonce is missing",
    ),
    ("signature-missing", lambda p: without(p, "Signature"), 100000009, "Signature is missing"),
    ("signature-empty", lambda p: replaced(p, "Signature", ""), 100000009, "Signature is missing"),
    (
        "appid-unknown",
        lambda p: resigned(p, AppId="7654321"),
        100000010,
        "AppId 7654321 is unknown",
    ),
    (
        "version-missing",
        lambda p: without(p, "SignatureVersion"),
        100000013,
        "SignatureVersion is missing",
    ),
    (
        "version-empty",
        lambda p: replaced(p, "SignatureVersion", ""),
        100000013,
        "SignatureVersion is missing",
    ),
    (
        "version-old",
        lambda p: replaced(p, "SignatureVersion", "1.0"),
        100000014,
        "'1.0' unsupported",
    ),
    ("version-padded", lambda p: replaced(p, "SignatureVersion", "2.00"), 100000014, "unsupported"),
]


@pytest.mark.parametrize(
    ("mutate", "code", "message"),
    [pytest.param(m, c, s, id=name) for name, m, c, s in CASES],
)
def test_each_gateway_fault_alone_gets_its_code(
    gateway_service: RunningService, mutate: Mutation, code: int, message: str
) -> None:
    answer = envelope_of(send(gateway_service.url, encode(mutate(valid()))))
    assert answer["Code"] == code, answer
    assert message in answer["Message"]
    assert answer["Data"] is None


def test_the_unmutated_request_is_accepted(gateway_service: RunningService) -> None:
    answer = envelope_of(send(gateway_service.url, encode(valid())))
    assert answer["Code"] == 0, answer
    assert answer["Message"] == "success"


@pytest.mark.parametrize("skew", [-600, -599, 599, 600])
def test_timestamps_just_inside_the_tolerance_are_accepted(
    gateway_service: RunningService, skew: int
) -> None:
    answer = envelope_of(send(gateway_service.url, encode(valid(timestamp=NOW + skew))))
    assert answer["Code"] == 0, answer


@pytest.mark.parametrize("skew", [-601, 601, -86400, 86400])
def test_timestamps_beyond_the_tolerance_are_expired(
    gateway_service: RunningService, skew: int
) -> None:
    answer = envelope_of(send(gateway_service.url, encode(valid(timestamp=NOW + skew))))
    assert answer["Code"] == 100000004, answer


def test_tolerance_follows_the_clock(gateway_service: RunningService, clock: FakeClock) -> None:
    pairs = valid(timestamp=NOW)
    clock.set(NOW + 601.0)
    try:
        answer = envelope_of(send(gateway_service.url, encode(pairs)))
    finally:
        clock.set(float(NOW))
    assert answer["Code"] == 100000004


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"StreamId[]=a&Vendor=Tencent", "not JSON"),
        (b'{"StreamId": ["a"],', "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b'["a", "b"]', "must be a JSON object"),
        (b'"Tencent"', "must be a JSON object"),
        (b"12", "must be a JSON object"),
        (b"1" * 5000, "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
        (b'{"a":' * 50 + b"1" + b"}" * 50, "nested too deeply"),
    ],
    ids=[
        "form",
        "truncated",
        "bad-utf8",
        "array",
        "string",
        "number",
        "huge-int",
        "deep-array",
        "very-deep-object",
        "deep-object",
    ],
)
def test_an_unreadable_post_body_gets_100000012(
    gateway_service: RunningService, body: bytes, why: str
) -> None:
    query = encode(common_pairs(APP_ID, SECRET, "StartCDNRecord", NOW))
    response = send(
        gateway_service.url,
        query,
        method="POST",
        body=body,
        headers={"Content-Type": "application/json"},
    )
    answer = envelope_of(response)
    assert answer["Code"] == 100000012, answer
    assert why in answer["Message"]


def test_a_replayed_request_is_refused(gateway_service: RunningService) -> None:
    query = encode(valid())
    first = envelope_of(send(gateway_service.url, query))
    again = envelope_of(send(gateway_service.url, query))
    assert first["Code"] == 0
    assert again["Code"] == 100000005
    assert "SignatureNonce was already used" in again["Message"]


def test_a_nonce_may_be_reused_by_another_request_only_when_the_first_was_refused(
    gateway_service: RunningService,
) -> None:
    refused = replaced(valid(nonce="aaaaaaaaaaaaaaaa"), "Signature", "0" * 32)
    assert envelope_of(send(gateway_service.url, encode(refused)))["Code"] == 100000005
    retried = valid(nonce="aaaaaaaaaaaaaaaa")
    assert envelope_of(send(gateway_service.url, encode(retried)))["Code"] == 0


def test_every_answer_has_a_fresh_decimal_request_id(gateway_service: RunningService) -> None:
    seen: set[str] = set()
    queries = [encode(valid()), "", "Action=StartCDNRecord", encode(valid("NoSuchAction"))]
    for _ in range(10):
        for query in queries:
            answer = envelope_of(send(gateway_service.url, query))
            assert len(answer["RequestId"]) == 19
            seen.add(answer["RequestId"])
    assert len(seen) == 10 * len(queries)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_other_methods_get_the_envelope(service: RunningService, method: str) -> None:
    response = httpx.request(method, service.url + "/?Action=StartCDNRecord")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"Code", "Message", "RequestId", "Data"}
    assert body["Code"] == 2
    assert method in body["Message"]
