"""Conformance: UIDs, modseqs, flags, copy/move/expunge and ``changes_since``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import partial

import pytest

from mailpost.store.errors import NotFound, OverQuota
from mailpost.store.interface import MailStore
from mailpost.store.types import Account, BlobRef, FlagMode, MailboxInfo, MessageMeta, NewMessage
from tests.store.helpers import eventually, mailbox, put_body

WHEN = datetime(2024, 5, 17, 9, 30, 15, tzinfo=timezone(timedelta(hours=-7)))


async def _append(store: MailStore, account: Account, box: MailboxInfo,
                  flags: frozenset[str] = frozenset(), data: bytes = b"body\r\n") -> MessageMeta:
    body = await put_body(store, data)
    return await store.append(account.id, box.id, body, flags, WHEN)


async def _append_many(store: MailStore, account: Account, box: MailboxInfo,
                       count: int) -> list[MessageMeta]:
    return [await _append(store, account, box) for _ in range(count)]


async def _body_gone(store: MailStore, blob_id: str) -> bool:
    try:
        await store.blobs.read(blob_id)
    except NotFound:
        return True
    return False


# -- append, UIDs and counters ---------------------------------------------------------------


async def test_append_assigns_ascending_uids_and_modseqs(store: MailStore, alice: Account,
                                                         inbox: MailboxInfo) -> None:
    metas = await _append_many(store, alice, inbox, 3)
    assert [meta.uid for meta in metas] == [1, 2, 3]
    assert [meta.modseq for meta in metas] == [2, 3, 4]  # an empty mailbox is at modseq 1
    state = await mailbox(store, alice.id, "INBOX")
    assert (state.uidnext, state.highest_modseq, state.uidvalidity) == \
        (4, 4, inbox.uidvalidity)
    assert await store.messages(inbox.id) == metas


async def test_append_keeps_date_size_and_normalises_flags(store: MailStore, alice: Account,
                                                           inbox: MailboxInfo) -> None:
    meta = await _append(store, alice, inbox, frozenset({"\\SEEN", "\\Recent", "$Label"}),
                         data=b"x" * 1234)
    assert meta.flags == frozenset({"\\Seen", "$Label"})  # \Recent is never stored
    assert meta.internal_date == WHEN
    assert meta.internal_date.utcoffset() == timedelta(hours=-7)
    assert meta.size == 1234
    assert meta.email_id
    assert await store.blobs.read(meta.blob_id) == b"x" * 1234


async def test_counts_follow_appends_flags_and_expunges(store: MailStore, alice: Account,
                                                        inbox: MailboxInfo) -> None:
    await _append(store, alice, inbox, data=b"a" * 10)
    second = await _append(store, alice, inbox, frozenset({"\\Seen"}), data=b"b" * 20)
    third = await _append(store, alice, inbox, data=b"c" * 30)
    state = await mailbox(store, alice.id, "INBOX")
    assert (state.messages, state.unseen, state.size) == (3, 2, 60)
    await store.store_flags(inbox.id, [third.uid], FlagMode.ADD, frozenset({"\\Seen"}))
    await store.expunge(inbox.id, [second.uid])
    state = await mailbox(store, alice.id, "INBOX")
    assert (state.messages, state.unseen, state.size) == (2, 1, 40)


async def test_uids_are_never_reused(store: MailStore, alice: Account,
                                     inbox: MailboxInfo) -> None:
    metas = await _append_many(store, alice, inbox, 3)
    assert await store.expunge(inbox.id, [metas[2].uid]) == [3]
    after = await _append(store, alice, inbox)
    assert after.uid == 4
    assert (await mailbox(store, alice.id, "INBOX")).uidnext == 5


async def test_append_errors(store: MailStore, alice: Account, bob: Account,
                             inbox: MailboxInfo) -> None:
    body = await put_body(store)
    with pytest.raises(NotFound):  # the mailbox belongs to someone else
        await store.append(bob.id, inbox.id, body, frozenset(), WHEN)
    with pytest.raises(NotFound):
        await store.append(alice.id, inbox.id + 1000, body, frozenset(), WHEN)
    with pytest.raises(NotFound):  # a body that was never stored
        await store.append(alice.id, inbox.id, BlobRef("0" * 32, 5), frozenset(), WHEN)
    assert (await mailbox(store, alice.id, "INBOX")).uidnext == 1


# -- flags and modseq ------------------------------------------------------------------------


async def test_store_flags_modes_and_modseq(store: MailStore, alice: Account,
                                            inbox: MailboxInfo) -> None:
    first, second = await _append_many(store, alice, inbox, 2)
    update = await store.store_flags(inbox.id, [1, 2], FlagMode.ADD,
                                     frozenset({"\\Flagged", "Work"}))
    assert [meta.uid for meta in update.changed] == [1, 2]
    modseq = update.changed[0].modseq
    assert modseq == second.modseq + 1
    assert all(meta.modseq == modseq for meta in update.changed)
    assert update.changed[0].flags == frozenset({"\\Flagged", "Work"})

    update = await store.store_flags(inbox.id, [1], FlagMode.REMOVE, frozenset({"Work"}))
    assert update.changed[0].flags == frozenset({"\\Flagged"})
    assert update.changed[0].modseq == modseq + 1

    update = await store.store_flags(inbox.id, [2], FlagMode.REPLACE, frozenset({"\\Seen"}))
    assert update.changed[0].flags == frozenset({"\\Seen"})
    stored = {meta.uid: meta.flags for meta in await store.messages(inbox.id)}
    assert stored == {1: frozenset({"\\Flagged"}), 2: frozenset({"\\Seen"})}
    assert first.modseq < modseq


async def test_store_without_real_change_keeps_modseq(store: MailStore, alice: Account,
                                                      inbox: MailboxInfo) -> None:
    meta = await _append(store, alice, inbox, frozenset({"\\Seen"}))
    update = await store.store_flags(inbox.id, [meta.uid], FlagMode.ADD, frozenset({"\\seen"}))
    assert update.changed == ()
    update = await store.store_flags(inbox.id, [meta.uid, 99], FlagMode.REMOVE,
                                     frozenset({"\\Deleted"}))
    assert update.changed == ()
    state = await mailbox(store, alice.id, "INBOX")
    assert state.highest_modseq == meta.modseq
    assert (await store.messages(inbox.id))[0].modseq == meta.modseq


async def test_unchanged_since(store: MailStore, alice: Account, inbox: MailboxInfo) -> None:
    _, second = await _append_many(store, alice, inbox, 2)
    touched = await store.store_flags(inbox.id, [second.uid], FlagMode.ADD,
                                      frozenset({"$Later"}))
    # RFC 7162 §3.1.3: the message changed after the client's modseq fails the test.
    update = await store.store_flags(inbox.id, [1, 2], FlagMode.ADD, frozenset({"\\Seen"}),
                                     unchanged_since=second.modseq)
    assert update.failed_unchanged_since == (2,)
    assert [meta.uid for meta in update.changed] == [1]
    current = {meta.uid: meta for meta in await store.messages(inbox.id)}
    assert current[2].flags == frozenset({"$Later"})
    assert current[2].modseq == touched.changed[0].modseq
    assert current[1].flags == frozenset({"\\Seen"})

    update = await store.store_flags(inbox.id, [1, 2], FlagMode.ADD, frozenset({"\\Draft"}),
                                     unchanged_since=0)
    assert update.changed == ()
    assert update.failed_unchanged_since == (1, 2)


# -- changes_since ---------------------------------------------------------------------------


async def test_changes_since_reports_new_changed_and_expunged(store: MailStore, alice: Account,
                                                              inbox: MailboxInfo) -> None:
    metas = await _append_many(store, alice, inbox, 4)
    mark = (await mailbox(store, alice.id, "INBOX")).highest_modseq
    nothing = await store.changes_since(inbox.id, mark)
    assert (nothing.updated, nothing.expunged, nothing.highest_modseq, nothing.uidnext) == \
        ((), (), mark, 5)

    await store.store_flags(inbox.id, [3, 1], FlagMode.ADD, frozenset({"\\Answered"}))
    await store.expunge(inbox.id, [2, 42])
    new = await _append(store, alice, inbox)
    changes = await store.changes_since(inbox.id, mark)
    assert [meta.uid for meta in changes.updated] == [1, 3, new.uid]
    assert changes.expunged == (2,)
    assert changes.highest_modseq == new.modseq
    assert changes.uidnext == new.uid + 1

    everything = await store.changes_since(inbox.id, 0)
    assert [meta.uid for meta in everything.updated] == [1, 3, 4, 5]
    assert everything.expunged == (2,)
    assert metas[3] in everything.updated  # untouched since append: same modseq


async def test_changes_since_unknown_mailbox(store: MailStore) -> None:
    with pytest.raises(NotFound):
        await store.changes_since(12345, 0)
    with pytest.raises(NotFound):
        await store.messages(12345)


# -- copy, move, expunge ---------------------------------------------------------------------


async def test_copy_keeps_flags_date_and_email_id(store: MailStore, alice: Account,
                                                  inbox: MailboxInfo) -> None:
    archive = await mailbox(store, alice.id, "Archive")
    metas = [await _append(store, alice, inbox, frozenset({"\\Seen"})),
             await _append(store, alice, inbox),
             await _append(store, alice, inbox, frozenset({"$X"}))]
    pairs = await store.copy(inbox.id, [3, 1, 77], archive.id)
    assert pairs == [(1, 1), (3, 2)]
    copies = await store.messages(archive.id)
    assert [(c.uid, c.flags, c.internal_date, c.size, c.blob_id, c.email_id) for c in copies] \
        == [(n, m.flags, m.internal_date, m.size, m.blob_id, m.email_id)
            for n, m in ((1, metas[0]), (2, metas[2]))]
    assert await store.messages(inbox.id) == metas  # the source is untouched
    changes = await store.changes_since(archive.id, archive.highest_modseq)
    assert [meta.uid for meta in changes.updated] == [1, 2]
    assert len({meta.email_id for meta in metas}) == 3
    assert await store.copy(inbox.id, [500], archive.id) == []


async def test_copy_is_all_or_nothing_under_quota(store: MailStore, alice: Account,
                                                  inbox: MailboxInfo) -> None:
    await _append_many(store, alice, inbox, 3)
    await store.set_quota(alice.address, None, 4)
    archive = await mailbox(store, alice.id, "Archive")
    with pytest.raises(OverQuota):
        await store.copy(inbox.id, [1, 2], archive.id)
    assert await store.messages(archive.id) == []
    assert await mailbox(store, alice.id, "Archive") == archive
    assert await store.copy(inbox.id, [1], archive.id) == [(1, 1)]
    assert await store.copy(inbox.id, [2, 3], archive.id, enforce_quota=False) == \
        [(2, 2), (3, 3)]


async def test_move_expunges_the_source_in_the_same_step(store: MailStore, alice: Account,
                                                         inbox: MailboxInfo) -> None:
    trash = await mailbox(store, alice.id, "Trash")
    metas = await _append_many(store, alice, inbox, 3)
    mark = (await mailbox(store, alice.id, "INBOX")).highest_modseq
    pairs = await store.move(inbox.id, [1, 3], trash.id)
    assert pairs == [(1, 1), (3, 2)]
    assert [meta.uid for meta in await store.messages(inbox.id)] == [2]
    moved = await store.messages(trash.id)
    assert [meta.email_id for meta in moved] == [metas[0].email_id, metas[2].email_id]
    source_changes = await store.changes_since(inbox.id, mark)
    assert source_changes.expunged == (1, 3)
    assert source_changes.updated == ()
    assert (await mailbox(store, alice.id, "Trash")).messages == 2


async def test_bodies_are_shared_and_removed_with_the_last_reference(
        store: MailStore, alice: Account, inbox: MailboxInfo) -> None:
    archive = await mailbox(store, alice.id, "Archive")
    meta = await _append(store, alice, inbox, data=b"shared body")
    await store.copy(inbox.id, [meta.uid], archive.id)
    await store.expunge(inbox.id, [meta.uid])
    assert await store.blobs.read(meta.blob_id) == b"shared body"
    await store.expunge(archive.id, [1])
    assert await eventually(lambda: _body_gone(store, meta.blob_id))


async def test_delete_mailbox_removes_its_bodies(store: MailStore, alice: Account) -> None:
    box = await store.create_mailbox(alice.id, "Old")
    metas = await _append_many(store, alice, box, 3)
    await store.delete_mailbox(alice.id, "Old")
    for meta in metas:
        assert await eventually(partial(_body_gone, store, meta.blob_id))
    assert await store.account_usage(alice.id) == (0, 0)


async def test_expunge_ignores_missing_uids(store: MailStore, alice: Account,
                                            inbox: MailboxInfo) -> None:
    await _append_many(store, alice, inbox, 2)
    before = await mailbox(store, alice.id, "INBOX")
    assert await store.expunge(inbox.id, [5, 6]) == []
    assert await mailbox(store, alice.id, "INBOX") == before  # no modseq bump for nothing
    assert await store.expunge(inbox.id, [2, 1, 2]) == [1, 2]


async def test_append_quota(store: MailStore, alice: Account, inbox: MailboxInfo) -> None:
    await store.set_quota(alice.address, 100, None)
    await _append(store, alice, inbox, data=b"x" * 60)
    body = await put_body(store, b"y" * 41)
    with pytest.raises(OverQuota):
        await store.append(alice.id, inbox.id, body, frozenset(), WHEN)
    assert (await mailbox(store, alice.id, "INBOX")).messages == 1
    await store.append(alice.id, inbox.id, body, frozenset(), WHEN, enforce_quota=False)
    assert await store.account_usage(alice.id) == (101, 2)
    await store.set_quota(alice.address, None, 2)
    with pytest.raises(OverQuota):
        await _append(store, alice, inbox, data=b"z")
    await store.set_quota(alice.address, None, None)
    await _append(store, alice, inbox, data=b"z" * 1000)
    assert await store.account_usage(alice.id) == (1101, 3)


async def test_flags_with_spaces_are_refused(store: MailStore, alice: Account,
                                             inbox: MailboxInfo) -> None:
    meta = await _append(store, alice, inbox)
    with pytest.raises(ValueError):
        await store.store_flags(inbox.id, [meta.uid], FlagMode.ADD, frozenset({"two words"}))
    assert (await store.messages(inbox.id))[0].flags == frozenset()


async def test_internal_date_defaults_to_utc_for_naive_times(store: MailStore, alice: Account,
                                                             inbox: MailboxInfo) -> None:
    body = await put_body(store)
    naive = datetime(2020, 1, 2, 3, 4, 5)
    meta = await store.append(alice.id, inbox.id, body, frozenset(), naive)
    assert meta.internal_date == naive.replace(tzinfo=UTC)


async def test_append_many_is_all_or_nothing(store: MailStore, alice: Account, bob: Account,
                                             inbox: MailboxInfo) -> None:
    items = [NewMessage(await put_body(store, f"m{n}\r\n".encode()), frozenset({"\\Seen"}), WHEN)
             for n in range(3)]
    added = await store.append_many(alice.id, inbox.id, items)
    assert [meta.uid for meta in added] == [1, 2, 3]
    assert [meta.flags for meta in added] == [frozenset({"\\Seen"})] * 3
    assert (await mailbox(store, alice.id, "INBOX")).messages == 3
    await store.set_quota(alice.address, None, quota_messages=4)
    more = [NewMessage(await put_body(store), frozenset(), WHEN) for _ in range(2)]
    with pytest.raises(OverQuota):
        await store.append_many(alice.id, inbox.id, more)  # one would fit, two do not
    after = await mailbox(store, alice.id, "INBOX")
    assert (after.messages, after.uidnext) == (3, 4)  # nothing of the failed call remains
    with pytest.raises(NotFound):
        await store.append_many(bob.id, inbox.id, more)
