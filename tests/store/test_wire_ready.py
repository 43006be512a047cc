"""Conformance: a message remembers whether its body can be sent unchanged (RETR fast path),
whichever way it was stored, and read_many returns several bodies in one call."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from mailpost.bus import LocalBus
from mailpost.store.blobs import SPILL_THRESHOLD
from mailpost.store.interface import MailStore
from mailpost.store.sqlite import SQLiteStore
from mailpost.store.sqlite.schema import MIGRATIONS
from mailpost.store.types import Account, DeliveryTarget, MailboxInfo
from tests.store.helpers import database_at_version, mailbox, put_body

WHEN = datetime(2024, 5, 17, 9, 30, 15, tzinfo=UTC)
READY = b"Subject: ready\r\n\r\nline\r\n"
BARE_LF = b"Subject: bare\n\nline\n"
DOT_LINE = b"Subject: dot\r\n\r\n.starts with a dot\r\n"


async def test_append_records_the_verdict(store: MailStore, alice: Account,
                                          inbox: MailboxInfo) -> None:
    for data, ready in ((READY, True), (BARE_LF, False), (DOT_LINE, False)):
        body = await put_body(store, data)
        assert body.wire_ready is ready
        meta = await store.append(alice.id, inbox.id, body, frozenset(), WHEN)
        assert meta.wire_ready is ready
    listed = await store.messages(inbox.id)
    assert [meta.wire_ready for meta in listed] == [True, False, False]


async def test_a_large_body_stored_as_a_file_is_checked_too(store: MailStore, alice: Account,
                                                            inbox: MailboxInfo) -> None:
    line = b"x" * 98 + b"\r\n"
    big = b"Subject: big\r\n\r\n" + line * (2 * SPILL_THRESHOLD // len(line))
    writer = store.blobs.writer()
    for start in range(0, len(big), 4096):
        writer.write(big[start:start + 4096])
    body = await writer.finish()
    assert body.wire_ready is True
    meta = await store.append(alice.id, inbox.id, body, frozenset(), WHEN)
    assert meta.wire_ready is True
    assert await store.blobs.read(meta.blob_id) == big


async def test_copy_move_and_delivery_keep_it(store: MailStore, alice: Account,
                                              inbox: MailboxInfo) -> None:
    archive = await mailbox(store, alice.id, "Archive")
    trash = await mailbox(store, alice.id, "Trash")
    ready = await store.append(alice.id, inbox.id, await put_body(store, READY), frozenset(),
                               WHEN)
    plain = await store.append(alice.id, inbox.id, await put_body(store, BARE_LF), frozenset(),
                               WHEN)
    await store.copy(inbox.id, [ready.uid, plain.uid], archive.id)
    await store.move(archive.id, [1, 2], trash.id)
    assert [meta.wire_ready for meta in await store.messages(trash.id)] == [True, False]
    await store.deliver(await put_body(store, READY), [DeliveryTarget(alice.id)])
    assert (await store.messages(inbox.id))[-1].wire_ready is True


async def test_read_many_returns_the_bodies_that_exist(store: MailStore, alice: Account,
                                                       inbox: MailboxInfo) -> None:
    small = await put_body(store, READY)
    large = await put_body(store, b"Subject: l\r\n\r\n" + b"y" * (SPILL_THRESHOLD + 10))
    for body in (small, large):
        await store.append(alice.id, inbox.id, body, frozenset(), WHEN)
    found = await store.blobs.read_many([small, large.id, "i" + "0" * 32, "not-an-id"])
    assert found == {small.id: READY, large.id: await store.blobs.read(large)}
    assert await store.blobs.read_many([]) == {}


async def test_a_version_5_database_gains_the_column_with_not_known_as_default(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    database_at_version(data_dir, 5).close()
    store = await SQLiteStore.open(data_dir, LocalBus())
    try:
        await store.add_domain("example.org")
        account = await store.add_account("old@example.org", "hash")
        inbox = await mailbox(store, account.id, "INBOX")
        meta = await store.append(account.id, inbox.id, await put_body(store, READY),
                                  frozenset(), WHEN)
        assert meta.wire_ready is True
    finally:
        await store.close()
    conn = sqlite3.connect(data_dir / "mailpost.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS) >= 6
        default = conn.execute("SELECT dflt_value FROM pragma_table_info('messages')"
                               " WHERE name = 'wire_ready'").fetchone()[0]
        assert default == "0"
    finally:
        conn.close()
