"""MergeMedia and DescribeMediaTask (zego-api.md §6): a merge job per request, and its state."""

from __future__ import annotations

import math
import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cdnrec.api.zego import requests
from cdnrec.api.zego.codes import ApiError, Code
from cdnrec.api.zego.media import ID_COLUMN
from cdnrec.api.zego.params import Params
from cdnrec.config import Vendor
from cdnrec.store.ids import new_id
from cdnrec.store.jobs import Job, JobRequest, JobState
from cdnrec.store.models import App, FileState

if TYPE_CHECKING:
    from cdnrec.api.zego.actions import Services

FORMATS = {Vendor.TENCENT: ("mp4", "mp3", "m3u8"), Vendor.HUAWEI: ("mp4", "m3u8")}
MAX_INPUTS = {Vendor.TENCENT: 10, Vendor.HUAWEI: 20}
MERGEABLE = frozenset({"mp4", "mp3", "m3u8"})
COMPLETE = frozenset({FileState.STORED, FileState.ANNOUNCED})
TENCENT_SUB_APP = "1400341231"
MAX_EXPIRE_HOURS = 24 * 365 * 100


def _merge_vendor(params: Params) -> Vendor:
    vendor = requests.vendor(params)
    if vendor not in FORMATS:
        raise ApiError(Code.VENDOR_MISMATCH, f"{vendor.value} does not support MergeMedia")
    return vendor


def _format(params: Params, vendor: Vendor) -> str:
    fmt = (params.first("Format") or "mp4").strip().lower()
    if fmt not in FORMATS[vendor]:
        allowed = "/".join(f.upper() for f in FORMATS[vendor])
        raise ApiError(Code.BAD_PARAMETER, f"Format must be one of {allowed} for {vendor.value}")
    return fmt


def _seconds(params: Params, name: str) -> float | None:
    raw = params.first(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ApiError(Code.BAD_PARAMETER, f"{name} must be a number of seconds") from exc
    if not math.isfinite(value) or not 0 <= value <= 86400 * 7:
        raise ApiError(Code.BAD_PARAMETER, f"{name} must be between 0 and 604800 seconds")
    return value


def _handle_args(params: Params, limit: int) -> tuple[list[str], list[tuple[float | None, ...]]]:
    ids: list[str] = []
    spans: list[tuple[float | None, ...]] = []
    while (file_id := params.first(f"HandleMediaArgs.{len(ids)}.FileId")) is not None:
        n = len(ids)
        if n >= limit:
            raise ApiError(Code.BAD_PARAMETER, f"at most {limit} HandleMediaArgs")
        start = _seconds(params, f"HandleMediaArgs.{n}.StartTime")
        end = _seconds(params, f"HandleMediaArgs.{n}.EndTime")
        if start is not None and end is not None and end <= start:
            raise ApiError(Code.BAD_PARAMETER, f"HandleMediaArgs.{n}.EndTime must follow StartTime")
        ids.append(file_id.strip())
        spans.append((start, end))
    stray = [k for k in params.values if k.startswith("HandleMediaArgs.")]
    pattern = re.compile(r"HandleMediaArgs\.([0-9]|[1-9][0-9]*)\.(FileId|StartTime|EndTime)$")
    if any(not (m := pattern.match(k)) or int(m.group(1)) >= len(ids) for k in stray):
        raise ApiError(Code.BAD_PARAMETER, "HandleMediaArgs.N must be numbered 0, 1, 2 and so on")
    return ids, spans


def _inputs(
    params: Params, vendor: Vendor, kind: int
) -> tuple[list[str], tuple[tuple[float | None, float | None], ...] | None]:
    limit = MAX_INPUTS[vendor]
    if kind == 1:
        ids, spans = _handle_args(params, limit)
        crops = tuple((s[0], s[1]) for s in spans)
    else:
        if any(k.startswith("HandleMediaArgs.") for k in params.values):
            raise ApiError(Code.BAD_PARAMETER, "HandleMediaArgs needs Type=1")
        ids, crops = [i.strip() for i in params.all("InputFileId") or params.all("InputFile")], None
    if not ids:
        what = "HandleMediaArgs.0.FileId" if kind == 1 else "InputFileId[]"
        raise ApiError(Code.BAD_PARAMETER, f"{what} is missing")
    if len(ids) > limit:
        raise ApiError(Code.BAD_PARAMETER, f"at most {limit} input files for {vendor.value}")
    if any(not i or len(i) > 1024 for i in ids):
        raise ApiError(Code.BAD_PARAMETER, "input file ids must be 1-1024 characters")
    return ids, crops


def _type(params: Params, vendor: Vendor) -> int:
    raw = (params.first("Type") or "0").strip()
    if raw not in ("0", "1"):
        raise ApiError(Code.BAD_PARAMETER, "Type must be 0 or 1")
    return int(raw) if vendor is Vendor.TENCENT else 0


def _output_name(params: Params, vendor: Vendor) -> str:
    name = (params.first("OutputFileName") or params.first("OutputFile") or "").strip()
    if vendor is Vendor.TENCENT and not name:
        raise ApiError(Code.BAD_PARAMETER, "OutputFileName is required for Tencent")
    if len(name) > 200:
        raise ApiError(Code.BAD_PARAMETER, "OutputFileName is at most 200 characters")
    return name


def _expire_hours(params: Params, vendor: Vendor) -> int:
    raw = (params.first("ExpireTime") or "").strip()
    if vendor is not Vendor.TENCENT or not raw:
        return 0
    if not re.fullmatch(r"\d{1,7}", raw) or int(raw) > MAX_EXPIRE_HOURS:
        raise ApiError(Code.BAD_PARAMETER, "ExpireTime must be a whole number of hours")
    return int(raw)


def _task_id(vendor: Vendor) -> str:
    if vendor is Vendor.TENCENT:
        return f"{TENCENT_SUB_APP}-EditMedia-{uuid.uuid4().hex}"
    return str(secrets.randbelow(9 * 10**9) + 10**9)


async def merge_media(services: Services, app: App, params: Params) -> Any:
    """MergeMedia: validate, resolve the input files, queue a merge job; its TaskId."""
    vendor = _merge_vendor(params)
    fmt = _format(params, vendor)
    kind = _type(params, vendor)
    ids, spans = _inputs(params, vendor, kind)
    name = _output_name(params, vendor)
    expire_hours = _expire_hours(params, vendor)
    column = ID_COLUMN[vendor]
    found = await services.jobs.files(app.app_id, vendor, column, list(dict.fromkeys(ids)))
    by_id = {getattr(f, column): f for f in found}
    missing = [i for i in ids if i not in by_id or by_id[i].format not in MERGEABLE]
    if missing:
        raise ApiError(Code.FILE_NOT_FOUND, f"file(s) not found: {', '.join(missing[:10])}")
    busy = [i for i in ids if by_id[i].state not in COMPLETE]
    if busy:
        raise ApiError(Code.BAD_PARAMETER, f"file(s) still being written: {', '.join(busy[:10])}")
    job = Job(
        id=new_id(),
        task_id=_task_id(vendor),
        app_id=app.app_id,
        vendor=vendor,
        state=JobState.WAITING,
        request=JobRequest(
            inputs=tuple(by_id[i].id for i in ids),
            format=fmt,
            type=kind,
            spans=spans,
            output_name=name,
            expire_hours=expire_hours,
        ),
        created_ms=int(services.control.now() * 1000),
    )
    await services.jobs.submit(job)
    if vendor is Vendor.TENCENT:
        return {"Tencent": {"TaskId": job.task_id, "RequestId": str(uuid.uuid4())}}
    return {"Huawei": {"TaskId": job.task_id, "RequestId": uuid.uuid4().hex}}


HUAWEI_STATUS = {
    JobState.WAITING: "WAITING",
    JobState.PROCESSING: "PROCESSING",
    JobState.FINISH: "SUCCEEDED",
    JobState.FAIL: "FAILED",
}


def _stamp(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y%m%d%H%M%S")


async def describe_media_task(services: Services, app: App, params: Params) -> Any:
    """DescribeMediaTask: the state of a merge job by its TaskId."""
    vendor = _merge_vendor(params)
    task_id = (params.first("TaskId") or "").strip()
    if not task_id or len(task_id) > 64:
        raise ApiError(Code.BAD_PARAMETER, "TaskId is missing")
    job = await services.jobs.by_task(app.app_id, vendor, task_id)
    file = await services.jobs.file(job.result_file_id) if job and job.result_file_id else None
    live = file is not None and file.state in COMPLETE
    if vendor is Vendor.HUAWEI:
        if job is None:
            return {"Huawei": {"TaskId": task_id, "Status": "NO_TASK", "CreateTime": "",
                               "EndTime": "", "FileName": []}}  # fmt: skip
        return {
            "Huawei": {
                "TaskId": job.task_id,
                "Status": HUAWEI_STATUS[job.state],
                "CreateTime": _stamp(job.created_ms),
                "EndTime": _stamp(job.finished_ms),
                "FileName": [file.key] if file is not None and live and file.key else [],
            }
        }
    if job is None:
        raise ApiError(Code.BAD_PARAMETER, f"no task {task_id[:64]}")
    return {
        "Tencent": {
            "TaskId": job.task_id,
            "Event": "compose",
            "Status": job.state.value.upper(),
            "FileId": file.public_id if file is not None and live else "",
            "ReplayUrl": services.catalog.url(app, file) if file is not None and live else "",
            "RequestId": str(uuid.uuid4()),
            "Message": job.error_message or ("success" if job.state is JobState.FINISH else ""),
            "ThumbnailsUrl": [],
        }
    }
