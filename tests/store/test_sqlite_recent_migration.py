"""Schema version 8: mailboxes that existed before it start their \\Recent mark at UIDNEXT
(what is stored already counts as announced), and the marks only move forward."""

from __future__ import annotations

from pathlib import Path

from mailpost.bus import LocalBus
from mailpost.store.sqlite import SQLiteStore
from tests.store.helpers import database_at_version


async def test_existing_mailboxes_start_at_uidnext_and_marks_only_advance(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    conn = database_at_version(data_dir, 7)
    conn.executescript("""
        INSERT INTO domains (name) VALUES ('example.org');
        INSERT INTO accounts (address, domain, password_hash)
             VALUES ('alice@example.org', 'example.org', 'hash');
        INSERT INTO mailboxes (account_id, name, uidvalidity, uidnext) VALUES (1, 'INBOX', 7, 42);
    """)
    conn.close()
    store = await SQLiteStore.open(data_dir, LocalBus())
    try:
        info = await store.get_mailbox(1, "INBOX")
        assert info is not None and info.recent_uid == 42
        await store.keep_recent_uids([(info.id, 50), (info.id + 99, 3)])  # unknown: skipped
        await store.keep_recent_uids([(info.id, 45)])  # never backwards
        again = await store.get_mailbox(1, "INBOX")
        assert again is not None and again.recent_uid == 50
    finally:
        await store.close()
