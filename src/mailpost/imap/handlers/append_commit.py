"""Committing a staged APPEND, and the store-facing helpers APPEND, COPY and MOVE share.

Theory of operation
-------------------
RFC 3502 §3 makes MULTIAPPEND atomic: if any message cannot be appended, none may be. The
store interface offers one :meth:`~mailpost.store.interface.MailboxStore.append` per message
(each its own transaction), not a multi-message one, so atomicity is built in two layers:

1. **Everything that can be checked is checked before the first append.** The target exists
   (looked up when the command began), each size is within APPENDLIMIT, flags are valid, the
   quota holds for all the messages together (checked as each message is announced, and once
   more against fresh usage just before committing), and every body is already durable
   (``BlobWriter.finish`` ran as each message ended). A failure there stores nothing at all.
2. **What can still fail afterwards is undone.** Only a race (the mailbox deleted, another
   delivery filling the quota in between) or an I/O error can make a later append fail; the
   messages already appended are then expunged again. The client never gets an OK for a
   partial command and the messages disappear, so the command is atomic *to the client*, but
   not one transaction: another session may briefly see them come and go, and the UIDs they
   used are spent (RFC 9051 §6.3.12 allows UIDNEXT to have moved).

The commit runs shielded from cancellation (a session torn down mid-commit must still finish
or undo what it started), and an ``OK`` is only sent after the store's commit: when the client
reads it, the messages are durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from mailpost.imap import responses as rsp
from mailpost.imap.handlers.append_stage import UNAVAILABLE, AppendStage, Refusal
from mailpost.imap.responses import Tagged
from mailpost.store.errors import NotFound, OverQuota, StoreError
from mailpost.store.interface import MailStore
from mailpost.store.types import Account, BlobRef

log = logging.getLogger(__name__)

TRYCREATE = Refusal("No such mailbox", "TRYCREATE")
OVER_QUOTA = Refusal("Over quota", "OVERQUOTA")


def refusal_for(exc: StoreError) -> Refusal:
    """The ``NO`` for a store error (RFC 9051 §7.1; RFC 5530 OVERQUOTA, UNAVAILABLE)."""
    if isinstance(exc, OverQuota):
        return OVER_QUOTA
    if isinstance(exc, NotFound):
        return TRYCREATE
    return UNAVAILABLE


async def quota_refusal(store: MailStore, account: Account, add_bytes: int,
                        add_messages: int) -> Refusal | None:
    """OVERQUOTA if adding this much would exceed the account's quota (RFC 9208 STORAGE and
    MESSAGE). The store checks again inside each transaction; this check comes first so that
    nothing needs undoing in the common case."""
    if account.quota_bytes is None and account.quota_messages is None:
        return None
    used_bytes, used_messages = await store.account_usage(account.id)
    if account.quota_bytes is not None and used_bytes + add_bytes > account.quota_bytes:
        return OVER_QUOTA
    if account.quota_messages is not None and used_messages + add_messages > account.quota_messages:
        return OVER_QUOTA
    return None


async def release_blobs(store: MailStore, blobs: Iterable[BlobRef | None]) -> None:
    """Free finished bodies that will not be stored after all.

    ``release_blob`` is not part of the store interface yet; without it a finished file body
    stays until the next start-up sweep (an in-memory one was already dropped by ``abort``).
    """
    release = getattr(store, "release_blob", None)
    if release is None:
        return
    for blob in blobs:
        if blob is None:
            continue
        try:
            await release(blob)
        except StoreError as exc:  # the sweep will find it; nothing the client needs to know
            log.warning("could not release an unused APPEND body: %s", exc)


async def discard(store: MailStore, stage: AppendStage) -> None:
    """Drop everything the stage holds (nothing of it was appended)."""
    stage.abort()
    stage.close()
    await release_blobs(store, (message.blob for message in stage.messages))


async def commit(store: MailStore, stage: AppendStage) -> Tagged:
    """Append every staged message, all or none; return the tagged answer."""
    return await asyncio.shield(_commit(store, stage))


async def _commit(store: MailStore, stage: AppendStage) -> Tagged:
    mailbox = stage.mailbox
    assert mailbox is not None and stage.refusal is None
    try:
        refusal = await quota_refusal(store, stage.account, stage.staged_bytes,
                                      stage.staged_count)
    except StoreError:
        refusal = UNAVAILABLE
    if refusal is not None:
        await discard(store, stage)
        return refusal.response(stage.tag)
    stage.close()
    added: list[int] = []
    for index, message in enumerate(stage.messages):
        assert message.blob is not None  # finish_current() ran for every message
        try:
            meta = await store.append(stage.account.id, mailbox.id, message.blob,
                                      message.flags, message.internal_date, enforce_quota=True)
        except StoreError as exc:
            await _undo(store, mailbox.id, added)
            await release_blobs(store, (later.blob for later in stage.messages[index:]))
            return (await _failure(store, stage, exc)).response(stage.tag)
        added.append(meta.uid)
    code = rsp.code_appenduid(mailbox.uidvalidity, added)
    return Tagged(stage.tag, "OK", "APPEND completed", code)


async def _failure(store: MailStore, stage: AppendStage, exc: StoreError) -> Refusal:
    """Name the failure; NotFound means TRYCREATE only if the mailbox is really gone."""
    if isinstance(exc, NotFound) and stage.mailbox is not None:
        try:
            current = await store.get_mailbox(stage.account.id, stage.mailbox.name)
        except StoreError:
            return UNAVAILABLE
        if current is not None and current.id == stage.mailbox.id:
            return UNAVAILABLE  # the mailbox is there: a body went missing underneath
    return refusal_for(exc)


async def _undo(store: MailStore, mailbox_id: int, uids: Sequence[int]) -> None:
    """Expunge the messages a failed MULTIAPPEND already added (see the module docstring)."""
    if not uids:
        return
    try:
        await store.expunge(mailbox_id, uids)
    except StoreError as exc:
        log.error("MULTIAPPEND failed half-way and its %d messages could not be removed: %s",
                  len(uids), exc)
