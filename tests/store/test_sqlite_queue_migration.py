"""Schema version 5: queue entries queued before it keep working and may get a delay warning."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailpost.bus import LocalBus
from mailpost.store.sqlite import SQLiteStore
from mailpost.store.sqlite.schema import MIGRATIONS
from tests.store.helpers import database_at_version


async def test_version_4_queue_gains_delay_warned(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    conn = database_at_version(data_dir, 4)
    conn.executescript("""
        INSERT INTO queue (sender, blob_id, blob_size, created, next_attempt)
             VALUES ('a@example.org', 'blob', 10, 1000.0, 1000.0);
        INSERT INTO queue_recipients (entry_id, position, address) VALUES (1, 0, 'c@remote.net');
    """)
    conn.close()
    store = await SQLiteStore.open(data_dir, LocalBus())
    try:
        [entry] = await store.list_queue()
        assert [r.address for r in entry.recipients] == ["c@remote.net"]
        assert await store.claim_delay_warning(entry.id) is True
        assert await store.claim_delay_warning(entry.id) is False
    finally:
        await store.close()
    conn = sqlite3.connect(data_dir / "mailpost.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 5
    finally:
        conn.close()
