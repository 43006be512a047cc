"""Conversions between SQLite rows and the store's value types, shared by the table modules.

Times: a message's internal date keeps its UTC offset, because IMAP shows it
(``INTERNALDATE "17-Jul-1996 02:44:25 -0700"``, RFC 9051 §2.3.3), so it is stored as ISO 8601
text. Queue times are only compared and scheduled, so they are stored as POSIX seconds (REAL) and
returned as UTC datetimes. A naive datetime given to the store is taken to be UTC.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from mailpost.store.errors import NotFound
from mailpost.store.sqlite.names import decode_flags
from mailpost.store.types import MailboxInfo, MessageMeta

MESSAGE_COLUMNS = ("mailbox_id, uid, modseq, flags, internal_date, size, blob_id, id, email_id,"
                   " wire_ready")

MAILBOX_INFO_QUERY = """
SELECT m.id, m.account_id, m.name, m.special_use, m.uidvalidity, m.uidnext, m.highest_modseq,
       EXISTS (SELECT 1 FROM subscriptions s
                WHERE s.account_id = m.account_id AND s.name = m.name) AS subscribed,
       m.message_count, m.unseen_count, m.total_size, m.recent_uid
  FROM mailboxes m
"""


@dataclass(frozen=True, slots=True)
class MailboxRow:
    """The parts of a mailbox row that write operations need."""

    id: int
    account_id: int
    name: str


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def date_text(moment: datetime) -> str:
    return aware(moment).isoformat()


def epoch(moment: datetime) -> float:
    return aware(moment).timestamp()


def from_epoch(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def uid_list(uids: Iterable[int]) -> str:
    """A JSON array, bound as one parameter and expanded with ``json_each`` (no variable limit)."""
    return json.dumps([int(uid) for uid in uids])


def email_id_text(row_id: int) -> str:
    """RFC 8474 objectid: 1-255 characters of ALPHA / DIGIT / "-" / "_"."""
    return f"M{row_id:08x}"


def message_meta(row: sqlite3.Row, *, flags: frozenset[str] | None = None,
                 modseq: int | None = None) -> MessageMeta:
    """Build a :class:`MessageMeta` from a row selected with :data:`MESSAGE_COLUMNS`."""
    origin = row["email_id"] if row["email_id"] is not None else row["id"]
    return MessageMeta(
        mailbox_id=row["mailbox_id"],
        uid=row["uid"],
        modseq=row["modseq"] if modseq is None else modseq,
        flags=decode_flags(row["flags"]) if flags is None else flags,
        internal_date=datetime.fromisoformat(row["internal_date"]),
        size=row["size"],
        blob_id=row["blob_id"],
        email_id=email_id_text(origin),
        wire_ready=bool(row["wire_ready"]),
    )


def mailbox_info(row: sqlite3.Row) -> MailboxInfo:
    """Build a :class:`MailboxInfo` from a row of :data:`MAILBOX_INFO_QUERY`."""
    return MailboxInfo(
        id=row["id"], account_id=row["account_id"], name=row["name"],
        special_use=row["special_use"], uidvalidity=row["uidvalidity"],
        uidnext=row["uidnext"], highest_modseq=row["highest_modseq"],
        subscribed=bool(row["subscribed"]), messages=row["message_count"],
        unseen=row["unseen_count"], size=row["total_size"], recent_uid=row["recent_uid"],
    )


def mailbox_row(conn: sqlite3.Connection, mailbox_id: int) -> MailboxRow:
    """The mailbox with this id, or :class:`NotFound`."""
    row = conn.execute("SELECT id, account_id, name FROM mailboxes WHERE id = ?",
                       (mailbox_id,)).fetchone()
    if row is None:
        raise NotFound(f"no mailbox with id {mailbox_id}")
    return MailboxRow(row["id"], row["account_id"], row["name"])


def mailbox_row_by_name(conn: sqlite3.Connection, account_id: int,
                        name: str) -> MailboxRow | None:
    row = conn.execute("SELECT id, account_id, name FROM mailboxes"
                       " WHERE account_id = ? AND name = ?", (account_id, name)).fetchone()
    return None if row is None else MailboxRow(row["id"], row["account_id"], row["name"])
