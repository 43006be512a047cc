"""NOTIFY under load: a client that stops reading, a burst bigger than the session's queue,
and a client that goes away with notifications pending (RFC 5465 §5.8, §9)."""

from __future__ import annotations

import asyncio
import time

import pytest

from mailpost.imap.handlers.notify_selected import MAX_NEW_FETCH
from mailpost.store.types import BlobRef, DeliveryTarget
from tests.e2e.harness import ServerThread
from tests.imapserver.mailbox_support import account_id, message
from tests.imapserver.notify_support import (
    assert_quiet,
    logged_in,
    register_notify,
    store_deliver,
    wait_for,
)

OVERFLOW = b"* OK [NOTIFICATIONOVERFLOW] "
BIG = 3_000_000


@pytest.fixture(autouse=True)
def _notify(monkeypatch: pytest.MonkeyPatch) -> None:
    register_notify(monkeypatch)


def is_overflow(line: bytes) -> bool:
    return line.startswith(OVERFLOW)


def bulk(server: ServerThread, big_copies: int, small_deliveries: int) -> float:
    """``big_copies`` large messages into INBOX, then ``small_deliveries`` separate
    deliveries into Junk (each its own bus change); returns the seconds it took."""
    owner = account_id(server)

    async def stored(data: bytes) -> BlobRef:
        writer = server.store.blobs.writer()
        writer.write(data)
        return await writer.finish()

    async def run() -> None:
        big = await stored(message("big", "x" * BIG + "\r\n"))
        await server.store.deliver(big, [DeliveryTarget(owner, "INBOX")] * big_copies)
        small = await stored(message("small"))
        junk = [DeliveryTarget(owner, "Junk")]
        await asyncio.gather(*(server.store.deliver(small, junk)
                               for _ in range(small_deliveries)))

    started = time.monotonic()
    server.call(run(), timeout=60)
    return time.monotonic() - started


def test_client_that_stops_reading_overflows_without_blocking_anyone(
        server: ServerThread) -> None:
    slow = logged_in(server)
    slow.ok("SELECT INBOX")
    slow.ok("NOTIFY SET (selected (MessageNew (BODY.PEEK[]) MessageExpunge))"
            " (personal (MessageNew MessageExpunge))")
    watcher = logged_in(server)
    watcher.ok("NOTIFY SET (inboxes (MessageNew MessageExpunge))")
    # The slow session is stuck writing 18 MB nobody reads while 1100 changes arrive:
    # delivery does not wait for it, and its bounded queue overflows.
    elapsed = bulk(server, big_copies=6, small_deliveries=1100)
    assert elapsed < 20
    assert b"STATUS INBOX" in wait_for(watcher, lambda line: True, timeout=2)[0]
    lines = wait_for(slow, is_overflow, timeout=20)
    assert lines[0] == b"* 6 EXISTS" and len(lines) == 8  # 6 FETCH, then the overflow
    # RFC 5465 §5.8: then as if NOTIFY NONE: nothing more between commands...
    store_deliver(server, "Junk")
    store_deliver(server, "INBOX")
    assert_quiet(slow)
    # ...the selected mailbox is still kept in step at commands, and NOTIFY works again.
    assert slow.ok("NOOP") == [b"* 7 EXISTS"]
    slow.ok("NOTIFY SET (personal (MessageNew MessageExpunge))")
    store_deliver(server, "Junk")
    assert wait_for(slow, lambda line: True)[0].startswith(b"* STATUS Junk (MESSAGES 1102 ")


def test_too_many_new_messages_to_fetch_in_idle(server: ServerThread) -> None:
    client = logged_in(server)
    client.ok("SELECT INBOX")
    client.ok("NOTIFY SET (selected (MessageNew (UID) MessageExpunge))")
    client.send(b"i1 IDLE\r\n")
    assert client.read_response().startswith(b"+ ")
    store_deliver(server, "INBOX", count=MAX_NEW_FETCH + 1)
    lines = wait_for(client, is_overflow)
    # EXISTS keeps the message numbers right; the FETCHes are not attempted.
    assert lines == [b"* %d EXISTS" % (MAX_NEW_FETCH + 1), lines[-1]]
    store_deliver(server, "INBOX")
    # Still in IDLE, which reports the selected mailbox as plain IMAP does.
    assert wait_for(client, lambda line: True) == [b"* %d EXISTS" % (MAX_NEW_FETCH + 2)]
    client.send(b"DONE\r\n")
    assert client.read_response().startswith(b"i1 OK")


def test_disconnect_with_notifications_pending(server: ServerThread) -> None:
    owner = account_id(server)
    gone = logged_in(server)
    gone.ok("SELECT INBOX")
    gone.ok("NOTIFY SET (selected (MessageNew (BODY.PEEK[]) MessageExpunge))"
            " (personal (MessageNew MessageExpunge))")
    bus = server.server.bus
    assert bus.subscriber_count(owner) == 1
    bulk(server, big_copies=2, small_deliveries=50)
    gone.close()
    store_deliver(server, "Junk")
    deadline = time.monotonic() + 5
    while bus.subscriber_count(owner) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert bus.subscriber_count(owner) == 0  # the session ended and unsubscribed
    fresh = logged_in(server)
    fresh.ok("NOTIFY SET (personal (MessageNew MessageExpunge))")
    store_deliver(server, "Junk")
    assert wait_for(fresh, lambda line: True)[0].startswith(b"* STATUS Junk (MESSAGES 52 ")
