"""The service answers a signed StartCDNRecord over real HTTP."""

from tests.support.service import RunningService


def test_start_answers_a_tencent_task(service: RunningService) -> None:
    with service.client() as client:
        answer = client.call("StartCDNRecord", {"StreamId[]": ["s1"], "Vendor": "Tencent"})
    assert answer["Code"] == 0
    [entry] = answer["Data"]["Tencent"]
    assert entry["StreamName"] == "s1"
    assert entry["Code"] == ""
    assert len(entry["TaskId"]) > 32
