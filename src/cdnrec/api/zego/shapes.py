"""Vendor-shaped identifiers and per-stream results of Start/Stop (zego-api.md §2.3, §3.2)."""

from __future__ import annotations

import secrets
import string
import uuid
from datetime import UTC, datetime
from typing import Any

from cdnrec.config import Vendor, VendorSettings
from cdnrec.control import StartOutcome, StopOutcome
from cdnrec.store.models import RecordedFile, Task

_ALNUM = string.ascii_letters + string.digits
NOT_ACTIVE = "no active recording for this stream"
_NOT_FOUND = 404  # Ws/Huawei per-stream code: the stream is not live, or no task to stop
_BUSY = 503  # Ws/Huawei per-stream code: every recorder is full (admission control)


def tencent_task_id() -> str:
    """A Tencent-style recording TaskId: a long opaque alphanumeric string.

    Drawn from one read of random bytes (secrets.choice reads the OS once per character);
    bytes of 248 and above are skipped so that every character is equally likely.
    """
    chars: list[str] = []
    while len(chars) < 108:
        chars += [_ALNUM[b % 62] for b in secrets.token_bytes(128) if b < 248]
    return "".join(chars[:108])


def refs_for(vendor: Vendor, config: VendorSettings) -> dict[str, Any]:
    """The vendor handles a new task is known by."""
    if vendor is Vendor.TENCENT:
        return {"TaskId": tencent_task_id()}
    if vendor is Vendor.WS:
        return {"PersistentIds": {fmt: secrets.token_hex(18) for fmt in config.formats}}
    return {"RequestId": secrets.token_hex(16)}


def _ws(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "msg": None,
        "http_code": 200,
        "trace_id": str(uuid.uuid4()),
        "call_time": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "list": entries,
    }


def start_data(vendor: Vendor, formats: tuple[str, ...], outcomes: list[StartOutcome]) -> Any:
    """`Data` of a StartCDNRecord answer."""
    if vendor is Vendor.TENCENT:
        return {"Tencent": [_tencent_start(o) for o in outcomes]}
    if vendor is Vendor.WS:
        return {"Ws": _ws([e for o in outcomes for e in _ws_entries(o, formats)])}
    return {
        "Huawei": [
            _huawei(o.stream_id, o.task is not None, o.refused, _BUSY if o.full else _NOT_FOUND)
            for o in outcomes
        ]
    }


def stop_data(vendor: Vendor, formats: tuple[str, ...], outcomes: list[StopOutcome]) -> Any:
    """`Data` of a StopCDNRecord answer."""
    if vendor is Vendor.TENCENT:
        return {"Tencent": [_tencent_stop(o) for o in outcomes]}
    if vendor is Vendor.WS:
        entries = []
        for o in outcomes:
            if not o.tasks:
                entries += _ws_failures(o.stream_id, formats, NOT_ACTIVE)
            for task in o.tasks:
                entries += _ws_success(o.stream_id, task.refs.get("PersistentIds", {}))
        return {"Ws": _ws(entries)}
    return {"Huawei": [_huawei(o.stream_id, bool(o.tasks), NOT_ACTIVE) for o in outcomes]}


def _tencent_start(o: StartOutcome) -> dict[str, Any]:
    if o.task is None:
        return {
            "StreamName": o.stream_id,
            "TaskId": "",
            "RequestId": str(uuid.uuid4()),
            "Code": "LimitExceeded.MaximumRunningTask" if o.full else "FailedOperation",
            "Message": o.refused,
        }
    return {
        "StreamName": o.stream_id,
        "TaskId": o.task.refs.get("TaskId", ""),
        "RequestId": str(uuid.uuid4()),
        "Code": "",
        "Message": "",
    }


def _tencent_stop(o: StopOutcome) -> dict[str, Any]:
    ok = bool(o.tasks)
    return {
        "StreamName": o.stream_id,
        "TaskId": o.tasks[0].refs.get("TaskId", "") if ok else "",
        "RequestId": str(uuid.uuid4()),
        "Code": "" if ok else "InvalidParameter.TaskNotExist",
        "Message": "" if ok else NOT_ACTIVE,
    }


def _ws_entries(o: StartOutcome, formats: tuple[str, ...]) -> list[dict[str, Any]]:
    if o.task is None:
        return _ws_failures(o.stream_id, formats, o.refused, _BUSY if o.full else _NOT_FOUND)
    return _ws_success(o.stream_id, o.task.refs.get("PersistentIds", {}))


def _ws_success(stream_id: str, persistent_ids: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"task": fmt, "id": stream_id, "http_code": 200, "msg": "success", "persistentId": pid}
        for fmt, pid in persistent_ids.items()
    ]


def _ws_failures(
    stream_id: str, formats: tuple[str, ...], why: str, status: int = 404
) -> list[dict[str, Any]]:
    return [
        {"task": fmt, "id": stream_id, "http_code": status, "msg": why, "persistentId": ""}
        for fmt in formats
    ]


def _huawei(stream_id: str, ok: bool, why: str, status: int = 404) -> dict[str, Any]:
    return {
        "StreamName": stream_id,
        "RequestId": secrets.token_hex(16),
        "Code": 0 if ok else status,
        "Message": "success" if ok else why,
    }


def task_view(task: Task, files: list[RecordedFile]) -> dict[str, Any]:
    """A task as DescribeCDNRecordTask shows it."""
    return {
        "TaskId": task.refs.get("TaskId") or task.refs.get("RequestId") or task.id,
        "StreamId": task.stream_id,
        "Vendor": task.vendor.value,
        "State": task.state.value,
        "Phase": task.phase,
        "Detail": task.detail,
        "CreateTime": task.created_ms // 1000,
        "EndTime": task.deadline_ms // 1000,
        "Files": [
            {
                "FileId": f.public_id,
                "Format": f.format,
                "State": f.state.value,
                "Key": f.key or "",
                "BeginTime": f.begin_ms // 1000,
                "EndTime": (f.end_ms or f.begin_ms) // 1000,
                "Duration": f.duration or 0.0,
                "Size": f.size or 0,
                "Sha256": f.sha256 or "",
                "Repaired": f.repaired,
            }
            for f in files
        ],
    }
