"""Committing a staged APPEND, and the store-facing helpers APPEND, COPY and MOVE share.

Theory of operation
-------------------
RFC 3502 §3 makes MULTIAPPEND atomic: if any message cannot be appended, none may be. What
can be checked is checked while the messages arrive: the target exists (looked up when the
command began), each size is within APPENDLIMIT, flags are valid, the quota holds for all the
messages announced so far (before the ``+`` of each literal), and every body is durable
(``BlobWriter.finish`` runs as each message ends). Then all the messages go into the mailbox
with one :meth:`~mailpost.store.interface.MailboxStore.append_many`, one transaction: a race
(the mailbox deleted, another delivery filling the quota) or an I/O error stores none of them,
and no other session ever sees a part. One transaction also means one commit for a client that
uploads a hundred messages at once, not a hundred.

The commit runs shielded from cancellation (a session torn down mid-commit must still finish
or undo what it started), and an ``OK`` is only sent after the store's commit: when the client
reads it, the messages are durable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from mailpost.imap import responses as rsp
from mailpost.imap.handlers.append_stage import UNAVAILABLE, AppendStage, Refusal
from mailpost.imap.responses import Tagged
from mailpost.store.errors import NotFound, OverQuota, StoreError
from mailpost.store.interface import MailStore
from mailpost.store.types import Account, BlobRef, NewMessage

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
    """Free finished bodies that will not be stored after all."""
    for blob in blobs:
        if blob is None:
            continue
        try:
            await store.release_blob(blob)
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
    stage.close()
    items: list[NewMessage] = []
    for message in stage.messages:
        assert message.blob is not None  # finish_current() ran for every message
        items.append(NewMessage(message.blob, message.flags, message.internal_date))
    try:
        added = await store.append_many(stage.account.id, mailbox.id, items, enforce_quota=True)
    except StoreError as exc:
        await release_blobs(store, (item.blob for item in items))
        return (await _failure(store, stage, exc)).response(stage.tag)
    code = rsp.code_appenduid(mailbox.uidvalidity, [meta.uid for meta in added])
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
