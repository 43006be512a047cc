"""Queue operations of the delivery run: claim due entries, record attempts, finish recipients.

Theory of operation
===================

The runner (:mod:`mailpost.delivery.queue`) works on entries it has *claimed*: claiming an entry
moves its ``next_attempt`` forward by a lease, in the same transaction that selects it, so two
runners (or one runner and a ``queue flush`` from the command line) never deliver the same entry
at once, and an entry whose runner died mid-attempt becomes due again when the lease runs out.
That gives at-least-once delivery across restarts (RFC 5321 §6.1: once accepted, a message must
not be lost).

After an attempt the runner records, per recipient, whether it was delivered or failed for good
(:func:`complete_recipients`), and reschedules the rest (:func:`record_attempt`). When the last
pending recipient is completed the entry is deleted and its body released.

``delay_warned`` (schema version 5) makes the delay warning a test-and-set, so an entry gets at
most one warning even when its attempt is repeated after a crash.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mailpost.store.errors import NotFound
from mailpost.store.sqlite import queue
from mailpost.store.sqlite.rows import epoch
from mailpost.store.sqlite.writer import WriteContext
from mailpost.store.types import QueueEntry

_STATUSES = ("delivered", "failed")


def claim_due(ctx: WriteContext, now: datetime, limit: int,
              lease_until: datetime) -> list[QueueEntry]:
    """Entries due at ``now`` (oldest due first), their next attempt moved to ``lease_until``."""
    rows = ctx.conn.execute(
        "SELECT id FROM queue WHERE next_attempt IS NOT NULL AND next_attempt <= ?"
        " ORDER BY next_attempt, id LIMIT ?", (epoch(now), limit)).fetchall()
    ids = [int(row["id"]) for row in rows]
    ctx.conn.executemany("UPDATE queue SET next_attempt = ? WHERE id = ?",
                         [(epoch(lease_until), entry_id) for entry_id in ids])
    claimed = [queue.get_entry(ctx.conn, entry_id) for entry_id in ids]
    return [entry for entry in claimed if entry is not None]


def record_attempt(ctx: WriteContext, entry_id: int, next_attempt: datetime,
                   error: str | None) -> None:
    """Count one attempt for the entry and its pending recipients; schedule the next one."""
    when = epoch(next_attempt)
    updated = ctx.conn.execute(
        "UPDATE queue SET attempts = attempts + 1, next_attempt = ?, last_error = ?"
        " WHERE id = ?", (when, error, entry_id)).rowcount
    if not updated:
        raise NotFound(f"no queue entry {entry_id}")
    ctx.conn.execute(
        "UPDATE queue_recipients SET attempts = attempts + 1, next_attempt = ?, last_error = ?"
        " WHERE entry_id = ? AND status = 'pending'", (when, error, entry_id))


def complete_recipients(ctx: WriteContext, entry_id: int, addresses: Sequence[str],
                        status: str, error: str | None) -> int:
    """Mark pending recipients delivered or failed; return how many remain pending.

    The entry is deleted (its body released) once none remains.
    """
    if status not in _STATUSES:
        raise ValueError(f"status must be one of {_STATUSES}, not {status!r}")
    if ctx.conn.execute("SELECT 1 FROM queue WHERE id = ?", (entry_id,)).fetchone() is None:
        raise NotFound(f"no queue entry {entry_id}")
    ctx.conn.executemany(
        "UPDATE queue_recipients SET status = ?, last_error = ?"
        " WHERE entry_id = ? AND address = ? AND status = 'pending'",
        [(status, error, entry_id, address) for address in addresses])
    remaining = int(ctx.conn.execute(
        "SELECT COUNT(*) FROM queue_recipients WHERE entry_id = ? AND status = 'pending'",
        (entry_id,)).fetchone()[0])
    if remaining == 0:
        queue.delete_entry(ctx, entry_id)
    return remaining


def reschedule(ctx: WriteContext, entry_id: int | None, when: datetime) -> int:
    """Make one entry (or every entry) due at ``when``; return how many were changed."""
    if entry_id is None:
        changed = int(ctx.conn.execute("UPDATE queue SET next_attempt = ?",
                                       (epoch(when),)).rowcount)
    else:
        changed = ctx.conn.execute("UPDATE queue SET next_attempt = ? WHERE id = ?",
                                   (epoch(when), entry_id)).rowcount
        if not changed:
            raise NotFound(f"no queue entry {entry_id}")
    if changed:
        queue.announce_due(ctx)  # `mailpost queue flush` reaches the server's runner too
    return changed


def claim_delay_warning(ctx: WriteContext, entry_id: int) -> bool:
    """True exactly once per entry: the caller may send the delay warning."""
    return ctx.conn.execute(
        "UPDATE queue SET delay_warned = 1 WHERE id = ? AND delay_warned = 0",
        (entry_id,)).rowcount == 1
