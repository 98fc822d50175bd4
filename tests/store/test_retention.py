"""Retention with an injected clock and a disk watermark, on a real store and a real folder."""

from __future__ import annotations

from pathlib import Path

from cdnrec.catalog import Catalog, RetentionSweeper
from cdnrec.config import Settings, Vendor, VendorSettings
from cdnrec.storage import Storages
from cdnrec.store import FileFacts, FileState, Store, Task, TaskState
from cdnrec.store.ids import new_id

DAY_MS = 86_400_000


async def _world(tmp_path: Path) -> tuple[Store, Storages, Task]:
    store = await Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    storages = Storages(Settings.model_validate({"server": {"data_dir": str(tmp_path)}}))
    task = Task(
        id=new_id(),
        app_id=1,
        vendor=Vendor.TENCENT,
        stream_id="s",
        refs={},
        config=VendorSettings(),
        state=TaskState.RUNNING,
        created_ms=0,
        deadline_ms=DAY_MS,
    )
    await store.tasks.start(task)
    return store, storages, task


async def _file(
    store: Store, storages: Storages, task: Task, n: int, state: FileState, expire_ms: int | None
) -> str:
    key = f"1/s/f{n}.flv"
    (storages.local.root / "1/s").mkdir(parents=True, exist_ok=True)
    (storages.local.root / key).write_bytes(b"x" * 10)
    record = await store.files.opened(task, "flv", "", n * 1000, n * 1000)
    facts = FileFacts(key, n * 1000, n * 1000 + 500, 0.5, 10, ("h264",), "0" * 64, (), False)
    await store.files.closed(record.id, facts, expire_ms)
    await store.files.set_state(record.id, state)
    return key


async def test_expired_files_go_and_the_rest_stay(tmp_path: Path) -> None:
    store, storages, task = await _world(tmp_path)
    now_ms = 10 * DAY_MS
    gone = await _file(store, storages, task, 1, FileState.ANNOUNCED, now_ms - 1)
    fresh = await _file(store, storages, task, 2, FileState.ANNOUNCED, now_ms + DAY_MS)
    forever = await _file(store, storages, task, 3, FileState.ANNOUNCED, None)
    unannounced = await _file(store, storages, task, 4, FileState.STORED, now_ms - 1)
    closed = await _file(store, storages, task, 5, FileState.CLOSED, now_ms - 1)
    sweeper = RetentionSweeper(store, Catalog(store, storages), clock=lambda: now_ms / 1000)
    assert await sweeper.sweep() == 1
    root = storages.local.root
    assert not (root / gone).exists()
    for kept in (fresh, forever, unannounced, closed):
        assert (root / kept).exists(), kept
    assert (await store.files.by_key(gone)) is None
    await store.close()


async def test_high_watermark_deletes_oldest_announced_until_below(tmp_path: Path) -> None:
    store, storages, task = await _world(tmp_path)
    keys = [await _file(store, storages, task, n, FileState.ANNOUNCED, None) for n in range(5)]
    busy = await _file(store, storages, task, 9, FileState.STORED, None)
    root = storages.local.root

    def disk_used(_: Path) -> float:
        return 50.0 + 10.0 * sum(1 for p in root.rglob("*.flv"))

    sweeper = RetentionSweeper(
        store, Catalog(store, storages), high_watermark=75.0, local_root=root, disk_used=disk_used
    )
    assert await sweeper.sweep() == 4
    assert [(root / k).exists() for k in keys] == [False, False, False, False, True]
    assert (root / busy).exists(), "a file not yet announced is never deleted"
    await store.close()
