"""The durable outbound queue: one entry per accepted message, one row per remote recipient.

Entries are only created by delivery (:mod:`.delivery`), in the same transaction as the local
copies of the message. Each recipient row has its own status (``pending``, ``delivered``,
``failed``), attempt count, next attempt time and last error, so the delivery run (a later
issue) can retry recipients of one message independently, as RFC 5321 §4.5.4.1 retry strategy
needs. :class:`QueueEntry` shows the recipients still pending.

An entry references its body like a message row does: the body is deleted only once no entry
and no message references it.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from mailpost.bus import QUEUE_CHANNEL, Change, ChangeKind
from mailpost.store.errors import NotFound
from mailpost.store.sqlite.rows import epoch, from_epoch
from mailpost.store.sqlite.writer import WriteContext
from mailpost.store.types import BlobRef, OutboundEnvelope, OutboundRecipient, QueueEntry

_ENTRY_COLUMNS = ("id, sender, blob_id, blob_size, created, attempts, next_attempt, last_error,"
                  " ret, envid, submitter")


def enqueue(ctx: WriteContext, blob: BlobRef, envelope: OutboundEnvelope,
            now: datetime) -> QueueEntry:
    """Queue ``envelope`` for delivery now; the body must already be referenced."""
    created = epoch(now)
    cursor = ctx.conn.execute(
        "INSERT INTO queue (sender, blob_id, blob_size, created, attempts, next_attempt,"
        " ret, envid, submitter) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)",
        (envelope.sender, blob.id, blob.size, created, created, envelope.ret, envelope.envid,
         envelope.submitter))
    entry_id = int(cursor.lastrowid or 0)
    ctx.conn.executemany(
        "INSERT INTO queue_recipients (entry_id, position, address, notify, orcpt, next_attempt)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(entry_id, position, recipient.address, recipient.notify, recipient.orcpt, created)
         for position, recipient in enumerate(envelope.recipients)])
    entry = _load(ctx.conn, entry_id)
    assert entry is not None
    announce_due(ctx)
    return entry


def announce_due(ctx: WriteContext) -> None:
    """After the commit, tell the queue runner that mail is due now (no waiting for a poll)."""
    ctx.publish(Change(QUEUE_CHANNEL, None, 0, ChangeKind.QUEUE))


def delete_entry(ctx: WriteContext, entry_id: int) -> None:
    row = ctx.conn.execute("SELECT blob_id FROM queue WHERE id = ?", (entry_id,)).fetchone()
    if row is None:
        raise NotFound(f"no queue entry {entry_id}")
    ctx.conn.execute("DELETE FROM queue WHERE id = ?", (entry_id,))
    ctx.release([row["blob_id"]])


def list_entries(conn: sqlite3.Connection) -> list[QueueEntry]:
    recipients = _pending_recipients(conn, None)
    return [_entry(row, recipients.get(row["id"], ())) for row in conn.execute(
        f"SELECT {_ENTRY_COLUMNS} FROM queue ORDER BY id")]


def get_entry(conn: sqlite3.Connection, entry_id: int) -> QueueEntry | None:
    return _load(conn, entry_id)


def _load(conn: sqlite3.Connection, entry_id: int) -> QueueEntry | None:
    row = conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM queue WHERE id = ?",
                       (entry_id,)).fetchone()
    if row is None:
        return None
    return _entry(row, _pending_recipients(conn, entry_id).get(entry_id, ()))


def _pending_recipients(conn: sqlite3.Connection,
                        entry_id: int | None) -> dict[int, tuple[OutboundRecipient, ...]]:
    """Pending recipients by entry, in the order they were accepted (all entries if None)."""
    query = ("SELECT entry_id, address, notify, orcpt FROM queue_recipients"
             " WHERE status = 'pending'")
    params: tuple[int, ...] = ()
    if entry_id is not None:
        query += " AND entry_id = ?"
        params = (entry_id,)
    grouped: dict[int, list[OutboundRecipient]] = {}
    for row in conn.execute(query + " ORDER BY entry_id, position", params):
        grouped.setdefault(row["entry_id"], []).append(
            OutboundRecipient(row["address"], row["notify"], row["orcpt"]))
    return {key: tuple(value) for key, value in grouped.items()}


def _entry(row: sqlite3.Row, recipients: tuple[OutboundRecipient, ...]) -> QueueEntry:
    created = from_epoch(row["created"])
    assert created is not None
    return QueueEntry(
        id=row["id"], sender=row["sender"], recipients=recipients,
        blob=BlobRef(row["blob_id"], row["blob_size"]), created=created,
        attempts=row["attempts"], next_attempt=from_epoch(row["next_attempt"]),
        last_error=row["last_error"], ret=row["ret"], envid=row["envid"],
        submitter=row["submitter"])
