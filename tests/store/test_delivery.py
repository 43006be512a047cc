"""Conformance: deliver (local + queue in one step), the queue, bus events, concurrency, restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from mailpost.bus import Change, ChangeKind, LocalBus
from mailpost.store.errors import AlreadyExists, NotFound, OverQuota
from mailpost.store.interface import MailStore
from mailpost.store.types import (
    Account,
    DeliveryTarget,
    FlagMode,
    MailboxInfo,
    OutboundEnvelope,
    OutboundRecipient,
)
from tests.store.conftest import StoreFactory
from tests.store.helpers import eventually, mailbox, put_body

OUTBOUND = OutboundEnvelope(
    sender="alice@example.org",
    recipients=(OutboundRecipient("carol@remote.net", notify="SUCCESS,FAILURE",
                                  orcpt="rfc822;carol@remote.net"),
                OutboundRecipient("dave@remote.net")),
    ret="HDRS", envid="ENV-1", submitter="alice@example.org")


async def test_deliver_local_and_queue_together(store: MailStore, alice: Account,
                                                bob: Account) -> None:
    body = await put_body(store, b"hello world")
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    outcome = await store.deliver(body, [
        DeliveryTarget(alice.id),
        DeliveryTarget(bob.id, "Junk", frozenset({"$Junk"})),
        DeliveryTarget(bob.id, "No/Such/Folder"),  # falls back to INBOX
        DeliveryTarget(bob.id, "bad//name"),       # invalid: INBOX too
    ], OUTBOUND, when)
    placed = [(meta.mailbox_id, meta.uid, meta.flags) for meta in outcome.local]
    alice_inbox = await mailbox(store, alice.id, "INBOX")
    bob_inbox = await mailbox(store, bob.id, "INBOX")
    bob_junk = await mailbox(store, bob.id, "Junk")
    assert placed == [(alice_inbox.id, 1, frozenset()), (bob_junk.id, 1, frozenset({"$Junk"})),
                      (bob_inbox.id, 1, frozenset()), (bob_inbox.id, 2, frozenset())]
    assert all(meta.internal_date == when and meta.blob_id == body.id
               for meta in outcome.local)

    queued = outcome.queued
    assert queued is not None
    assert (queued.sender, queued.recipients, queued.blob) == \
        (OUTBOUND.sender, OUTBOUND.recipients, body)
    assert (queued.ret, queued.envid, queued.submitter) == ("HDRS", "ENV-1", "alice@example.org")
    assert queued.attempts == 0 and queued.last_error is None
    assert queued.next_attempt is not None
    assert abs(queued.next_attempt - queued.created) < timedelta(seconds=1)
    assert abs(queued.created - datetime.now(UTC)) < timedelta(minutes=1)
    assert await store.list_queue() == [queued]
    assert await store.get_queue_entry(queued.id) == queued


async def test_deliver_is_atomic_when_a_target_is_over_quota(store: MailStore, alice: Account,
                                                             bob: Account) -> None:
    await store.set_quota(bob.address, 5, None)
    body = await put_body(store, b"more than five bytes")
    with pytest.raises(OverQuota):
        await store.deliver(body, [DeliveryTarget(alice.id),
                                   DeliveryTarget(bob.id, enforce_quota=True)], OUTBOUND)
    assert (await mailbox(store, alice.id, "INBOX")).messages == 0
    assert (await mailbox(store, alice.id, "INBOX")).uidnext == 1
    assert await store.list_queue() == []
    # SMTP accepted the recipient earlier, so by default delivery may overshoot the quota.
    outcome = await store.deliver(body, [DeliveryTarget(bob.id)])
    assert len(outcome.local) == 1


async def test_deliver_is_atomic_when_an_account_is_gone(store: MailStore,
                                                         alice: Account) -> None:
    body = await put_body(store)
    with pytest.raises(NotFound):
        await store.deliver(body, [DeliveryTarget(alice.id), DeliveryTarget(alice.id + 99)],
                            OUTBOUND)
    assert (await mailbox(store, alice.id, "INBOX")).messages == 0
    assert await store.list_queue() == []


async def test_duplicate_targets_get_distinct_messages(store: MailStore,
                                                       alice: Account) -> None:
    body = await put_body(store)
    outcome = await store.deliver(body, [DeliveryTarget(alice.id), DeliveryTarget(alice.id)])
    assert [meta.uid for meta in outcome.local] == [1, 2]
    assert (await mailbox(store, alice.id, "INBOX")).messages == 2


async def test_target_mailbox_names_are_normalised(store: MailStore, alice: Account) -> None:
    await store.create_mailbox(alice.id, "INBOX/Lists")
    body = await put_body(store)
    outcome = await store.deliver(body, [DeliveryTarget(alice.id, "inbox"),
                                         DeliveryTarget(alice.id, "inbox/Lists")])
    inbox = await mailbox(store, alice.id, "INBOX")
    lists = await mailbox(store, alice.id, "INBOX/Lists")
    assert [meta.mailbox_id for meta in outcome.local] == [inbox.id, lists.id]


async def test_queue_only_delivery_and_queue_deletion(store: MailStore, alice: Account) -> None:
    body = await put_body(store, b"outbound only")
    outcome = await store.deliver(body, [], OUTBOUND)
    assert outcome.local == ()
    assert outcome.queued is not None
    await store.delete_queue_entry(outcome.queued.id)
    assert await store.get_queue_entry(outcome.queued.id) is None
    assert await store.list_queue() == []
    with pytest.raises(NotFound):
        await store.delete_queue_entry(outcome.queued.id)

    async def body_gone() -> bool:
        try:
            await store.blobs.read(body)
        except NotFound:
            return True
        return False

    assert await eventually(body_gone)


async def test_queue_entry_keeps_body_alive(store: MailStore, alice: Account) -> None:
    body = await put_body(store, b"local and remote")
    outcome = await store.deliver(body, [DeliveryTarget(alice.id)], OUTBOUND)
    inbox = await mailbox(store, alice.id, "INBOX")
    await store.expunge(inbox.id, [outcome.local[0].uid])
    await asyncio.sleep(0.05)
    assert await store.blobs.read(body) == b"local and remote"


# -- bus events ------------------------------------------------------------------------------


async def _drain(bus: LocalBus, account_id: int, action: object) -> list[Change]:
    with bus.subscribe(account_id) as subscription:
        await action  # type: ignore[misc]
        changes, overflowed = subscription.take()
    assert not overflowed
    return changes


async def test_bus_events_have_the_right_kinds(store: MailStore, bus: LocalBus, alice: Account,
                                               inbox: MailboxInfo) -> None:
    body = await put_body(store)
    archive = await mailbox(store, alice.id, "Archive")

    [new] = await _drain(bus, alice.id, store.deliver(body, [DeliveryTarget(alice.id)]))
    assert (new.kind, new.mailbox_id, new.modseq, new.mailbox_name) == \
        (ChangeKind.MESSAGE_NEW, inbox.id, 2, "INBOX")
    [flags] = await _drain(bus, alice.id, store.store_flags(
        inbox.id, [1], FlagMode.ADD, frozenset({"\\Seen"})))
    assert (flags.kind, flags.mailbox_id, flags.modseq) == (ChangeKind.FLAGS, inbox.id, 3)
    [copied] = await _drain(bus, alice.id, store.copy(inbox.id, [1], archive.id))
    assert (copied.kind, copied.mailbox_id) == (ChangeKind.MESSAGE_NEW, archive.id)
    moved = await _drain(bus, alice.id, store.move(archive.id, [1], inbox.id))
    assert {(c.kind, c.mailbox_id) for c in moved} == {
        (ChangeKind.MESSAGE_NEW, inbox.id), (ChangeKind.EXPUNGE, archive.id)}
    [gone] = await _drain(bus, alice.id, store.expunge(inbox.id, [1, 2]))
    assert (gone.kind, gone.mailbox_id) == (ChangeKind.EXPUNGE, inbox.id)
    assert await _drain(bus, alice.id, store.expunge(inbox.id, [1, 2])) == []


async def test_bus_events_for_mailboxes_and_subscriptions(store: MailStore, bus: LocalBus,
                                                          alice: Account, bob: Account) -> None:
    [created] = await _drain(bus, alice.id, store.create_mailbox(alice.id, "P"))
    assert (created.kind, created.mailbox_name) == (ChangeKind.MAILBOX, "P")
    await store.create_mailbox(alice.id, "P/q")
    renamed = await _drain(bus, alice.id, store.rename_mailbox(alice.id, "P", "R"))
    assert sorted((c.kind, c.mailbox_name) for c in renamed) == [
        (ChangeKind.MAILBOX, "R"), (ChangeKind.MAILBOX, "R/q")]
    [deleted] = await _drain(bus, alice.id, store.delete_mailbox(alice.id, "R/q"))
    assert (deleted.kind, deleted.mailbox_name) == (ChangeKind.MAILBOX, "R/q")
    [subscribed] = await _drain(bus, alice.id, store.set_subscribed(alice.id, "R", True))
    assert (subscribed.kind, subscribed.mailbox_name) == (ChangeKind.SUBSCRIPTION, "R")
    # Other accounts hear nothing, and failed operations publish nothing.
    assert await _drain(bus, bob.id, store.create_mailbox(alice.id, "S")) == []
    with bus.subscribe(alice.id) as subscription:
        with pytest.raises(AlreadyExists):
            await store.create_mailbox(alice.id, "S")
        assert subscription.take() == ([], False)


async def test_bus_events_arrive_after_commit(store: MailStore, bus: LocalBus,
                                              alice: Account, inbox: MailboxInfo) -> None:
    """A session woken by the bus must already find the change in the store."""
    seen: list[tuple[int, int]] = []

    async def session() -> None:
        with bus.subscribe(alice.id) as subscription:
            while len(seen) < 10:
                changes, _ = await subscription.wait()
                for change in changes:
                    assert change.mailbox_id is not None
                    state = await store.changes_since(change.mailbox_id, change.modseq - 1)
                    seen.append((change.modseq, len(state.updated)))

    watcher = asyncio.create_task(session())
    await asyncio.sleep(0)
    bodies = [await put_body(store) for _ in range(10)]
    await asyncio.gather(*(store.deliver(body, [DeliveryTarget(alice.id)]) for body in bodies))
    await asyncio.wait_for(watcher, 5)
    assert all(visible >= 1 for _, visible in seen)
    assert [modseq for modseq, _ in seen] == sorted(modseq for modseq, _ in seen)


# -- concurrency and restart -----------------------------------------------------------------


async def test_concurrent_deliveries_get_distinct_increasing_uids(
        store: MailStore, alice: Account) -> None:
    bodies = [await put_body(store, b"message %d" % n) for n in range(200)]
    outcomes = await asyncio.gather(
        *(store.deliver(body, [DeliveryTarget(alice.id)]) for body in bodies))
    uids = [outcome.local[0].uid for outcome in outcomes]
    assert sorted(uids) == list(range(1, 201))
    # Calls were queued in order, so they were committed in order.
    assert uids == sorted(uids)
    inbox = await mailbox(store, alice.id, "INBOX")
    assert (inbox.messages, inbox.uidnext, inbox.highest_modseq) == (200, 201, 201)
    stored = await store.messages(inbox.id)
    assert [await store.blobs.read(meta.blob_id) for meta in stored[:3]] == \
        [b"message 0", b"message 1", b"message 2"]


async def test_failing_operation_does_not_affect_its_batch(store: MailStore,
                                                           alice: Account) -> None:
    results = await asyncio.gather(
        store.create_mailbox(alice.id, "x"), store.create_mailbox(alice.id, "x"),
        store.create_mailbox(alice.id, "y"), return_exceptions=True)
    assert sum(isinstance(result, AlreadyExists) for result in results) == 1
    assert await store.get_mailbox(alice.id, "x") is not None
    assert await store.get_mailbox(alice.id, "y") is not None


async def test_everything_survives_a_restart(factory: StoreFactory, store: MailStore,
                                             alice: Account) -> None:
    await store.add_alias("team@example.org", "alice@example.org")
    await store.create_mailbox(alice.id, "Keep/Me")
    body = await put_body(store, b"durable")
    outcome = await store.deliver(body, [DeliveryTarget(alice.id, flags=frozenset({"$A"}))],
                                  OUTBOUND)
    await store.expunge(outcome.local[0].mailbox_id, [outcome.local[0].uid])
    again = await store.deliver(body, [DeliveryTarget(alice.id)])
    before = await store.list_mailboxes(alice.id)
    queue = await store.list_queue()
    await store.close()

    reopened = await factory.open()
    assert await reopened.list_domains() == ["example.org"]
    assert await reopened.get_account("alice@example.org") == alice
    assert await reopened.alias_targets("team@example.org") == ["alice@example.org"]
    assert await reopened.list_mailboxes(alice.id) == before
    inbox = await mailbox(reopened, alice.id, "INBOX")
    assert await reopened.messages(inbox.id) == list(again.local)
    assert (await reopened.changes_since(inbox.id, 0)).expunged == (1,)
    assert await reopened.list_queue() == queue
    assert await reopened.blobs.read(body) == b"durable"
    newer = await reopened.deliver(await put_body(reopened), [DeliveryTarget(alice.id)])
    assert newer.local[0].uid == 3  # UIDNEXT survived the restart
