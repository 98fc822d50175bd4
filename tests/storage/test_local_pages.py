"""The local folder lets a stored file's pages leave the page cache (checked with ``fincore``)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from cdnrec.config import Settings
from cdnrec.engine.checksums import Checksums
from cdnrec.storage import Storages
from tests.support.pages import needs_fincore, resident

pytestmark = needs_fincore


def _written(tmp_path: Path, key: str) -> tuple[Storages, Path, bytes]:
    """The storages of a service in ``tmp_path``, and 4 MB just written at ``key`` (in the
    page cache)."""
    storages = Storages(Settings.model_validate({"server": {"data_dir": str(tmp_path)}}))
    data = os.urandom(4 << 20)
    path = storages.local.root / key
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return storages, path, data


def test_stored_files_and_segments_leave_the_page_cache(tmp_path: Path) -> None:
    storages, flv, data = _written(tmp_path, "1/s/a.flv")
    root = storages.local.root
    segments = root / "1/s/p"
    segments.mkdir()
    (segments / "00000.ts").write_bytes(data[: 1 << 20])
    playlist = root / "1/s/p.m3u8"
    playlist.write_text("#EXTM3U\n#EXTINF:1.0,\np/00000.ts\n#EXT-X-ENDLIST\n")
    if resident(flv) == 0:
        pytest.skip("this filesystem keeps written files out of the page cache")

    asyncio.run(storages.local.store("1/s/a.flv"))
    asyncio.run(storages.local.store("1/s/p.m3u8"))

    assert resident(flv) == 0
    assert resident(segments / "00000.ts") == 0
    assert resident(playlist) == 0
    assert flv.read_bytes() == data, "the bytes are on disk, read back from it"
    assert (segments / "00000.ts").read_bytes() == data[: 1 << 20]


def test_a_recording_read_back_for_its_checksum_is_read_from_the_cache_then_dropped(
    tmp_path: Path,
) -> None:
    """Stored for a reader (``read_next``), a file keeps its pages until its checksum is read:
    the checksum does not read back from disk what was just written, and drops them after."""
    storages, flv, data = _written(tmp_path, "1/s/b.flv")
    if resident(flv) == 0:
        pytest.skip("this filesystem keeps written files out of the page cache")

    asyncio.run(storages.local.store("1/s/b.flv", read_next=True))
    assert resident(flv) == len(data)

    sums: list[tuple[str, str]] = []
    checksums = Checksums(sums.extend)
    checksums.add(flv, "1/s/b.flv")
    assert checksums.close(timeout=30)
    assert sums == [("1/s/b.flv", hashlib.sha256(data).hexdigest())]
    assert resident(flv) == 0
