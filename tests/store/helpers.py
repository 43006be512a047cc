"""Helpers shared by the store tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from mailpost.store.interface import MailStore
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
