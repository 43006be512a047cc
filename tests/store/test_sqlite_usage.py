"""SQLite store, per-account usage counters: always equal to the real sums, and migrated."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailpost.bus import LocalBus
from mailpost.store.sqlite import SQLiteStore
from mailpost.store.sqlite.schema import MIGRATIONS
from mailpost.store.types import (
    Account,
    DeliveryTarget,
    FlagMode,
    OutboundEnvelope,
    OutboundRecipient,
)
from tests.store.helpers import database_at_version, mailbox, put_body

WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)






def _real_usage(data_dir: Path) -> dict[int, tuple[int, int]]:
    """(bytes, messages) of every account, summed over its message rows."""
    conn = sqlite3.connect(data_dir / "mailpost.db")
    try:
        return {row[0]: (row[1], row[2]) for row in conn.execute(
            "SELECT a.id, COALESCE(SUM(m.size), 0), COUNT(m.id) FROM accounts a"
            " LEFT JOIN mailboxes b ON b.account_id = a.id"
            " LEFT JOIN messages m ON m.mailbox_id = b.id GROUP BY a.id")}
    finally:
        conn.close()


async def _check(store: SQLiteStore, data_dir: Path, accounts: list[Account]) -> None:
    real = _real_usage(data_dir)
    for account in accounts:
        assert await store.account_usage(account.id) == real.get(account.id, (0, 0))


async def test_counters_follow_every_kind_of_change(sqlite_store: SQLiteStore,
                                                    data_dir: Path) -> None:
    store = sqlite_store
    await store.add_domain("example.org")
    alice = await store.add_account("alice@example.org", "a")
    bob = await store.add_account("bob@example.org", "b")
    accounts = [alice, bob]
    inbox = await mailbox(store, alice.id, "INBOX")
    archive = await mailbox(store, alice.id, "Archive")
    bob_inbox = await mailbox(store, bob.id, "INBOX")

    first = await put_body(store, b"x" * 100)
    outbound = OutboundEnvelope("alice@example.org", (OutboundRecipient("c@remote.test"),))
    await store.deliver(first, [DeliveryTarget(alice.id), DeliveryTarget(bob.id),
                                DeliveryTarget(alice.id, "Archive")], outbound)
    await _check(store, data_dir, accounts)
    assert await store.account_usage(alice.id) == (200, 2)

    for size in (10, 20, 30):
        body = await put_body(store, b"y" * size)
        await store.append(alice.id, inbox.id, body, frozenset(), WHEN)
    await _check(store, data_dir, accounts)

    await store.store_flags(inbox.id, [1, 2], FlagMode.ADD, frozenset({"\\Seen"}))
    await store.copy(inbox.id, [1, 2, 3], archive.id)
    await _check(store, data_dir, accounts)

    await store.move(archive.id, [1, 2], inbox.id)
    await store.expunge(inbox.id, [2, 3])
    await _check(store, data_dir, accounts)

    await store.create_mailbox(alice.id, "Projects")
    await store.copy(inbox.id, [1, 4], (await mailbox(store, alice.id, "Projects")).id)
    await store.rename_mailbox(alice.id, "Projects", "Old")
    await _check(store, data_dir, accounts)
    before = await store.account_usage(alice.id)
    await store.delete_mailbox(alice.id, "Old")
    await _check(store, data_dir, accounts)
    assert await store.account_usage(alice.id) < before

    await store.copy(bob_inbox.id, [1], bob_inbox.id)
    await store.remove_account(bob.address)
    await _check(store, data_dir, accounts)
    assert await store.account_usage(bob.id) == (0, 0)
    assert (await store.account_usage(alice.id))[1] == len(
        await store.messages(inbox.id)) + len(await store.messages(archive.id))


async def test_quota_uses_the_counters(sqlite_store: SQLiteStore, data_dir: Path) -> None:
    await sqlite_store.add_domain("example.org")
    alice = await sqlite_store.add_account("alice@example.org", "a", quota_messages=2)
    conn = sqlite3.connect(data_dir / "mailpost.db")
    conn.execute("UPDATE accounts SET used_messages = 2 WHERE id = ?", (alice.id,))
    conn.commit()
    conn.close()
    inbox = await mailbox(sqlite_store, alice.id, "INBOX")
    from mailpost.store.errors import OverQuota
    with pytest.raises(OverQuota):
        await sqlite_store.append(alice.id, inbox.id, await put_body(sqlite_store),
                                  frozenset(), WHEN)


async def test_migration_initialises_the_counters(data_dir: Path) -> None:
    conn = database_at_version(data_dir, 1)
    conn.executescript("""
        INSERT INTO domains (name) VALUES ('example.org');
        INSERT INTO accounts (address, domain, password_hash)
             VALUES ('alice@example.org', 'example.org', 'a'),
                    ('bob@example.org', 'example.org', 'b');
        INSERT INTO mailboxes (account_id, name, uidvalidity) VALUES (1, 'INBOX', 1),
                                                                     (1, 'Archive', 2),
                                                                     (2, 'INBOX', 3);
        INSERT INTO messages (mailbox_id, uid, modseq, flags, seen, internal_date, size, blob_id)
             VALUES (1, 1, 2, '', 0, '2024-01-01T00:00:00+00:00', 100, 'a'),
                    (2, 1, 2, '', 0, '2024-01-01T00:00:00+00:00', 250, 'b'),
                    (2, 2, 3, '', 0, '2024-01-01T00:00:00+00:00', 5, 'c');
    """)
    conn.close()
    store = await SQLiteStore.open(data_dir, LocalBus())
    try:
        assert await store.account_usage(1) == (355, 3)
        assert await store.account_usage(2) == (0, 0)
    finally:
        await store.close()
    conn = sqlite3.connect(data_dir / "mailpost.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        conn.close()
