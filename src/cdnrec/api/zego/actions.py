"""The Actions of the API, each with its rate-limit family, by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cdnrec.api.zego import media, merge, requests, shapes
from cdnrec.api.zego.codes import ApiError, Code
from cdnrec.api.zego.params import Params
from cdnrec.catalog import Catalog
from cdnrec.config import LimitSettings, Vendor
from cdnrec.control import (
    ConfigUnworkable,
    Control,
    ControlError,
    RecordingDisabled,
    StreamProbe,
    VendorNotConfigured,
)
from cdnrec.merging.jobs import MergeJobs
from cdnrec.store.models import App


@dataclass(frozen=True)
class Services:
    """What the Actions work with."""

    control: Control
    limits: LimitSettings
    catalog: Catalog
    probe: StreamProbe
    sequences: media.SequenceGuard
    jobs: MergeJobs


Handler = Callable[[Services, App, Params], Awaitable[Any]]


@dataclass(frozen=True)
class Action:
    """One Action: its handler and the rate-limit family it counts against."""

    handler: Handler
    family: str


def _control_code(exc: ControlError) -> Code:
    if isinstance(exc, RecordingDisabled):
        return Code.NOT_ENABLED
    if isinstance(exc, VendorNotConfigured):
        return Code.VENDOR_MISMATCH
    if isinstance(exc, ConfigUnworkable):
        return Code.CONFIG_ERROR
    return Code.REQUEST_FAILED


async def start_cdn_record(services: Services, app: App, params: Params) -> Any:
    """StartCDNRecord: one task per stream; idempotent for streams already recording."""
    vendor = requests.vendor(params)
    streams = requests.stream_ids(params, services.limits.max_stream_ids)
    control = services.control
    deadline = None
    if vendor is Vendor.TENCENT:
        deadline = requests.tencent_end_time(params, control.now())
    try:
        outcomes = await control.start(
            app, vendor, streams, deadline=deadline, refs_for=lambda c: shapes.refs_for(vendor, c)
        )
    except ControlError as exc:
        raise ApiError(_control_code(exc), str(exc)) from exc
    return shapes.start_data(vendor, app.vendors[vendor].formats, outcomes)


async def stop_cdn_record(services: Services, app: App, params: Params) -> Any:
    """StopCDNRecord: stop every active task of each stream; idle streams answer per stream."""
    vendor = requests.vendor(params)
    streams = requests.stream_ids(params, services.limits.max_stream_ids)
    try:
        outcomes = await services.control.stop(app, vendor, streams)
    except ControlError as exc:
        raise ApiError(_control_code(exc), str(exc)) from exc
    return shapes.stop_data(vendor, app.vendors[vendor].formats, outcomes)


async def describe_cdn_record_task(services: Services, app: App, params: Params) -> Any:
    """DescribeCDNRecordTask (cdnrec's own Action): the tasks of a stream with state and files."""
    vendor = requests.vendor(params)
    [stream_id] = requests.stream_ids(params, 1)
    tasks = await services.control.tasks_of(app, vendor, stream_id)
    return {"Tasks": [shapes.task_view(task, files) for task, files in tasks]}


MEDIA = "media"
STREAM_STATE = "stream_state"

ACTIONS: dict[str, Action] = {
    "StartCDNRecord": Action(start_cdn_record, MEDIA),
    "StopCDNRecord": Action(stop_cdn_record, MEDIA),
    "DescribeCDNRecordTask": Action(describe_cdn_record_task, MEDIA),
    "SearchMedia": Action(media.search_media, MEDIA),
    "DeleteMedia": Action(media.delete_media, MEDIA),
    "MergeMedia": Action(merge.merge_media, MEDIA),
    "DescribeMediaTask": Action(merge.describe_media_task, MEDIA),
    "DescribeRTCStreamState": Action(media.describe_rtc_stream_state, STREAM_STATE),
}

PLANNED: frozenset[str] = frozenset()


def lookup(name: str) -> Action:
    """The Action called `name`, or the gateway code for an unsupported one."""
    action = ACTIONS.get(name)
    if action is None:
        if name in PLANNED:
            raise ApiError(Code.ACTION_UNSUPPORTED, f"Action {name} is not available yet")
        raise ApiError(Code.ACTION_UNSUPPORTED, f"Action {name[:64]!r} is not supported")
    return action
