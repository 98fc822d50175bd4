"""Small helpers of the end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.origins import NginxRtmp
from tests.support.service import APP_ID, SECRET, RunningService, make_settings


def recording_settings(
    data_dir: Path,
    origin: NginxRtmp,
    callback_url: str | None,
    *,
    formats: tuple[str, ...] = ("flv", "mp4", "m3u8"),
    interval: float = 3.0,
    **sections: Any,
) -> Any:
    """Settings of a service recording from `origin` with short files and fast retries."""
    app: dict[str, Any] = {
        "app_id": APP_ID,
        "server_secret": SECRET,
        "vendors": {
            "Tencent": {
                "sources": [f"rtmp://127.0.0.1:{origin.port}/live/{{stream_id}}"],
                "formats": list(formats),
                "interval": interval,
                "hls_segment": 1.0,
                "resume_window": 3.0,
            }
        },
    }
    if callback_url:
        app["callback_url"] = callback_url
    sections.setdefault("callbacks", {"schedule": [0.3, 0.3, 0.3, 0.3, 0.3], "late_interval": 0.5})
    sections.setdefault("recorder", {"poll": 0.2, "lease": 3})
    sections.setdefault("limits", {"media_rps": 1000})
    return make_settings(data_dir, apps=[app], **sections)


def describe(service: RunningService, stream_id: str) -> dict[str, Any]:
    """The newest task of a stream, as DescribeCDNRecordTask shows it."""
    with service.client() as client:
        answer = client.call("DescribeCDNRecordTask", {"StreamId": stream_id, "Vendor": "Tencent"})
    assert answer["Code"] == 0, answer
    tasks: list[dict[str, Any]] = answer["Data"]["Tasks"]
    return tasks[0] if tasks else {}


def all_files(service: RunningService, stream_id: str) -> list[dict[str, Any]]:
    """Every file of every task of a stream."""
    with service.client() as client:
        answer = client.call("DescribeCDNRecordTask", {"StreamId": stream_id, "Vendor": "Tencent"})
    return [f for t in answer["Data"]["Tasks"] for f in t["Files"]]


def extra(body: dict[str, Any]) -> dict[str, Any]:
    """The decoded extra_params of a callback."""
    decoded: dict[str, Any] = json.loads(body["extra_params"])
    return decoded
