"""SQLite store, small bodies kept inside the database: storage, reads, deletion, leaks."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailpost.bus import LocalBus
from mailpost.store.blobs import INLINE_PREFIX, SPILL_THRESHOLD, is_blob_id, is_inline_blob_id
from mailpost.store.errors import NotFound, OverQuota, StoreUnavailable
from mailpost.store.sqlite import SQLiteStore
from mailpost.store.sqlite import bodies as bodies_module
from mailpost.store.sqlite import writer as writer_module
from mailpost.store.sqlite.bodies import PendingBodies
from mailpost.store.types import Account, BlobRef, DeliveryTarget
from tests.store.helpers import eventually, mailbox, put_body, stored_files

BODY = b"Subject: small\r\n\r\n" + bytes(range(256)) * 8
DATE = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)









def _inline_rows(data_dir: Path) -> dict[str, bytes]:
    conn = sqlite3.connect(data_dir / "mailpost.db")
    try:
        return {row[0]: bytes(row[1]) for row in conn.execute("SELECT id, data FROM inline_bodies")}
    finally:
        conn.close()


async def _deliver(store: SQLiteStore, account: Account, data: bytes = BODY) -> BlobRef:
    ref = await put_body(store, data)
    await store.deliver(ref, [DeliveryTarget(account.id)])
    return ref


async def _is_gone(store: SQLiteStore, ref: BlobRef) -> bool:
    try:
        await store.blobs.read(ref)
    except NotFound:
        return True
    return False


async def test_small_body_round_trip_without_touchingstored_files(
        sqlite_store: SQLiteStore, account: Account, data_dir: Path) -> None:
    writer = sqlite_store.blobs.writer()
    writer.write(BODY[:100])
    writer.write(BODY[100:])
    ref = await writer.finish()
    assert ref.size == len(BODY) and ref.id.startswith(INLINE_PREFIX)
    assert is_blob_id(ref.id) and is_inline_blob_id(ref.id)
    assert await sqlite_store.blobs.read(ref) == BODY  # readable while still pending
    assert _inline_rows(data_dir) == {}  # nothing is stored before a transaction takes it
    outcome = await sqlite_store.deliver(ref, [DeliveryTarget(account.id)])
    assert outcome.local[0].blob_id == ref.id
    assert _inline_rows(data_dir) == {ref.id: BODY}
    assert len(sqlite_store.blobs.pending) == 0
    assert await sqlite_store.blobs.read(ref) == BODY
    assert await sqlite_store.blobs.read(ref.id, 10, 20) == BODY[10:20]
    assert await sqlite_store.blobs.read(ref, len(BODY) - 5) == BODY[-5:]
    assert await sqlite_store.blobs.read(ref, 20, 10) == b""
    assert await sqlite_store.blobs.read(ref, len(BODY) + 10) == b""
    body = await asyncio.to_thread(sqlite_store.blobs.open, ref)
    with body:
        assert body.read(7) == BODY[:7]
        assert body.read() == BODY[7:]
    assert stored_files(data_dir / "messages") == [] and stored_files(data_dir / "tmp") == []


async def test_unknown_inline_body_is_not_found(sqlite_store: SQLiteStore) -> None:
    missing = INLINE_PREFIX + "0" * 32
    with pytest.raises(NotFound):
        await sqlite_store.blobs.read(missing)
    with pytest.raises(NotFound):
        await asyncio.to_thread(sqlite_store.blobs.open, missing)
    with pytest.raises(NotFound):
        sqlite_store.blobs.files.path_of(missing)  # an inline id never names a file


async def test_inline_body_survives_reopen(data_dir: Path) -> None:
    store = await SQLiteStore.open(data_dir, LocalBus())
    await store.add_domain("example.org")
    account = await store.add_account("alice@example.org", "hash")
    ref = await _deliver(store, account)
    await store.close()
    reopened = await SQLiteStore.open(data_dir, LocalBus())
    try:
        assert await reopened.sweep_finished() == 0
        inbox = await mailbox(reopened, account.id, "INBOX")
        [meta] = await reopened.messages(inbox.id)
        assert (meta.blob_id, meta.size) == (ref.id, len(BODY))
        assert await reopened.blobs.read(meta.blob_id) == BODY
    finally:
        await reopened.close()


async def test_spill_threshold_decides_the_kind(sqlite_store: SQLiteStore, account: Account,
                                                data_dir: Path) -> None:
    largest_inline = b"i" * SPILL_THRESHOLD
    smallest_file = b"f" * (SPILL_THRESHOLD + 1)
    inline = await _deliver(sqlite_store, account, largest_inline)
    in_file = await _deliver(sqlite_store, account, smallest_file)
    assert is_inline_blob_id(inline.id)
    assert not is_inline_blob_id(in_file.id)
    assert list(_inline_rows(data_dir)) == [inline.id]
    assert [path.name for path in stored_files(data_dir / "messages")] == [in_file.id]
    assert await sqlite_store.blobs.read(in_file) == smallest_file
    assert await sqlite_store.blobs.read(inline) == largest_inline


async def test_body_is_deleted_with_its_last_message(sqlite_store: SQLiteStore,
                                                     account: Account, data_dir: Path) -> None:
    ref = await _deliver(sqlite_store, account)
    inbox = await mailbox(sqlite_store, account.id, "INBOX")
    archive = await mailbox(sqlite_store, account.id, "Archive")
    await sqlite_store.copy(inbox.id, [1], archive.id)
    await sqlite_store.expunge(inbox.id, [1])
    await sqlite_store.add_domain("example.net")  # another batch, for the reaper to run
    assert await sqlite_store.blobs.read(ref) == BODY  # the copy still uses it
    await sqlite_store.expunge(archive.id, [1])
    assert _inline_rows(data_dir) == {}  # gone in the expunge's own transaction
    assert await _is_gone(sqlite_store, ref)


async def test_mass_deletion_is_finished_by_the_reaper(sqlite_store: SQLiteStore,
                                                       account: Account, data_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    refs = [await _deliver(sqlite_store, account, BODY + bytes([n])) for n in range(5)]
    assert len(_inline_rows(data_dir)) == 5
    monkeypatch.setattr(writer_module, "INLINE_DELETES_PER_OP", 2)
    monkeypatch.setattr(writer_module, "REAP_CHUNK", 1)
    await sqlite_store.remove_account(account.address)
    assert len(_inline_rows(data_dir)) <= 3  # two went with the account

    async def rows_gone() -> bool:
        return _inline_rows(data_dir) == {}

    assert await eventually(rows_gone)  # the rest without any further write
    assert all([await _is_gone(sqlite_store, ref) for ref in refs])


async def test_sweep_removes_orphan_rows(data_dir: Path) -> None:
    store = await SQLiteStore.open(data_dir, LocalBus())
    await store.add_domain("example.org")
    account = await store.add_account("alice@example.org", "hash")
    kept = await _deliver(store, account, b"kept")
    orphans = [await _deliver(store, account, b"orphan %d" % n) for n in range(3)]
    await store.close()
    # A crash after the expunge committed but before the reaper's delete did.
    conn = sqlite3.connect(data_dir / "mailpost.db")
    conn.execute("DELETE FROM messages WHERE blob_id != ?", (kept.id,))
    conn.commit()
    conn.close()
    assert len(_inline_rows(data_dir)) == 4

    reopened = await SQLiteStore.open(data_dir, LocalBus())
    try:
        assert await reopened.sweep_finished() == 3
        assert list(_inline_rows(data_dir)) == [kept.id]
        assert await reopened.blobs.read(kept) == b"kept"
        assert all([await _is_gone(reopened, ref) for ref in orphans])
    finally:
        await reopened.close()


async def test_pending_body_expires_when_never_referenced() -> None:
    now = [1000.0]
    pending = PendingBodies(ttl=60, budget=1 << 20, clock=lambda: now[0])
    abandoned = pending.add(b"a" * 10)
    now[0] += 30
    recent = pending.add(b"b" * 20)
    assert abandoned is not None and recent is not None
    now[0] += 31  # the first is now 61 s old, the second 31 s
    later = pending.add(b"c")
    assert pending.get(abandoned) is None, "dropped when a new body arrived"
    assert pending.get(recent) == b"b" * 20 and later is not None
    assert (len(pending), pending.size) == (2, 21)
    pending.discard([recent, later, "unknown"])
    assert (len(pending), pending.size) == (0, 0)


async def test_pending_memory_is_bounded() -> None:
    pending = PendingBodies(ttl=60, budget=100)
    assert pending.add(b"x" * 60) is not None
    assert pending.add(b"y" * 50) is None  # over the budget
    assert pending.add(b"z" * 40) is not None
    assert pending.size == 100


async def test_over_budget_body_goes_to_a_file(data_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies_module, "PENDING_BUDGET", 2 * len(BODY))
    store = await SQLiteStore.open(data_dir, LocalBus())
    try:
        refs = [await put_body(store, BODY) for _ in range(3)]
        assert [is_inline_blob_id(ref.id) for ref in refs] == [True, True, False]
        assert [path.name for path in stored_files(data_dir / "messages")] == [refs[2].id]
        assert [await store.blobs.read(ref) for ref in refs] == [BODY] * 3
    finally:
        await store.close()


async def test_abort_and_release_drop_a_pending_body(sqlite_store: SQLiteStore,
                                                     account: Account) -> None:
    writer = sqlite_store.blobs.writer()
    writer.write(BODY)
    aborted = await writer.finish()
    writer.abort()  # the session gave up after finish()
    writer.abort()
    released = await put_body(sqlite_store, b"released")
    await sqlite_store.release_blob(released)
    assert len(sqlite_store.blobs.pending) == 0
    for ref in (aborted, released):
        assert await _is_gone(sqlite_store, ref)
        with pytest.raises(NotFound):
            await sqlite_store.deliver(ref, [DeliveryTarget(account.id)])
    inbox = await mailbox(sqlite_store, account.id, "INBOX")
    assert inbox.messages == 0


async def test_abort_before_finish_stores_nothing(sqlite_store: SQLiteStore) -> None:
    writer = sqlite_store.blobs.writer()
    writer.write(b"partial")
    writer.abort()
    with pytest.raises(StoreUnavailable):
        writer.write(b"more")
    with pytest.raises(StoreUnavailable):
        await writer.finish()
    assert len(sqlite_store.blobs.pending) == 0


async def test_rolled_back_delivery_keeps_the_body_pending(
        sqlite_store: SQLiteStore, account: Account, data_dir: Path) -> None:
    await sqlite_store.set_quota(account.address, 10)
    ref = await put_body(sqlite_store)
    with pytest.raises(OverQuota):
        await sqlite_store.deliver(ref, [DeliveryTarget(account.id, enforce_quota=True)])
    assert _inline_rows(data_dir) == {}
    assert len(sqlite_store.blobs.pending) == 1
    outcome = await sqlite_store.deliver(ref, [DeliveryTarget(account.id)])  # a retry works
    assert outcome.local[0].blob_id == ref.id
    assert list(_inline_rows(data_dir)) == [ref.id]


async def test_failed_commit_stores_no_body(sqlite_store: SQLiteStore, account: Account,
                                            data_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    original = writer_module.Writer._connection
    failures = [1]

    class FailingCommit:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql == "COMMIT" and failures:
                failures.pop()
                raise sqlite3.OperationalError("disk I/O error")
            return self._conn.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._conn, name)

    def wrapped(self: writer_module.Writer) -> Any:
        return FailingCommit(original(self))

    ref = await put_body(sqlite_store)
    monkeypatch.setattr(writer_module.Writer, "_connection", wrapped)
    with pytest.raises(StoreUnavailable):
        await sqlite_store.deliver(ref, [DeliveryTarget(account.id)])
    assert _inline_rows(data_dir) == {}
    assert (await mailbox(sqlite_store, account.id, "INBOX")).messages == 0
    assert await sqlite_store.blobs.read(ref) == b"Subject: hi\r\n\r\nhello\r\n"  # still pending
    await sqlite_store.deliver(ref, [DeliveryTarget(account.id)])
    assert list(_inline_rows(data_dir)) == [ref.id]


async def test_one_body_referenced_twice_is_stored_once(
        sqlite_store: SQLiteStore, account: Account, data_dir: Path) -> None:
    ref = await put_body(sqlite_store)
    inbox = await mailbox(sqlite_store, account.id, "INBOX")
    await asyncio.gather(
        sqlite_store.deliver(ref, [DeliveryTarget(account.id)]),
        sqlite_store.append(account.id, inbox.id, ref, frozenset(), DATE))
    assert list(_inline_rows(data_dir)) == [ref.id]
    assert len(await sqlite_store.messages(inbox.id)) == 2


async def test_wrong_size_is_refused(sqlite_store: SQLiteStore, account: Account) -> None:
    pending = await put_body(sqlite_store)
    stored = await _deliver(sqlite_store, account)
    for ref in (pending, stored):
        with pytest.raises(NotFound):
            await sqlite_store.deliver(BlobRef(ref.id, ref.size + 1),
                                       [DeliveryTarget(account.id)])
