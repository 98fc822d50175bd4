"""The checksum thread: reads files back after they are announced, reports them in batches."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

import cdnrec.engine.checksums as checksums_module
from cdnrec.engine.checksums import Checksums


class Sums:
    """Collects what a Checksums reports, with the thread it reported on."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, str]]] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, sums: list[tuple[str, str]]) -> None:
        with self.lock:
            self.batches.append(sums)
            self.threads.add(threading.current_thread().name)

    def all(self) -> dict[str, str]:
        return {key: digest for batch in self.batches for key, digest in batch}


def _files(folder: Path, count: int, size: int) -> dict[str, bytes]:
    data = {f"a/{i}.flv": os.urandom(size) for i in range(count)}
    for key, body in data.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(body)
    return data


def test_every_file_handed_in_is_reported_with_its_sha256_once_closed(tmp_path: Path) -> None:
    data = _files(tmp_path, 12, 3 << 20)
    sums = Sums()
    checksums = Checksums(sums, every=60.0)  # one report: at close
    for key in data:
        checksums.add(tmp_path / key, key)
    assert checksums.close(timeout=30)
    assert sums.all() == {key: hashlib.sha256(body).hexdigest() for key, body in data.items()}
    assert len(sums.batches) == 1
    assert sums.threads == {"checksums"}


def test_a_file_removed_after_it_was_handed_in_is_still_read(tmp_path: Path) -> None:
    """It is opened when handed in: a storage target may take it away before it is read."""
    data = _files(tmp_path, 1, 1 << 20)
    sums = Sums()
    checksums = Checksums(sums)
    key = next(iter(data))
    checksums.add(tmp_path / key, key)
    (tmp_path / key).unlink()
    assert checksums.close(timeout=30)
    assert sums.all() == {key: hashlib.sha256(data[key]).hexdigest()}


def test_a_missing_file_is_skipped_and_the_others_reported(tmp_path: Path) -> None:
    data = _files(tmp_path, 2, 1000)
    sums = Sums()
    checksums = Checksums(sums)
    checksums.add(tmp_path / "gone.flv", "gone.flv")
    for key in data:
        checksums.add(tmp_path / key, key)
    assert checksums.close(timeout=30)
    assert set(sums.all()) == set(data)


def test_reports_come_while_files_keep_coming_and_the_thread_runs_at_nice_19(
    tmp_path: Path,
) -> None:
    data = _files(tmp_path, 3, 1000)
    sums = Sums()
    reported = threading.Event()
    nice: list[int] = []

    def report(batch: list[tuple[str, str]]) -> None:
        nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        sums(batch)
        reported.set()

    checksums = Checksums(report, every=0.05)
    keys = list(data)
    checksums.add(tmp_path / keys[0], keys[0])
    assert reported.wait(10), "a file alone is reported within `every`"
    for key in keys[1:]:
        checksums.add(tmp_path / key, key)
    assert checksums.close(timeout=30)
    assert set(sums.all()) == set(data)
    assert len(sums.batches) >= 2
    assert nice
    assert all(n == 19 for n in nice)
    assert checksums.close(timeout=1)  # closing twice is harmless


def test_only_so_many_waiting_files_are_held_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``OPEN_AHEAD`` files waiting, a file is opened when it is read: one removed by then
    is skipped, where one opened ahead is still read."""
    monkeypatch.setattr(checksums_module, "OPEN_AHEAD", 2)
    data = _files(tmp_path, 6, 1000)
    keys = list(data)
    sums = Sums()
    reporting = threading.Event()
    go_on = threading.Event()

    def report(batch: list[tuple[str, str]]) -> None:
        sums(batch)
        reporting.set()
        assert go_on.wait(10)

    checksums = Checksums(report, every=0.0)
    checksums.add(tmp_path / keys[0], keys[0])
    assert reporting.wait(10)  # the thread is busy reporting the first file
    for key in keys[1:]:
        checksums.add(tmp_path / key, key)
    for key in keys:
        (tmp_path / key).unlink()
    go_on.set()
    assert checksums.close(timeout=30)
    assert sums.all() == {k: hashlib.sha256(data[k]).hexdigest() for k in keys[:3]}
