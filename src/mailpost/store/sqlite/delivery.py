"""``deliver``: every local copy and the queue entry of one accepted message, in one transaction.

When :func:`deliver` has committed, SMTP may answer "250 OK" (RFC 5321 §6.1): either every local
mailbox and the queue have the message, or (on any error) none of them has it and the client is
told to retry. That is why the local copies and the queue entry share one savepoint rather than
being separate operations.

Target mailboxes: a target names a mailbox (a Sieve ``fileinto`` or a ``+detail`` folder, say).
If that name is invalid or no such mailbox exists, the message goes to INBOX instead, and if
INBOX itself has gone missing it is re-created: accepted mail is never dropped for want of a
folder. Targets naming the same mailbox twice get two messages (the caller deduplicates).

An outbound envelope without recipients creates no queue entry: it could never be delivered, and
it would keep its body alive forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mailpost.store.errors import InvalidName
from mailpost.store.sqlite import mailboxes, messages, queue
from mailpost.store.sqlite.names import mailbox_name, normalise_flags
from mailpost.store.sqlite.rows import MailboxRow, mailbox_row_by_name, now_utc
from mailpost.store.sqlite.writer import WriteContext
from mailpost.store.types import (
    BlobRef,
    DeliveryOutcome,
    DeliveryTarget,
    MessageMeta,
    OutboundEnvelope,
)


def deliver(ctx: WriteContext, blob: BlobRef, targets: Sequence[DeliveryTarget],
            outbound: OutboundEnvelope | None, internal_date: datetime) -> DeliveryOutcome:
    ctx.reference(blob)
    local: list[MessageMeta] = []
    for target in targets:
        mailbox = _target_mailbox(ctx, target)
        if target.enforce_quota:
            messages.check_quota(ctx.conn, target.account_id, blob.size, 1)
        local.append(messages.insert_message(ctx, mailbox, blob, normalise_flags(target.flags),
                                             internal_date))
    queued = None
    if outbound is not None and outbound.recipients:
        queued = queue.enqueue(ctx, blob, outbound, now_utc())
    return DeliveryOutcome(tuple(local), queued)


def _target_mailbox(ctx: WriteContext, target: DeliveryTarget) -> MailboxRow:
    try:
        row = mailbox_row_by_name(ctx.conn, target.account_id, mailbox_name(target.mailbox))
    except InvalidName:
        row = None
    return row if row is not None else mailboxes.inbox(ctx, target.account_id)
