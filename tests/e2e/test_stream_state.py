"""DescribeRTCStreamState against a real origin: live, not live, the Sequence rule, its own limit."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from tests.e2e.helpers import recording_settings
from tests.support.origins import NginxRtmp, publish
from tests.support.service import RunningService, make_settings, wait_for

_seq = itertools.count(1)


def _state(
    service: RunningService, stream_id: str, sequence: str | None = None
) -> dict[str, object]:
    params = {"StreamId": stream_id, "Sequence": str(next(_seq)) if sequence is None else sequence}
    with service.client() as client:
        answer: dict[str, object] = client.call("DescribeRTCStreamState", params)
    return answer


def test_live_and_not_live(
    tmp_path: Path, origin: NginxRtmp, av_clip: Path, stream_id: str
) -> None:
    service = RunningService(recording_settings(tmp_path, origin, None)).start()
    publisher = publish(av_clip, origin.url(stream_id))
    try:
        wait_for(lambda: _state(service, stream_id)["Code"] == 0, 20, interval=0.3)
        live = _state(service, stream_id)
        assert isinstance(live["Data"], dict)
        assert live["Data"]["close_time"] == ""
        assert str(live["Data"]["create_time"]).isdigit()
        absent = _state(service, stream_id + "x")
        assert absent["Code"] == 41004
        assert _state(service, "../etc")["Code"] == 30009
        assert _state(service, stream_id, sequence="")["Code"] == 2
    finally:
        publisher.stop()
        service.stop()


def test_sequence_must_increase_within_ten_seconds(tmp_path: Path, origin: NginxRtmp) -> None:
    service = RunningService(recording_settings(tmp_path, origin, None)).start()
    try:
        assert _state(service, "quiet", "100")["Code"] == 41004
        assert _state(service, "quiet", "100")["Code"] == 2
        assert _state(service, "quiet", "99")["Code"] == 2
        assert _state(service, "quiet", "101")["Code"] == 41004
        assert _state(service, "other", "5")["Code"] == 41004
    finally:
        service.stop()


def test_stream_state_has_its_own_limit(tmp_path: Path) -> None:
    frozen = time.time()
    settings = make_settings(tmp_path, limits={"stream_state_rps": 3, "media_rps": 5})
    service = RunningService(settings, clock=lambda: frozen).start()
    try:
        codes = [_state(service, f"s{i}")["Code"] for i in range(5)]
        assert codes == [41004, 41004, 41004, 1010, 1010]
        with service.client() as client:
            media = client.call("SearchMedia", {"Vendor": "Tencent"})
        assert media["Code"] == 0, "the media-file family has its own budget"
    finally:
        service.stop()
