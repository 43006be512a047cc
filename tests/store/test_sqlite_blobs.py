"""SQLite store, body files: the durable write protocol, I/O failures and the orphan sweep.

Bodies up to the spill threshold are stored inside the database (``test_sqlite_inline.py``), so
these tests make file bodies either by writing more than the threshold through the store's
writer or by using the file writer underneath it directly.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mailpost.bus import LocalBus
from mailpost.store import blobs as blobs_module
from mailpost.store.blobs import (
    SPILL_THRESHOLD,
    FileBlobWriter,
    is_file_blob_id,
    is_inline_blob_id,
    new_blob_id,
    new_inline_blob_id,
)
from mailpost.store.errors import NotFound, StoreUnavailable
from mailpost.store.sqlite import SQLiteStore
from mailpost.store.sqlite.bodies import BodyWriter
from mailpost.store.types import Account, DeliveryTarget
from tests.store.helpers import eventually, put_body, stored_files

# The smallest body the store's writer puts in a file.
FILE_SIZE = SPILL_THRESHOLD + 1


def _writer(store: SQLiteStore) -> BodyWriter:
    return store.blobs.writer()


def _file_writer(store: SQLiteStore) -> FileBlobWriter:
    return store.blobs.files.writer()


def _file_body(tag: bytes) -> bytes:
    """A body large enough to be stored as a file, starting with ``tag``."""
    return tag + b"." * (FILE_SIZE - len(tag))


async def test_small_body_is_written_only_at_finish(sqlite_store: SQLiteStore,
                                                    data_dir: Path) -> None:
    writer = _file_writer(sqlite_store)
    writer.write(b"a" * 100)
    writer.write(b"b" * 100)
    assert writer.size == 200
    assert stored_files(data_dir / "tmp") == []  # still in memory
    ref = await writer.finish()
    assert (ref.size, len(ref.id)) == (200, 32)
    final = data_dir / "messages" / ref.id[:2] / ref.id
    assert final.read_bytes() == b"a" * 100 + b"b" * 100
    assert final.stat().st_mode & 0o777 == 0o600
    assert stored_files(data_dir / "tmp") == []


async def test_large_body_spills_and_reads_back_in_ranges(sqlite_store: SQLiteStore) -> None:
    chunk = bytes(range(256)) * 64  # 16 KiB
    writer = _writer(sqlite_store)
    for _ in range(2 * SPILL_THRESHOLD // len(chunk) + 1):
        writer.write(chunk)
    ref = await writer.finish()
    expected = chunk * (2 * SPILL_THRESHOLD // len(chunk) + 1)
    assert ref.size == len(expected)
    assert await sqlite_store.blobs.read(ref) == expected
    assert await sqlite_store.blobs.read(ref, 10, 20) == expected[10:20]
    assert await sqlite_store.blobs.read(ref.id, len(expected) - 5) == expected[-5:]
    with sqlite_store.blobs.open(ref) as body:
        assert body.read(3) == expected[:3]


async def test_blob_ids_are_random_and_never_paths(sqlite_store: SQLiteStore) -> None:
    refs = [await put_body(sqlite_store, b"same bytes") for _ in range(3)]
    refs += [await put_body(sqlite_store, _file_body(b"same")) for _ in range(3)]
    assert len({ref.id for ref in refs}) == 6
    for bad in ("../mailpost.db", "..", "", "ab/../../etc", "A" * 32, "i" + "A" * 32,
                "i../../mailpost.db", "i" + "0" * 31, "x" + "0" * 32):
        with pytest.raises(NotFound):
            await sqlite_store.blobs.read(bad)
        with pytest.raises(NotFound):
            sqlite_store.blobs.open(bad)
    assert sqlite_store.blobs.free_space() > 0


async def test_abort_removes_the_partial_file(sqlite_store: SQLiteStore,
                                              data_dir: Path) -> None:
    writer = _writer(sqlite_store)
    writer.write(b"x" * (SPILL_THRESHOLD + 1))
    writer.abort()
    writer.abort()  # idempotent

    async def tmp_is_empty() -> bool:
        return stored_files(data_dir / "tmp") == []

    assert await eventually(tmp_is_empty)
    with pytest.raises(StoreUnavailable):
        writer.write(b"more")


@pytest.mark.parametrize(("size", "direct"), [(100, True), (3 * SPILL_THRESHOLD, False)])
async def test_fsync_failure_gives_store_unavailable_and_leaves_nothing(
        sqlite_store: SQLiteStore, account: Account, data_dir: Path,
        monkeypatch: pytest.MonkeyPatch, size: int, direct: bool) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    before = stored_files(data_dir / "messages")
    monkeypatch.setattr(os, "fsync", failing_fsync)
    writer: FileBlobWriter | BodyWriter = (
        _file_writer(sqlite_store) if direct else _writer(sqlite_store))
    writer.write(b"m" * size)
    with pytest.raises(StoreUnavailable):
        await writer.finish()
    writer.abort()  # safe after a failed finish
    monkeypatch.undo()
    assert stored_files(data_dir / "tmp") == []
    assert stored_files(data_dir / "messages") == before
    inbox = await sqlite_store.get_mailbox(account.id, "INBOX")
    assert inbox is not None and inbox.messages == 0
    # The store keeps working once the disk does.
    ref = await put_body(sqlite_store)
    assert len((await sqlite_store.deliver(ref, [DeliveryTarget(account.id)])).local) == 1


async def test_directory_fsync_failure_removes_the_renamed_body(
        sqlite_store: SQLiteStore, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync
    calls: list[int] = []

    def fail_second_fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the first is the file, the second its directory
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    before = stored_files(data_dir / "messages")
    monkeypatch.setattr(os, "fsync", fail_second_fsync)
    writer = _file_writer(sqlite_store)
    writer.write(b"body")
    with pytest.raises(StoreUnavailable):
        await writer.finish()
    assert len(calls) == 2  # never retried
    assert stored_files(data_dir / "messages") == before
    assert stored_files(data_dir / "tmp") == []


async def test_disk_full_while_spilling(sqlite_store: SQLiteStore, data_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    writer = _writer(sqlite_store)
    writer.write(b"s" * (SPILL_THRESHOLD + 10))  # starts a spill in a worker thread
    with pytest.raises(StoreUnavailable):
        await writer.finish()
    monkeypatch.undo()
    assert stored_files(data_dir / "tmp") == []


async def test_start_up_removes_tmp_leftovers_and_orphan_bodies(data_dir: Path) -> None:
    store = await SQLiteStore.open(data_dir, LocalBus())
    await store.add_domain("example.org")
    account = await store.add_account("alice@example.org", "hash")
    kept = await put_body(store, _file_body(b"delivered"))
    await store.deliver(kept, [DeliveryTarget(account.id)])
    # As if killed between finish() and the commit.
    orphan = await put_body(store, _file_body(b"never delivered"))
    await store.close()
    (data_dir / "tmp" / ("f" * 32)).write_bytes(b"half a message")

    reopened = await SQLiteStore.open(data_dir, LocalBus())
    try:
        assert stored_files(data_dir / "tmp") == []
        assert await reopened.sweep_finished() == 1
        assert await reopened.blobs.read(kept) == _file_body(b"delivered")
        with pytest.raises(NotFound):
            await reopened.blobs.read(orphan)
    finally:
        await reopened.close()


async def test_sweep_spares_bodies_written_after_start_up(data_dir: Path) -> None:
    first = await SQLiteStore.open(data_dir, LocalBus())
    await first.add_domain("example.org")
    account = await first.add_account("alice@example.org", "hash")
    for _ in range(20):  # orphans, so the sweep has work to do
        await put_body(first, _file_body(b"orphan"))
    await first.close()

    store = await SQLiteStore.open(data_dir, LocalBus())
    try:
        fresh = await put_body(store, _file_body(b"arrived during the sweep"))
        assert await store.sweep_finished() == 20
        outcome = await store.deliver(fresh, [DeliveryTarget(account.id)])
        assert await store.blobs.read(outcome.local[0].blob_id) == \
            _file_body(b"arrived during the sweep")
    finally:
        await store.close()


@pytest.mark.parametrize("padding", [0, FILE_SIZE], ids=["inline", "file"])
async def test_released_body_is_deleted(sqlite_store: SQLiteStore, account: Account,
                                        padding: int) -> None:
    unused = await put_body(sqlite_store, b"delivery failed" + b"." * padding)
    used = await put_body(sqlite_store, b"delivered")
    await sqlite_store.deliver(used, [DeliveryTarget(account.id)])
    await sqlite_store.release_blob(unused)
    await sqlite_store.release_blob(used)  # still referenced: kept

    async def unused_gone() -> bool:
        try:
            await sqlite_store.blobs.read(unused)
        except NotFound:
            return True
        return False

    assert await eventually(unused_gone)
    assert await sqlite_store.blobs.read(used) == b"delivered"


async def test_mailbox_names_never_touch_the_file_system(sqlite_store: SQLiteStore,
                                                         account: Account,
                                                         data_dir: Path) -> None:
    for name in ("etc", "passwd", "messages/00", "tmp", "x y"):
        await sqlite_store.create_mailbox(account.id, name)
    top = sorted(path.name for path in data_dir.iterdir())
    assert top == ["mailpost.db", "mailpost.db-shm", "mailpost.db-wal", "messages", "store.lock",
                   "tmp"]
    assert sorted(path.name for path in (data_dir / "messages").iterdir()) == \
        [f"{i:02x}" for i in range(256)]


async def test_second_process_does_not_clean_up_the_ownersstored_files(data_dir: Path) -> None:
    owner = await SQLiteStore.open(data_dir, LocalBus())
    try:
        await owner.add_domain("example.org")
        account = await owner.add_account("alice@example.org", "hash")
        in_flight = _writer(owner)
        in_flight.write(b"x" * (SPILL_THRESHOLD + 1))  # a tmp file exists from now on
        pending = await put_body(owner, _file_body(b"finished, not yet delivered"))
        assert await owner.sweep_finished() == 0
        # The command line tool opens the same directory while the server runs.
        other = await SQLiteStore.open(data_dir, LocalBus())
        assert await other.sweep_finished() == 0
        assert await other.list_domains() == ["example.org"]
        await other.close()
        rest = await in_flight.finish()
        outcome = await owner.deliver(pending, [DeliveryTarget(account.id)])
        assert outcome.local[0].blob_id == pending.id
        assert await owner.blobs.read(rest) == b"x" * (SPILL_THRESHOLD + 1)
    finally:
        await owner.close()


def test_ids_are_unique_and_a_forked_child_does_not_repeat_them() -> None:
    ids = {new_blob_id() for _ in range(2000)} | {new_inline_blob_id() for _ in range(2000)}
    assert len(ids) == 4000
    assert all(is_file_blob_id(blob_id) != is_inline_blob_id(blob_id) for blob_id in ids)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(writer, new_blob_id().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    child_id = os.read(reader, 100).decode()
    os.close(reader)
    assert is_file_blob_id(child_id)
    assert new_blob_id() != child_id


async def test_free_space_is_measured_at_most_once_a_second(
        sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real_statvfs = os.statvfs
    calls: list[object] = []

    def counting_statvfs(path: Path) -> os.statvfs_result:
        calls.append(path)
        return real_statvfs(path)

    monkeypatch.setattr(os, "statvfs", counting_statvfs)
    first = sqlite_store.blobs.free_space()
    assert first > 0
    assert [sqlite_store.blobs.free_space() for _ in range(5)] == [first] * 5
    assert len(calls) == 1  # within the second: the figure is reused
    monkeypatch.setattr(blobs_module, "FREE_SPACE_TTL", 0.0)  # as if the second had passed
    assert sqlite_store.blobs.free_space() > 0
    assert len(calls) == 2
