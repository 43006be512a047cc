"""SQLite store internals: schema versioning, pragmas, group commit and failed commits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from mailpost.bus import Change, ChangeKind, LocalBus
from mailpost.store.errors import StoreUnavailable
from mailpost.store.sqlite import SQLiteStore
from mailpost.store.sqlite import writer as writer_module
from mailpost.store.sqlite.schema import MIGRATIONS
from mailpost.store.types import Account, DeliveryTarget
from tests.store.helpers import eventually, mailbox, put_body


def _connect(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(data_dir / "mailpost.db", isolation_level=None)


async def test_database_is_wal_and_at_the_newest_version(sqlite_store: SQLiteStore,
                                                         data_dir: Path) -> None:
    conn = _connect(data_dir)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        conn.close()
    for name in ("mailpost.db", "mailpost.db-wal", "mailpost.db-shm"):
        assert (data_dir / name).stat().st_mode & 0o777 == 0o600, name  # holds password hashes


async def test_newer_database_is_refused(data_dir: Path) -> None:
    store = await SQLiteStore.open(data_dir, LocalBus())
    await store.close()
    conn = _connect(data_dir)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(StoreUnavailable):
        await SQLiteStore.open(data_dir, LocalBus())


async def test_concurrent_writes_share_commits(sqlite_store: SQLiteStore, account: Account,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    batch_sizes: list[int] = []
    original = writer_module.Writer._run_batch

    def recording(self: writer_module.Writer, ops: list[Any]) -> None:
        batch_sizes.append(len(ops))
        original(self, ops)

    monkeypatch.setattr(writer_module.Writer, "_run_batch", recording)
    bodies = [await put_body(sqlite_store) for _ in range(100)]
    await asyncio.gather(*(sqlite_store.deliver(body, [DeliveryTarget(account.id)])
                           for body in bodies))
    assert sum(batch_sizes) == 100
    assert len(batch_sizes) < 100  # several deliveries shared a transaction (one fsync)


async def test_failed_commit_fails_the_whole_batch_and_recovers(
        sqlite_store: SQLiteStore, account: Account, bus: LocalBus,
        monkeypatch: pytest.MonkeyPatch) -> None:
    original = writer_module.Writer._connection
    commits: list[str] = []

    class FailingSecondCommit:
        def __init__(self, conn: sqlite3.Connection) -> None:
            self._conn = conn

        def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
            if sql == "COMMIT":
                commits.append(sql)
                if len(commits) == 2:
                    raise sqlite3.OperationalError("disk I/O error")
            return self._conn.execute(sql, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._conn, name)

    def wrapped(self: writer_module.Writer) -> Any:
        return FailingSecondCommit(original(self))

    monkeypatch.setattr(writer_module.Writer, "_connection", wrapped)
    entered, gate = threading.Event(), threading.Event()

    def hold(ctx: object) -> bool:
        entered.set()
        return gate.wait(5)

    # Hold the writer thread in a first batch so that the next two operations queue up and
    # form the second batch together, whose commit then fails.
    blocker = asyncio.ensure_future(sqlite_store._writer.run(hold))
    assert await asyncio.to_thread(entered.wait, 5)
    with bus.subscribe(account.id) as subscription:
        pending = asyncio.gather(
            sqlite_store.create_mailbox(account.id, "one"),
            sqlite_store.create_mailbox(account.id, "two"), return_exceptions=True)
        await asyncio.sleep(0.05)
        gate.set()
        assert await blocker is True
        results = await pending
        assert [type(result) for result in results] == [StoreUnavailable, StoreUnavailable]
        assert subscription.take() == ([], False)  # nothing committed, nothing announced
    assert len(commits) == 2
    assert await sqlite_store.get_mailbox(account.id, "one") is None
    assert await sqlite_store.get_mailbox(account.id, "two") is None
    created = await sqlite_store.create_mailbox(account.id, "one")  # a fresh connection
    assert created.name == "one"


async def test_cancelled_caller_does_not_undo_the_write(sqlite_store: SQLiteStore,
                                                        account: Account) -> None:
    task = asyncio.create_task(sqlite_store.create_mailbox(account.id, "Late"))
    await asyncio.sleep(0)  # the operation is queued to the writer
    task.cancel()

    async def created() -> bool:
        return await sqlite_store.get_mailbox(account.id, "Late") is not None

    assert await eventually(created)
    assert (await sqlite_store.create_mailbox(account.id, "After")).name == "After"


async def test_delivery_recreates_a_missing_inbox(sqlite_store: SQLiteStore, account: Account,
                                                  data_dir: Path) -> None:
    old = await mailbox(sqlite_store, account.id, "INBOX")
    conn = _connect(data_dir)
    conn.execute("DELETE FROM mailboxes WHERE name = 'INBOX'")
    conn.close()
    body = await put_body(sqlite_store)
    outcome = await sqlite_store.deliver(body, [DeliveryTarget(account.id, "Missing")])
    inbox = await mailbox(sqlite_store, account.id, "INBOX")
    assert outcome.local[0].mailbox_id == inbox.id
    assert inbox.uidvalidity > old.uidvalidity
    assert inbox.messages == 1


async def test_operations_after_close_are_refused(data_dir: Path) -> None:
    store = await SQLiteStore.open(data_dir, LocalBus())
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        await store.add_domain("example.org")
    with pytest.raises(StoreUnavailable):
        await store.list_domains()


class CheckingBus(LocalBus):
    """Records, at the moment of each publish, the thread and what a fresh reader sees."""

    def __init__(self, database: Path) -> None:
        super().__init__()
        self._database = database
        self.seen: list[tuple[Change, bool, int]] = []

    def publish(self, change: Change) -> None:
        conn = sqlite3.connect(self._database)
        try:
            visible = conn.execute("SELECT COUNT(*) FROM messages WHERE mailbox_id = ?"
                                   " AND modseq = ?", (change.mailbox_id, change.modseq))
            self.seen.append((change, visible.fetchone()[0] > 0, threading.get_ident()))
        finally:
            conn.close()
        super().publish(change)


async def test_publish_happens_after_commit_on_the_loop_thread(data_dir: Path) -> None:
    bus = CheckingBus(data_dir / "mailpost.db")
    store = await SQLiteStore.open(data_dir, bus)
    try:
        await store.add_domain("example.org")
        account = await store.add_account("alice@example.org", "hash")
        bus.seen.clear()
        bodies = [await put_body(store) for _ in range(30)]
        await asyncio.gather(*(store.deliver(body, [DeliveryTarget(account.id)])
                               for body in bodies))
    finally:
        await store.close()
    assert len(bus.seen) == 30
    assert all(change.kind is ChangeKind.MESSAGE_NEW for change, _, _ in bus.seen)
    assert all(visible for _, visible, _ in bus.seen)
    assert {thread for _, _, thread in bus.seen} == {threading.get_ident()}
    modseqs = [change.modseq for change, _, _ in bus.seen]
    assert modseqs == sorted(modseqs)  # in commit order
