"""An S3-compatible bucket as a storage target (boto3, run in threads off the event loop).

Files are staged under the local storage root by the recorder; `store` uploads them (an M3U8's
segments first, its playlist last), verifies the upload, and removes the local copy unless
`keep_local`. Replay URLs stay cdnrec's signed /files/ URLs, which redirect to a fresh presigned
URL (so relative segment URLs of a playlist keep working), or point at `public_url` when the
bucket is public.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from cdnrec.config import S3Settings
from cdnrec.storage.local import LocalStorage
from cdnrec.storage.urls import file_url


class S3Storage:
    """A named S3-compatible bucket."""

    def __init__(self, name: str, settings: S3Settings, staging: LocalStorage, public_url: str):
        self.name = name
        self._settings = settings
        self._staging = staging
        self._public_url = public_url
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=settings.endpoint_url or None,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id or None,
            aws_secret_access_key=settings.secret_key() or None,
            config=Config(
                retries={"max_attempts": 6, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"},
            ),
        )

    def object_key(self, key: str) -> str:
        """The bucket key of a storage key."""
        return f"{self._settings.prefix}{key}"

    async def store(self, key: str) -> None:
        """Upload the staged file (and segments), verify sizes, drop the local copy."""
        path = self._staging.path_of(key)
        if path is None:
            raise ValueError(f"key {key!r} is outside the storage root")
        await asyncio.to_thread(self._upload_tree, key, path)

    def _upload_tree(self, key: str, path: Path) -> None:
        if not path.exists():
            self._client.head_object(Bucket=self._settings.bucket, Key=self.object_key(key))
            return  # uploaded before (a retry after the local copy went)
        segments = _segments_of(path)
        parts = [(f"{key[: -len('.m3u8')]}/{seg.name}", seg) for seg in segments] + [(key, path)]
        for part_key, part in parts:
            self._upload(part_key, part)
        if not self._settings.keep_local:
            for seg in segments:
                seg.unlink(missing_ok=True)
            if segments:
                shutil.rmtree(path.with_suffix(""), ignore_errors=True)
            path.unlink(missing_ok=True)

    def _upload(self, key: str, path: Path) -> None:
        bucket, object_key = self._settings.bucket, self.object_key(key)
        self._client.upload_file(str(path), bucket, object_key)
        head = self._client.head_object(Bucket=bucket, Key=object_key)
        if int(head["ContentLength"]) != path.stat().st_size:
            raise OSError(f"upload of {key} to s3://{bucket} is incomplete")

    async def delete(self, key: str) -> None:
        """Delete the object (and an M3U8's segment objects) and any local copy."""
        await asyncio.to_thread(self._delete_tree, key)
        await self._staging.delete(key)

    def _delete_tree(self, key: str) -> None:
        bucket = self._settings.bucket
        if key.endswith(".m3u8"):
            prefix = self.object_key(key[: -len(".m3u8")] + "/")
            listing = self._client.list_objects_v2(Bucket=bucket, Prefix=prefix)
            for item in listing.get("Contents", []):
                self._client.delete_object(Bucket=bucket, Key=item["Key"])
        self._client.delete_object(Bucket=bucket, Key=self.object_key(key))

    async def fetch(self, key: str, scratch: Path) -> Path:
        """The staged copy when there is one, else a download into `scratch`."""
        staged = self._staging.path_of(key)
        if staged is not None and staged.exists():
            return staged
        return await asyncio.to_thread(self._download_tree, key, scratch)

    def _download_tree(self, key: str, scratch: Path) -> Path:
        bucket = self._settings.bucket
        target = (scratch / key).resolve()
        if not target.is_relative_to(scratch.resolve()):
            raise ValueError(f"key {key!r} leaves the scratch folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client.download_file(bucket, self.object_key(key), str(target))
        except ClientError as exc:
            raise FileNotFoundError(key) from exc
        if key.endswith(".m3u8"):
            prefix = self.object_key(key[: -len(".m3u8")] + "/")
            folder = target.with_suffix("")
            folder.mkdir(exist_ok=True)
            listing = self._client.list_objects_v2(Bucket=bucket, Prefix=prefix)
            for item in listing.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                self._client.download_file(bucket, item["Key"], str(folder / name))
        return target

    def direct_url(self, key: str) -> str | None:
        """A presigned GET URL (or the public URL) of the object."""
        if self._settings.public_url:
            return f"{self._settings.public_url.rstrip('/')}/{quote(self.object_key(key))}"
        url: str = self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self._settings.bucket, "Key": self.object_key(key)},
            ExpiresIn=int(self._settings.presign_ttl),
        )
        return url

    def url(self, app_id: int, secret: str, key: str, expires: int) -> str:
        """The replay URL: public when configured, else cdnrec's signed URL (redirecting)."""
        if self._settings.public_url:
            return f"{self._settings.public_url.rstrip('/')}/{quote(self.object_key(key))}"
        return file_url(self._public_url, app_id, secret, key, expires)


def _segments_of(path: Path) -> list[Path]:
    folder = path.with_suffix("") if path.suffix == ".m3u8" else None
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file())
