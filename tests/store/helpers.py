"""Helpers shared by the store tests."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

from mailpost.store.interface import MailStore
from mailpost.store.sqlite.schema import MIGRATIONS
from mailpost.store.types import BlobRef, MailboxInfo


async def put_body(store: MailStore, data: bytes = b"Subject: hi\r\n\r\nhello\r\n") -> BlobRef:
    """Store a body durably and return its reference."""
    writer = store.blobs.writer()
    writer.write(data)
    return await writer.finish()


async def mailbox(store: MailStore, account_id: int, name: str) -> MailboxInfo:
    """The mailbox's current state (counters, uidnext, modseq); it must exist."""
    info = await store.get_mailbox(account_id, name)
    assert info is not None, name
    return info


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> bool:
    """Poll ``check`` until true (for effects that follow a commit, like body removal)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def database_at_version(data_dir: Path, version: int) -> sqlite3.Connection:
    """Create ``data_dir`` with a SQLite database as schema ``version`` left it (to test the
    migrations after it); the caller adds rows and closes the connection."""
    data_dir.mkdir()
    conn = sqlite3.connect(data_dir / "mailpost.db", isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:version], start=1):
        conn.executescript(f"{script}\nPRAGMA user_version = {number};")
    return conn


def stored_files(directory: Path) -> list[Path]:
    """Every file below ``directory`` (bodies on disk, spool leftovers), sorted."""
    return sorted(path for path in directory.rglob("*") if path.is_file())
