"""Storage targets for recorded files: a local folder (S3-compatible buckets to come)."""

from cdnrec.storage.base import Storage
from cdnrec.storage.local import LocalStorage
from cdnrec.storage.registry import Storages
from cdnrec.storage.s3 import S3Storage
from cdnrec.storage.urls import file_url, grants, scope_of, url_signature

__all__ = [
    "LocalStorage",
    "S3Storage",
    "Storage",
    "Storages",
    "file_url",
    "grants",
    "scope_of",
    "url_signature",
]
