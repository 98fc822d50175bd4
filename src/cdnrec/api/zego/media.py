"""The media-file Actions beyond Start/Stop: SearchMedia, DeleteMedia, DescribeRTCStreamState."""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import TYPE_CHECKING, Any

from cdnrec.api.zego import requests
from cdnrec.api.zego.codes import ApiError, Code
from cdnrec.api.zego.params import Params
from cdnrec.api.zego.search_shapes import tencent_search, vendor_keys
from cdnrec.catalog import FilesBusy, FilesNotFound
from cdnrec.config import Vendor
from cdnrec.store.files import FileQuery
from cdnrec.store.models import App

if TYPE_CHECKING:
    from cdnrec.api.zego.actions import Services

ID_COLUMN = {Vendor.TENCENT: "public_id", Vendor.WS: "handle", Vendor.HUAWEI: "key"}
TENCENT_WINDOW = 5000


def _int(params: Params, name: str, default: int, low: int, high: int) -> int:
    raw = params.first(name)
    if raw is None or raw.strip() == "":
        return default
    if not re.fullmatch(r"\d{1,12}", raw.strip()):
        raise ApiError(Code.BAD_PARAMETER, f"{name} must be a whole number")
    value = int(raw)
    if not low <= value <= high:
        raise ApiError(Code.BAD_PARAMETER, f"{name} must be between {low} and {high}")
    return value


def _query(app: App, vendor: Vendor, params: Params) -> FileQuery:
    prefix = params.first("NamePrefix") or ""
    if len(prefix.encode()) > 20:
        raise ApiError(Code.BAD_PARAMETER, "NamePrefix is at most 20 bytes")
    if vendor is not Vendor.TENCENT:
        return FileQuery(app.app_id, vendor, prefix)
    file_ids = params.all("FileId")
    if len(file_ids) > 10 or any(len(f) > 40 for f in file_ids):
        raise ApiError(Code.BAD_PARAMETER, "at most 10 FileId[] of at most 40 characters")
    streams = requests.stream_ids(params, 10) if params.all("StreamId") else []
    start = _int(params, "StartTime", -1, 0, 2**40)
    end = _int(params, "EndTime", -1, 0, 2**40)
    return FileQuery(
        app.app_id,
        vendor,
        prefix,
        created_from_ms=start * 1000 if start >= 0 else None,
        created_to_ms=end * 1000 + 999 if end >= 0 else None,
        public_ids=tuple(file_ids),
        stream_ids=tuple(streams),
    )


def _marker(raw: str | None) -> tuple[int, str] | None:
    if not raw:
        return None
    try:
        created, _, row_id = base64.urlsafe_b64decode(raw.encode() + b"==").decode().partition(":")
        return int(created), row_id
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise ApiError(Code.BAD_PARAMETER, "Marker is not one this service handed out") from exc


def next_marker(created_ms: int, row_id: str) -> str:
    """The opaque cursor after a file."""
    return base64.urlsafe_b64encode(f"{created_ms}:{row_id}".encode()).decode().rstrip("=")


async def search_media(services: Services, app: App, params: Params) -> Any:
    """SearchMedia: the app's stored files, paged as the vendor pages them."""
    vendor = requests.vendor(params)
    query = _query(app, vendor, params)
    catalog = services.catalog
    if vendor is Vendor.TENCENT:
        size = _int(params, "PageSize", 10, 1, TENCENT_WINDOW)
        number = _int(params, "PageNumber", 0, 0, TENCENT_WINDOW)
        if number * size + size > TENCENT_WINDOW:
            raise ApiError(Code.BAD_PARAMETER, "PageNumber*PageSize+PageSize must be at most 5000")
        total, files = await catalog.search(query, number * size, size)
        return {
            "Tencent": tencent_search(
                files, min(total, TENCENT_WINDOW), lambda f: catalog.url(app, f)
            )
        }
    limit = _int(params, "MaxKeys", 1000, 1, 1000)
    files = await catalog.after(query, _marker(params.first("Marker")), limit + 1)
    more = len(files) > limit
    files = files[:limit]
    marker = next_marker(files[-1].created_ms, files[-1].id) if more else ""
    keys = vendor_keys(files, vendor, lambda f: catalog.url(app, f))
    return {vendor.value: {"NextMarker": marker, "Keys": keys}}


def _delete_ids(params: Params) -> list[str]:
    plain = params.all("FileId")
    indexed: list[str] = []
    n = 0
    while (value := params.first(f"Media.{n}.FileId")) is not None:
        if any(k.startswith(f"Media.{n}.Resolution") for k in params.values):
            raise ApiError(
                Code.BAD_PARAMETER, "cdnrec keeps no transcodes: omit Media.N.Resolution"
            )
        indexed.append(value)
        n += 1
    if plain and indexed:
        raise ApiError(Code.BAD_PARAMETER, "give either FileId[] or Media.N.FileId, not both")
    ids = list(dict.fromkeys(plain or indexed))
    if not ids:
        raise ApiError(Code.BAD_PARAMETER, "FileId[] is missing")
    if len(ids) > 100:
        raise ApiError(Code.BAD_PARAMETER, f"at most 100 FileId[] per call, got {len(ids)}")
    return ids


async def delete_media(services: Services, app: App, params: Params) -> Any:
    """DeleteMedia: delete files by the vendor's file id; all or nothing."""
    vendor = requests.vendor(params)
    ids = _delete_ids(params)
    try:
        await services.catalog.delete(app, vendor, ID_COLUMN[vendor], ids)
    except FilesNotFound as exc:
        raise ApiError(Code.FILE_NOT_FOUND, str(exc)) from exc
    except FilesBusy as exc:
        raise ApiError(Code.BAD_PARAMETER, str(exc)) from exc
    return None


class SequenceGuard:
    """DescribeRTCStreamState's rule: per stream, Sequence must increase within 10 s."""

    def __init__(self, window: float = 10.0) -> None:
        self._window = window
        self._last: dict[str, tuple[float, str]] = {}

    def check(self, key: str, sequence: str, now: float) -> bool:
        """Record `sequence`; False when it does not increase on the last one seen recently."""
        if len(self._last) > 100_000:
            self._last = {k: v for k, v in self._last.items() if now - v[0] < self._window}
        last = self._last.get(key)
        self._last[key] = (now, sequence)
        if last is None or now - last[0] >= self._window:
            return True
        previous = last[1]
        if previous.isdigit() and sequence.isdigit():
            return int(sequence) > int(previous)
        return sequence > previous


async def describe_rtc_stream_state(services: Services, app: App, params: Params) -> Any:
    """DescribeRTCStreamState: is the stream live at one of the app's sources now."""
    stream_id = (params.first("StreamId") or "").strip()
    if not stream_id:
        raise ApiError(Code.BAD_PARAMETER, "StreamId is missing")
    if not requests.STREAM_ID.match(stream_id):
        raise ApiError(Code.STREAM_ID_RULE, "StreamId violates the naming rules")
    sequence = (params.first("Sequence") or "").strip()
    if not sequence:
        raise ApiError(Code.BAD_PARAMETER, "Sequence is missing")
    now = time.time()
    if not services.sequences.check(f"{app.app_id}:{stream_id}", sequence, now):
        raise ApiError(Code.BAD_PARAMETER, "Sequence must increase for a stream within 10 s")
    sources = tuple(dict.fromkeys(s for cfg in app.vendors.values() for s in cfg.sources))
    if not await services.probe.is_live(sources, stream_id):
        raise ApiError(Code.STREAM_NOT_FOUND, "stream does not exist")
    return {"create_time": str(int(now)), "close_time": ""}
