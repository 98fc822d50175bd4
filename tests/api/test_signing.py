"""The request signature of version 2.0, checked against ZEGO's documented example."""

from __future__ import annotations

from pathlib import Path

from cdnrec.auth import request_signature, signature_matches
from tests.support.api import FakeClock, Launch, encode, envelope_of, send
from tests.support.service import make_settings

DOC_APP_ID = 12345
DOC_NONCE = "4fd24687296dd9f3"
DOC_SECRET = "9193cc662a4c0ec135ec71fb57194b38"
DOC_TIMESTAMP = 1615186943
DOC_SIGNATURE = "43e5cfcca828314675f91b001390566a"


def test_the_documented_example_signs_to_the_documented_signature() -> None:
    assert request_signature(DOC_APP_ID, DOC_NONCE, DOC_SECRET, DOC_TIMESTAMP) == DOC_SIGNATURE


def test_signatures_compare_case_insensitively_and_reject_any_other_value() -> None:
    assert signature_matches(DOC_SIGNATURE, DOC_SIGNATURE.upper())
    assert not signature_matches(DOC_SIGNATURE, DOC_SIGNATURE[:-1] + "b")
    assert not signature_matches(DOC_SIGNATURE, "")
    assert not signature_matches(DOC_SIGNATURE, "é" * 32)


def test_a_request_signed_like_the_docs_is_accepted_at_the_docs_time(
    tmp_path: Path, launch: Launch
) -> None:
    app = {
        "app_id": DOC_APP_ID,
        "server_secret": DOC_SECRET,
        "vendors": {"Tencent": {"sources": ["rtmp://127.0.0.1:1/live/{stream_id}"]}},
    }
    running = launch(make_settings(tmp_path, apps=[app]), clock=FakeClock(float(DOC_TIMESTAMP)))
    query = encode(
        [
            ("Action", "StartCDNRecord"),
            ("AppId", str(DOC_APP_ID)),
            ("SignatureNonce", DOC_NONCE),
            ("Timestamp", str(DOC_TIMESTAMP)),
            ("Signature", DOC_SIGNATURE),
            ("SignatureVersion", "2.0"),
            ("StreamId[]", "cdn01"),
            ("Vendor", "Tencent"),
        ]
    )
    answer = envelope_of(send(running.url, query))
    assert answer["Code"] == 0, answer
    assert answer["Message"] == "success"
    [entry] = answer["Data"]["Tencent"]
    assert entry["StreamName"] == "cdn01"
    assert entry["Code"] == ""
