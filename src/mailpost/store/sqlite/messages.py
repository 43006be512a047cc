"""Messages in mailboxes: append, flags, copy, move, expunge, and change tracking.

Theory of operation
===================

Every function here that changes messages runs inside one writer savepoint and follows the same
pattern (RFC 9051 §2.3.1.1, RFC 7162 §3.1):

1. Advance the mailbox row: ``highest_modseq + 1`` for any change, and ``uidnext + n`` when
   ``n`` messages arrive, in one ``UPDATE ... RETURNING``. The new UIDs are therefore allocated
   in the same transaction that makes the messages visible, so UIDNEXT never goes back and a UID
   is never handed out twice, even when the messages are expunged later.
2. Write the message rows with that modseq. One operation takes one modseq per mailbox: RFC 7162
   asks that each STORE gets a different mod-sequence, not each message.
3. Log expunged UIDs with the modseq of the expunge, so :func:`changes_since` can report them
   (QRESYNC, RFC 7162 §3.2.5.2).
4. Queue one bus event per mailbox and kind (the writer publishes it after the commit), and
   release bodies that lost a reference (the writer deletes them after the commit if unused).

UIDs given by callers are matched against existing messages; UIDs that do not exist are ignored,
as IMAP UID commands ignore them (RFC 9051 §6.4.9).

Quota (RFC 9208 resources STORAGE and MESSAGE) is checked against the per-account counters the
triggers maintain (see :mod:`.schema`); an operation that would exceed it raises :class:`OverQuota` before changing
anything, and its savepoint is rolled back, so it changes nothing at all.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from mailpost.bus import Change, ChangeKind
from mailpost.store.errors import NotFound, OverQuota
from mailpost.store.sqlite.names import SEEN, encode_flags, normalise_flags
from mailpost.store.sqlite.rows import (
    MESSAGE_COLUMNS,
    MailboxRow,
    date_text,
    mailbox_row,
    message_meta,
    uid_list,
)
from mailpost.store.sqlite.writer import WriteContext
from mailpost.store.types import (
    BlobRef,
    FlagMode,
    FlagUpdate,
    MailboxChanges,
    MessageMeta,
    NewMessage,
)

_SELECT_BY_UIDS = (f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ?"
                   " AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid")


# -- building blocks (also used by delivery) --------------------------------------------------


def advance(conn: sqlite3.Connection, mailbox_id: int, new_messages: int = 0) -> tuple[int, int]:
    """Bump the mailbox's modseq and reserve ``new_messages`` UIDs; return (first UID, modseq)."""
    row = conn.execute(
        "UPDATE mailboxes SET highest_modseq = highest_modseq + 1, uidnext = uidnext + ?"
        " WHERE id = ? RETURNING uidnext - ?, highest_modseq",
        (new_messages, mailbox_id, new_messages)).fetchone()
    if row is None:
        raise NotFound(f"no mailbox with id {mailbox_id}")
    return int(row[0]), int(row[1])


def check_quota(conn: sqlite3.Connection, account_id: int, add_bytes: int,
                add_messages: int) -> None:
    """Raise :class:`OverQuota` if adding this much would exceed the account's quota."""
    row = conn.execute(
        "SELECT quota_bytes, quota_messages, used_bytes, used_messages FROM accounts"
        " WHERE id = ?", (account_id,)).fetchone()
    if row is None:
        raise NotFound(f"no account with id {account_id}")
    if row["quota_bytes"] is not None and row["used_bytes"] + add_bytes > row["quota_bytes"]:
        raise OverQuota(f"storage quota of {row['quota_bytes']} bytes would be exceeded")
    if (row["quota_messages"] is not None
            and row["used_messages"] + add_messages > row["quota_messages"]):
        raise OverQuota(f"message quota of {row['quota_messages']} would be exceeded")


def insert_message(ctx: WriteContext, mailbox: MailboxRow, blob: BlobRef,
                   flags: frozenset[str], internal_date: datetime) -> MessageMeta:
    """Add one message for an already referenced body; publishes MESSAGE_NEW."""
    uid, modseq = advance(ctx.conn, mailbox.id, 1)
    cursor = ctx.conn.execute(
        "INSERT INTO messages (mailbox_id, uid, modseq, flags, seen, internal_date, size,"
        " blob_id, wire_ready) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING " + MESSAGE_COLUMNS,
        (mailbox.id, uid, modseq, encode_flags(flags), int(SEEN in flags),
         date_text(internal_date), blob.size, blob.id, int(blob.wire_ready)))
    meta = message_meta(cursor.fetchone())
    ctx.publish(Change(mailbox.account_id, mailbox.id, modseq, ChangeKind.MESSAGE_NEW,
                       mailbox.name))
    return meta


# -- operations ----------------------------------------------------------------------------


def append(ctx: WriteContext, account_id: int, mailbox_id: int, blob: BlobRef,
           flags: frozenset[str], internal_date: datetime, enforce_quota: bool) -> MessageMeta:
    mailbox = mailbox_row(ctx.conn, mailbox_id)
    if mailbox.account_id != account_id:
        raise NotFound(f"no mailbox with id {mailbox_id} in account {account_id}")
    if enforce_quota:
        check_quota(ctx.conn, account_id, blob.size, 1)
    ctx.reference(blob)
    return insert_message(ctx, mailbox, blob, normalise_flags(flags), internal_date)


def append_many(ctx: WriteContext, account_id: int, mailbox_id: int,
                items: Sequence[NewMessage], enforce_quota: bool) -> list[MessageMeta]:
    """All the messages in this one write operation: a failure rolls back every one."""
    mailbox = mailbox_row(ctx.conn, mailbox_id)
    if mailbox.account_id != account_id:
        raise NotFound(f"no mailbox with id {mailbox_id} in account {account_id}")
    if enforce_quota:
        check_quota(ctx.conn, account_id, sum(item.blob.size for item in items), len(items))
    added: list[MessageMeta] = []
    for message in items:
        ctx.reference(message.blob)
        added.append(insert_message(ctx, mailbox, message.blob, normalise_flags(message.flags),
                                    message.internal_date))
    return added


def store_flags(ctx: WriteContext, mailbox_id: int, uids: Sequence[int], mode: FlagMode,
                flags: frozenset[str], unchanged_since: int | None) -> FlagUpdate:
    """RFC 9051 §6.4.6 STORE with RFC 7162 §3.1.3 UNCHANGEDSINCE.

    A message whose modseq is above ``unchanged_since`` is left alone and reported as failed.
    Only messages whose flags really change get the new modseq (RFC 7162 §3.1: setting a flag
    that is already set SHOULD NOT change the mod-sequence).
    """
    mailbox = mailbox_row(ctx.conn, mailbox_id)
    requested = normalise_flags(flags)
    failed: list[int] = []
    updates: list[tuple[sqlite3.Row, frozenset[str]]] = []
    for row in ctx.conn.execute(_SELECT_BY_UIDS, (mailbox_id, uid_list(uids))).fetchall():
        if unchanged_since is not None and row["modseq"] > unchanged_since:
            failed.append(row["uid"])
            continue
        current = message_meta(row).flags
        wanted = _apply(mode, current, requested)
        if wanted != current:
            updates.append((row, wanted))
    if not updates:
        return FlagUpdate((), tuple(failed))
    _, modseq = advance(ctx.conn, mailbox_id)
    ctx.conn.executemany(
        "UPDATE messages SET flags = ?, seen = ?, modseq = ? WHERE id = ?",
        [(encode_flags(wanted), int(SEEN in wanted), modseq, row["id"])
         for row, wanted in updates])
    ctx.publish(Change(mailbox.account_id, mailbox_id, modseq, ChangeKind.FLAGS, mailbox.name))
    changed = tuple(message_meta(row, flags=wanted, modseq=modseq) for row, wanted in updates)
    return FlagUpdate(changed, tuple(failed))


def _apply(mode: FlagMode, current: frozenset[str], requested: frozenset[str]) -> frozenset[str]:
    if mode is FlagMode.ADD:
        return current | requested
    if mode is FlagMode.REMOVE:
        return current - requested
    return requested


def copy(ctx: WriteContext, source_id: int, uids: Sequence[int], target_id: int,
         enforce_quota: bool) -> list[tuple[int, int]]:
    """RFC 9051 §6.4.7: all or nothing; flags, internal date and EMAILID are kept."""
    mailbox_row(ctx.conn, source_id)
    target = mailbox_row(ctx.conn, target_id)
    rows = ctx.conn.execute(_SELECT_BY_UIDS, (source_id, uid_list(uids))).fetchall()
    if not rows:
        return []
    if enforce_quota:
        check_quota(ctx.conn, target.account_id, sum(row["size"] for row in rows), len(rows))
    first_uid, modseq = advance(ctx.conn, target_id, len(rows))
    pairs = [(row["uid"], first_uid + index) for index, row in enumerate(rows)]
    ctx.conn.executemany(
        "INSERT INTO messages (mailbox_id, uid, modseq, flags, seen, internal_date, size,"
        " blob_id, email_id, wire_ready) SELECT ?, ?, ?, flags, seen, internal_date, size,"
        " blob_id, COALESCE(email_id, id), wire_ready FROM messages WHERE id = ?",
        [(target_id, new_uid, modseq, row["id"]) for row, (_, new_uid) in zip(rows, pairs)])
    ctx.publish(Change(target.account_id, target_id, modseq, ChangeKind.MESSAGE_NEW,
                       target.name))
    return pairs


def move(ctx: WriteContext, source_id: int, uids: Sequence[int],
         target_id: int) -> list[tuple[int, int]]:
    """RFC 6851: copy, then expunge from the source, in one transaction.

    No quota check: the messages stay in the same account.
    """
    pairs = copy(ctx, source_id, uids, target_id, enforce_quota=False)
    expunge(ctx, source_id, [source_uid for source_uid, _ in pairs])
    return pairs


def expunge(ctx: WriteContext, mailbox_id: int, uids: Sequence[int]) -> list[int]:
    mailbox = mailbox_row(ctx.conn, mailbox_id)
    rows = ctx.conn.execute(
        "SELECT uid, blob_id FROM messages WHERE mailbox_id = ?"
        " AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
        (mailbox_id, uid_list(uids))).fetchall()
    if not rows:
        return []
    removed = [int(row["uid"]) for row in rows]
    _, modseq = advance(ctx.conn, mailbox_id)
    encoded = uid_list(removed)
    ctx.conn.execute("DELETE FROM messages WHERE mailbox_id = ?"
                     " AND uid IN (SELECT value FROM json_each(?))", (mailbox_id, encoded))
    ctx.conn.execute("INSERT INTO expunged (mailbox_id, uid, modseq)"
                     " SELECT ?, value, ? FROM json_each(?)", (mailbox_id, modseq, encoded))
    ctx.release(row["blob_id"] for row in rows)
    ctx.publish(Change(mailbox.account_id, mailbox_id, modseq, ChangeKind.EXPUNGE,
                       mailbox.name))
    return removed


# -- reads ---------------------------------------------------------------------------------


def messages(conn: sqlite3.Connection, mailbox_id: int) -> list[MessageMeta]:
    mailbox_row(conn, mailbox_id)
    return [message_meta(row) for row in conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid",
        (mailbox_id,))]


def changes_since(conn: sqlite3.Connection, mailbox_id: int, modseq: int) -> MailboxChanges:
    """Messages with a modseq above ``modseq`` and UIDs expunged after it (RFC 7162 §3.2)."""
    state = conn.execute("SELECT highest_modseq, uidnext FROM mailboxes WHERE id = ?",
                         (mailbox_id,)).fetchone()
    if state is None:
        raise NotFound(f"no mailbox with id {mailbox_id}")
    updated = tuple(message_meta(row) for row in conn.execute(
        f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox_id = ? AND modseq > ?"
        " ORDER BY uid", (mailbox_id, modseq)))
    expunged = tuple(int(row["uid"]) for row in conn.execute(
        "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
        (mailbox_id, modseq)))
    return MailboxChanges(highest_modseq=state["highest_modseq"], uidnext=state["uidnext"],
                          updated=updated, expunged=expunged)
