"""Hostile input against the running service: never a 5xx, always the envelope, no stray files."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cdnrec.api.zego.actions import ACTIONS as ACTIONS_SERVED
from tests.support.api import AlwaysLive, common_pairs, encode, envelope_of, send
from tests.support.service import APP_ID, SECRET, RunningService, make_settings

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NAMES = [
    "Action",
    "AppId",
    "SignatureNonce",
    "Timestamp",
    "Signature",
    "SignatureVersion",
    "IsTest",
    "StreamId",
    "StreamId[]",
    "StreamId%5B%5D",
    "StreamId[0]",
    "Vendor",
    "EndTime",
    "Domain",
    "HandleMediaArgs.0.FileId",
    "Sequence",
    "FileId",
    "Media.0.FileId",
    "StartTime",
    "EndTime",
    "PageSize",
    "Offset",
]
ACTIONS = [
    "StartCDNRecord",
    "StopCDNRecord",
    "DescribeCDNRecordTask",
    "SearchMedia",
    "DeleteMedia",
    "DescribeRTCStreamState",
    "MergeMedia",
    "DescribeMediaTask",
    "TranscodeMedia",
    "Nope",
    "",
]
HOSTILE_IDS = ["../x", "..", "/etc/passwd", "a/../../b", "C:\\x", "~", "%2e%2e%2fx", "a\x00b"]


@dataclass
class Target:
    """The service under fuzzing and the folder its data_dir lives in."""

    running: RunningService
    parent: Path
    data_dir: Path
    before: set[str]

    def files_outside_data_dir(self) -> set[str]:
        """Every path under `parent` that is not inside the data_dir."""
        found: set[str] = set()
        for root, dirs, files in os.walk(self.parent):
            here = Path(root)
            if here == self.data_dir or self.data_dir in here.parents:
                dirs.clear()
                continue
            found.update(str((here / name).relative_to(self.parent)) for name in dirs + files)
        return found

    def assert_nothing_written_outside(self) -> None:
        """No file or folder appeared next to the data_dir."""
        assert self.files_outside_data_dir() == self.before


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One service for every property; every stream counts as live, limits out of the way."""
    parent = tmp_path_factory.mktemp("fuzz")
    data_dir = parent / "data"
    settings_ = make_settings(
        data_dir,
        limits={"media_rps": 10**6, "stream_state_rps": 10**6},
        server={"role": "api"},
    )
    running = RunningService(settings_, probe=AlwaysLive()).start()
    target = Target(running, parent, data_dir, set())
    target.before = target.files_outside_data_dir()
    yield target
    running.stop()
    target.assert_nothing_written_outside()


# -- strategies ---------------------------------------------------------------------------

encoded_text = st.text(max_size=40).map(lambda s: quote(s, safe=""))
raw_bytes = st.binary(max_size=24).map(lambda b: "".join(f"%{x:02X}" for x in b))
odd_escapes = st.sampled_from(["%", "%G1", "%F", "%FF%FE", "%C0%AF", "%ED%A0%80", "%00", "+", "[]"])
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
).map(lambda n: quote(str(n), safe=""))
stream_values = st.one_of(
    st.sampled_from(HOSTILE_IDS).map(lambda s: quote(s, safe="")),
    st.from_regex(r"[A-Za-z0-9_-]{1,20}", fullmatch=True),
)
values = st.one_of(encoded_text, raw_bytes, odd_escapes, numbers, stream_values)
names = st.one_of(st.sampled_from(NAMES), encoded_text, raw_bytes)
query_pairs = st.lists(st.tuples(names, values), max_size=30)
big_lists = st.integers(min_value=0, max_value=2500).map(
    lambda n: [("StreamId[]", f"s{i % 300}") for i in range(n)]
)


def signed(action: str) -> str:
    """Valid, freshly signed common parameters for `action`."""
    return encode(common_pairs(APP_ID, SECRET, action, int(time.time())))


def joined(pairs: list[tuple[str, str]]) -> str:
    """Pairs that are already encoded, as a query string."""
    return "&".join(f"{name}={value}" for name, value in pairs)


def answer_is_an_envelope(running: RunningService, query: str, **kwargs: Any) -> dict[str, Any]:
    """Send the request; the answer must be HTTP 200 and the envelope with an int Code."""
    return envelope_of(send(running.url, query, **kwargs))


# -- properties ---------------------------------------------------------------------------


@FUZZ
@given(pairs=query_pairs)
def test_arbitrary_queries_get_the_envelope(target: Target, pairs: list[tuple[str, str]]) -> None:
    answer = answer_is_an_envelope(target.running, joined(pairs))
    assert answer["Code"] != 0


@FUZZ
@given(
    action=st.sampled_from(ACTIONS),
    business=query_pairs,
    vendor=st.sampled_from(["Tencent", "Ws", "Huawei", "x"]),
)
def test_signed_requests_with_arbitrary_business_parameters_get_the_envelope(
    target: Target, action: str, business: list[tuple[str, str]], vendor: str
) -> None:
    query = "&".join(filter(None, [signed(action), f"Vendor={vendor}", joined(business)]))
    answer = answer_is_an_envelope(target.running, query)
    if answer["Code"] == 0:
        assert action in ACTIONS_SERVED


@FUZZ
@given(
    ids=st.lists(stream_values, min_size=1, max_size=5),
    vendor=st.sampled_from(["Tencent", "Ws", "Huawei"]),
    action=st.sampled_from(["StartCDNRecord", "StopCDNRecord"]),
)
def test_hostile_stream_ids_are_refused_with_code_2(
    target: Target, ids: list[str], vendor: str, action: str
) -> None:
    business = joined([("StreamId[]", i) for i in ids])
    answer = answer_is_an_envelope(target.running, f"{signed(action)}&Vendor={vendor}&{business}")
    hostile = any(not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", unquote(i)) for i in ids)
    assert answer["Code"] == (2 if hostile else 0), answer


@FUZZ
@given(pairs=big_lists, action=st.sampled_from(["StartCDNRecord", "StopCDNRecord"]))
def test_huge_lists_are_refused_or_served(
    target: Target, pairs: list[tuple[str, str]], action: str
) -> None:
    query = "&".join(filter(None, [signed(action), "Vendor=Tencent", joined(pairs)]))
    answer = answer_is_an_envelope(target.running, query)
    unique = len({v for _, v in pairs})
    if not pairs or unique > 100 or len(pairs) + 7 > 2000:
        assert answer["Code"] == 2, answer["Message"]
    else:
        assert answer["Code"] == 0, answer["Message"]


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(HOSTILE_IDS),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=10)), inner, max_size=5),
    ),
    max_leaves=25,
)
json_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(NAMES), json_values, max_size=6).map(
        lambda v: json.dumps(v).encode()
    ),
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"1" * 5000,
            b"1e999999",
            b"-" + b"9" * 4400,
            b"[" * 50_000,
            b'{"a":' * 2000,
            b"\xef\xbb\xbf{}",
        ]
    ),
)


@FUZZ
@given(
    body=json_bodies,
    action=st.sampled_from(ACTIONS),
    sign=st.booleans(),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/json; charset=latin-1"]
    ),
)
def test_arbitrary_post_bodies_get_the_envelope(
    target: Target, body: bytes, action: str, sign: bool, content_type: str
) -> None:
    query = signed(action) if sign else f"Action={action}&AppId={APP_ID}"
    headers = {"Content-Type": content_type} if content_type else {}
    answer = answer_is_an_envelope(target.running, query, method="POST", body=body, headers=headers)
    if not sign:
        assert answer["Code"] != 0


def test_nothing_was_written_outside_the_data_dir(target: Target) -> None:
    target.assert_nothing_written_outside()
    assert (target.data_dir / "cdnrec.db").exists()
