"""SearchMedia answers in each vendor's shape (zego-api.md §7.1)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from cdnrec.config import Vendor
from cdnrec.store.models import RecordedFile

FOREVER = "9999-12-31T23:59:59Z"
AUDIO_FORMATS = frozenset({"aac", "mp3"})


def iso(ms: int | None) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC, Tencent style."""
    if ms is None:
        return FOREVER
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tencent_search(
    files: list[RecordedFile], total: int, url: Callable[[RecordedFile], str]
) -> dict[str, Any]:
    """`Data.Tencent` of SearchMedia."""
    return {
        "RequestId": str(uuid.uuid4()),
        "TotalCount": total,
        "MediaInfoSet": [
            {
                "FileId": f.public_id,
                "BasicInfo": {
                    "Name": f.name or "",
                    "Description": "",
                    "CreateTime": iso(f.created_ms),
                    "UpdateTime": iso(f.end_ms or f.created_ms),
                    "ExpireTime": iso(f.expire_ms),
                    "ClassId": 0,
                    "ClassName": "",
                    "ClassPath": "",
                    "CoverUrl": "",
                    "Type": f.format,
                    "MediaUrl": url(f),
                    "IntranetMediaUrl": "",
                    "SourceInfo": {"SourceType": "Record", "SourceContext": f.stream_id},
                    "StorageRegion": f.storage,
                    "Vid": "",
                    "Category": "Audio" if f.format in AUDIO_FORMATS else "Video",
                    "Status": "Normal",
                    "StorageClass": "STANDARD",
                },
                "TranscodeInfo": {"TranscodeSet": []},
            }
            for f in files
        ],
    }


def vendor_keys(
    files: list[RecordedFile], vendor: Vendor, url: Callable[[RecordedFile], str]
) -> list[dict[str, Any]]:
    """`Keys` of a Ws or Huawei SearchMedia answer."""
    return [
        {
            "Key": f.handle if vendor is Vendor.WS else (f.key or ""),
            "ETag": (f.sha256 or "")[:32],
            "Size": f.size or 0,
            "LastModified": iso(f.end_ms or f.created_ms),
            "MediaUrl": url(f),
        }
        for f in files
    ]
