"""One contract, every storage target: the local folder and an S3-compatible bucket."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from cdnrec.config import Settings
from cdnrec.storage import Storage, Storages, grants
from tests.support.s3 import S3Server

PUBLIC = "http://127.0.0.1:9"


@pytest.fixture(params=["local", "s3"])
def target(
    request: pytest.FixtureRequest, tmp_path: Path, s3_server: S3Server
) -> tuple[Storage, Storages, S3Server]:
    bucket = f"b{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    settings = Settings.model_validate(
        {
            "server": {"data_dir": str(tmp_path), "public_url": PUBLIC},
            "storage": {"archive": s3_server.settings(bucket, prefix="rec/")},
        }
    )
    storages = Storages(settings)
    name = "archive" if request.param == "s3" else "local"
    return storages.get(name), storages, s3_server


def _stage(storages: Storages, key: str, data: bytes) -> Path:
    path = storages.local.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _stage_playlist(storages: Storages, key: str) -> list[str]:
    names = ["00000.ts", "00001.ts"]
    folder = storages.local.root / key.removesuffix(".m3u8")
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(bytes([i]) * 1000)
    lines = ["#EXTM3U", *(f"#EXTINF:1.0,\n{folder.name}/{n}" for n in names), "#EXT-X-ENDLIST"]
    _stage(storages, key, "\n".join(lines).encode())
    return names


def test_store_then_fetch_returns_the_same_bytes(
    target: tuple[Storage, Storages, S3Server], tmp_path: Path
) -> None:
    storage, storages, _ = target
    data = uuid.uuid4().bytes * 5000
    _stage(storages, "1/s/20260101/a.mp4", data)
    asyncio.run(storage.store("1/s/20260101/a.mp4"))
    fetched = asyncio.run(storage.fetch("1/s/20260101/a.mp4", tmp_path / "scratch"))
    assert fetched.read_bytes() == data


def test_playlists_travel_with_their_segments(
    target: tuple[Storage, Storages, S3Server], tmp_path: Path
) -> None:
    storage, storages, _ = target
    names = _stage_playlist(storages, "1/s/20260101/p.m3u8")
    asyncio.run(storage.store("1/s/20260101/p.m3u8"))
    fetched = asyncio.run(storage.fetch("1/s/20260101/p.m3u8", tmp_path / "scratch"))
    assert sorted(p.name for p in fetched.with_suffix("").iterdir()) == names
    asyncio.run(storage.delete("1/s/20260101/p.m3u8"))
    with pytest.raises(FileNotFoundError):
        asyncio.run(storage.fetch("1/s/20260101/p.m3u8", tmp_path / "scratch2"))


def test_delete_removes_the_file(
    target: tuple[Storage, Storages, S3Server], tmp_path: Path
) -> None:
    storage, storages, _ = target
    _stage(storages, "1/s/d.flv", b"x" * 100)
    asyncio.run(storage.store("1/s/d.flv"))
    asyncio.run(storage.delete("1/s/d.flv"))
    with pytest.raises(FileNotFoundError):
        asyncio.run(storage.fetch("1/s/d.flv", tmp_path / "scratch"))


def test_keys_outside_the_root_are_refused(target: tuple[Storage, Storages, S3Server]) -> None:
    storage, _, _ = target
    with pytest.raises(ValueError, match="outside"):
        asyncio.run(storage.store("../escape.mp4"))


def test_replay_url_is_signed_and_direct_url_serves_the_bytes(
    target: tuple[Storage, Storages, S3Server],
) -> None:
    storage, storages, _ = target
    _stage(storages, "7/s/u.aac", b"aac-bytes")
    asyncio.run(storage.store("7/s/u.aac"))
    url = storage.url(7, "secret-of-app-7", "7/s/u.aac", 4_000_000_000)
    _, _, _, _, app_id, expires, signature, *_ = url.split("/")
    assert url.startswith(f"{PUBLIC}/files/7/")
    assert grants("secret-of-app-7", int(app_id), int(expires), signature, "7/s/u.aac")
    assert not grants("another-secret", int(app_id), int(expires), signature, "7/s/u.aac")
    direct = storage.direct_url("7/s/u.aac")
    if direct is None:
        assert storage.name == "local"
    else:
        assert httpx.get(direct).content == b"aac-bytes"


def test_a_failing_target_loses_nothing_and_recovers(tmp_path: Path, s3_server: S3Server) -> None:
    bucket = f"late{uuid.uuid4().hex[:10]}"
    settings = Settings.model_validate(
        {
            "server": {"data_dir": str(tmp_path)},
            "storage": {"archive": s3_server.settings(bucket)},
        }
    )
    storages = Storages(settings)
    storage = storages.get("archive")
    staged = _stage(storages, "1/s/late.mp4", b"precious")
    with pytest.raises(Exception, match=r"NoSuchBucket|does not exist"):
        asyncio.run(storage.store("1/s/late.mp4"))
    assert staged.read_bytes() == b"precious", "the staged file is kept when the upload fails"
    s3_server.client().create_bucket(Bucket=bucket)
    asyncio.run(storage.store("1/s/late.mp4"))
    assert not staged.exists(), "uploaded files leave the staging folder"
    body = s3_server.client().get_object(Bucket=bucket, Key="1/s/late.mp4")["Body"].read()
    assert body == b"precious"
