"""The bodies of `record` callbacks, shaped per vendor (zego-api.md §5.2–5.3)."""

from __future__ import annotations

import json
from typing import Any

from cdnrec.config import Vendor
from cdnrec.store.models import RecordedFile, Task


def extra_params(task: Task, file: RecordedFile) -> dict[str, Any]:
    """The vendor's extension fields for one file."""
    duration = round(file.duration or 0.0, 3)
    if task.vendor is Vendor.TENCENT:
        return {
            "TaskId": task.refs.get("TaskId", ""),
            "FileID": file.public_id,
            "Duration": duration,
        }
    if task.vendor is Vendor.WS:
        return {"PersistentId": file.handle, "Duration": duration}
    return {"Duration": duration, "ObsObject": file.key or "", "FileSize": file.size or 0}


def record_payload(
    task: Task, file: RecordedFile, replay_url: str, extra_as: str = "string"
) -> dict[str, Any]:
    """A `record` callback for a stored file, before it is signed."""
    extra = extra_params(task, file)
    return {
        "appid": str(task.app_id),
        "event": "record",
        "stream_alias": task.stream_id,
        "replay_url": replay_url,
        "begin_time": str(file.begin_ms // 1000),
        "end_time": str((file.end_ms or file.begin_ms) // 1000),
        "extra_params": json.dumps(extra, separators=(",", ":")) if extra_as == "string" else extra,
    }
