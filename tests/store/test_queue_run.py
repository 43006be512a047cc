"""Conformance: the queue operations of the delivery run (claim, attempt, complete, flush)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailpost.store.errors import NotFound
from mailpost.store.interface import MailStore
from mailpost.store.types import Account, OutboundEnvelope, OutboundRecipient, QueueEntry
from tests.store.conftest import StoreFactory
from tests.store.helpers import eventually, put_body

ENVELOPE = OutboundEnvelope(
    sender="alice@example.org",
    recipients=(OutboundRecipient("carol@remote.net"), OutboundRecipient("dave@other.net")))
FAR_FUTURE = datetime(2100, 1, 1, tzinfo=UTC)


async def _queue(store: MailStore) -> QueueEntry:
    outcome = await store.deliver(await put_body(store), [], ENVELOPE)
    assert outcome.queued is not None
    return outcome.queued


async def test_claim_takes_due_entries_once(store: MailStore, alice: Account) -> None:
    entry = await _queue(store)
    now = datetime.now(UTC) + timedelta(seconds=1)
    lease = now + timedelta(minutes=15)
    claimed = await store.due_queue_entries(now, 10, lease)
    assert [c.id for c in claimed] == [entry.id]
    assert claimed[0].next_attempt == lease
    assert await store.due_queue_entries(now, 10, lease) == []
    # Once the lease has run out (the runner died), the entry is due again.
    again = await store.due_queue_entries(lease, 10, lease + timedelta(minutes=15))
    assert [c.id for c in again] == [entry.id]


async def test_claim_respects_limit_and_time(store: MailStore, alice: Account) -> None:
    first, second = await _queue(store), await _queue(store)
    past = datetime.now(UTC) - timedelta(hours=1)
    assert await store.due_queue_entries(past, 10, FAR_FUTURE) == []
    now = datetime.now(UTC) + timedelta(seconds=1)
    claimed = await store.due_queue_entries(now, 1, FAR_FUTURE)
    assert [c.id for c in claimed] == [first.id]
    assert [c.id for c in await store.due_queue_entries(now, 5, FAR_FUTURE)] == [second.id]


async def test_record_attempt_schedules_and_counts(store: MailStore, alice: Account) -> None:
    entry = await _queue(store)
    later = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)
    await store.record_attempt(entry.id, later, "451 4.7.1 try later")
    stored = await store.get_queue_entry(entry.id)
    assert stored is not None
    assert (stored.attempts, stored.next_attempt, stored.last_error) == \
        (1, later, "451 4.7.1 try later")
    with pytest.raises(NotFound):
        await store.record_attempt(entry.id + 100, later, None)


async def test_complete_recipients_then_entry_goes(store: MailStore, alice: Account) -> None:
    entry = await _queue(store)
    remaining = await store.complete_recipients(entry.id, ["carol@remote.net"], "delivered")
    assert remaining == 1
    stored = await store.get_queue_entry(entry.id)
    assert stored is not None
    assert [r.address for r in stored.recipients] == ["dave@other.net"]
    assert await store.complete_recipients(entry.id, ["dave@other.net"], "failed",
                                           "550 no") == 0
    assert await store.get_queue_entry(entry.id) is None
    with pytest.raises(NotFound):
        await store.complete_recipients(entry.id, ["dave@other.net"], "failed")


async def test_complete_rejects_unknown_status(store: MailStore, alice: Account) -> None:
    entry = await _queue(store)
    with pytest.raises(ValueError):
        await store.complete_recipients(entry.id, ["carol@remote.net"], "lost")
    stored = await store.get_queue_entry(entry.id)
    assert stored is not None and len(stored.recipients) == 2


async def test_completed_entry_releases_body(store: MailStore, alice: Account) -> None:
    entry = await _queue(store)
    await store.complete_recipients(entry.id, ["carol@remote.net", "dave@other.net"],
                                    "delivered")

    async def body_gone() -> bool:
        try:
            await store.blobs.read(entry.blob)
        except NotFound:
            return True
        return False

    assert await eventually(body_gone)


async def test_reschedule_one_and_all(store: MailStore, alice: Account) -> None:
    first, second = await _queue(store), await _queue(store)
    await store.record_attempt(first.id, FAR_FUTURE, "x")
    await store.record_attempt(second.id, FAR_FUTURE, "x")
    now = datetime.now(UTC).replace(microsecond=0)
    assert await store.reschedule_queue(first.id, now) == 1
    due = await store.due_queue_entries(now + timedelta(seconds=1), 10, FAR_FUTURE)
    assert [e.id for e in due] == [first.id]
    assert await store.reschedule_queue(None, now) == 2
    with pytest.raises(NotFound):
        await store.reschedule_queue(second.id + 100, now)


async def test_delay_warning_claimed_once(store: MailStore, alice: Account,
                                          factory: StoreFactory) -> None:
    entry = await _queue(store)
    assert await store.claim_delay_warning(entry.id) is True
    assert await store.claim_delay_warning(entry.id) is False
    await store.close()
    reopened = await factory.open()
    assert await reopened.claim_delay_warning(entry.id) is False
