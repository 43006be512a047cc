"""SQLite store, APOP secrets: the version 4 migration and the column that holds them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailpost.bus import LocalBus
from mailpost.store.sqlite import SQLiteStore
from mailpost.store.sqlite.schema import MIGRATIONS
from tests.store.helpers import database_at_version


def _database_at_version_3(data_dir: Path) -> None:
    conn = database_at_version(data_dir, 3)
    conn.executescript("""
        INSERT INTO domains (name) VALUES ('example.org');
        INSERT INTO accounts (address, domain, password_hash)
             VALUES ('alice@example.org', 'example.org', 'hash-a');
    """)
    conn.close()


async def test_version_3_database_gains_an_empty_secret_column(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    _database_at_version_3(data_dir)
    store = await SQLiteStore.open(data_dir, LocalBus())
    try:
        account = await store.get_account("alice@example.org")
        assert account is not None and account.password_hash == "hash-a"
        assert await store.get_apop_secret("alice@example.org") is None
        await store.set_apop_secret("alice@example.org", b"sealed")
        assert await store.get_apop_secret("alice@example.org") == b"sealed"
    finally:
        await store.close()
    conn = sqlite3.connect(data_dir / "mailpost.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        columns = {row[1]: row[2] for row in conn.execute("PRAGMA table_info(accounts)")}
        assert columns["apop_secret"] == "BLOB"
    finally:
        conn.close()


async def test_the_secret_is_stored_as_given(tmp_path: Path) -> None:
    """The store keeps the caller's sealed bytes: it never sees a secret in clear."""
    data_dir = tmp_path / "data"
    store = await SQLiteStore.open(data_dir, LocalBus())
    try:
        await store.add_domain("example.org")
        await store.add_account("bob@example.org", "hash", apop_secret=b"\x00\x01opaque")
    finally:
        await store.close()
    conn = sqlite3.connect(data_dir / "mailpost.db")
    try:
        [(stored,)] = conn.execute("SELECT apop_secret FROM accounts").fetchall()
        assert stored == b"\x00\x01opaque"
    finally:
        conn.close()
