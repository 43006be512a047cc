"""Mailboxes and subscriptions: create, rename, delete, list.

Write functions take a :class:`WriteContext` (writer thread, own savepoint); read functions take
a read-only connection.

* A mailbox's UIDVALIDITY comes from a persisted global counter (:func:`next_uidvalidity`), so
  a mailbox deleted and re-created under the same name never reuses one (RFC 9051 §2.3.1.1).
* RENAME moves the whole subtree (``a`` and ``a/...``) in one transaction and keeps each
  mailbox's id, UIDVALIDITY, UIDs and messages; the subscriptions of renamed mailboxes follow
  them. Renaming a mailbox into its own subtree is refused, as is renaming INBOX: RFC 9051
  §6.3.9 gives INBOX special semantics that the IMAP layer builds from create + move.
* DELETE removes one mailbox and its messages, not its children (RFC 9051 §6.3.5 leaves them in
  place). INBOX cannot be deleted (RFC 9051 §6.3.5). Subscriptions are left alone: they may
  name mailboxes that do not exist (RFC 9051 §6.3.7).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from mailpost.bus import Change, ChangeKind
from mailpost.store.errors import AlreadyExists, InvalidName, NotFound
from mailpost.store.sqlite.names import INBOX, is_inside, mailbox_name
from mailpost.store.sqlite.rows import (
    MAILBOX_INFO_QUERY,
    MailboxRow,
    mailbox_info,
    mailbox_row_by_name,
)
from mailpost.store.sqlite.writer import WriteContext
from mailpost.store.types import MailboxInfo

# A fresh mailbox is at modseq 1 (RFC 7162 §3.1: mod-sequences are positive), so the first
# change gets 2 and "CHANGEDSINCE 1" already reports it.
INITIAL_MODSEQ = 1


def next_uidvalidity(conn: sqlite3.Connection) -> int:
    """A UIDVALIDITY higher than every one handed out before (RFC 9051 §2.3.1.1).

    Seeded with the current time as the RFC suggests; the persisted counter keeps it strictly
    increasing when the clock goes back or many mailboxes are created within one second.
    """
    row = conn.execute("SELECT value FROM settings WHERE name = 'uidvalidity'").fetchone()
    last = int(row["value"]) if row is not None else 0
    value = max(last + 1, int(time.time()))
    conn.execute("INSERT INTO settings (name, value) VALUES ('uidvalidity', ?)"
                 " ON CONFLICT (name) DO UPDATE SET value = excluded.value", (value,))
    return value


def _require_account(conn: sqlite3.Connection, account_id: int) -> None:
    if conn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound(f"no account with id {account_id}")


def _info(conn: sqlite3.Connection, mailbox_id: int) -> MailboxInfo:
    return mailbox_info(conn.execute(MAILBOX_INFO_QUERY + " WHERE m.id = ?",
                                     (mailbox_id,)).fetchone())


def _existing(conn: sqlite3.Connection, account_id: int, name: str) -> MailboxRow:
    try:
        normalised = mailbox_name(name)
    except InvalidName as exc:
        raise NotFound(f"no mailbox {name!r}") from exc
    row = mailbox_row_by_name(conn, account_id, normalised)
    if row is None:
        raise NotFound(f"no mailbox {normalised!r}")
    return row


# -- writes --------------------------------------------------------------------------------


def create_mailbox(ctx: WriteContext, account_id: int, name: str,
                   special_use: str | None) -> MailboxInfo:
    normalised = mailbox_name(name)
    _require_account(ctx.conn, account_id)
    if mailbox_row_by_name(ctx.conn, account_id, normalised) is not None:
        raise AlreadyExists(f"mailbox {normalised!r} exists")
    return _insert_mailbox(ctx, account_id, normalised, special_use)


def _insert_mailbox(ctx: WriteContext, account_id: int, name: str,
                    special_use: str | None) -> MailboxInfo:
    cursor = ctx.conn.execute(
        "INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, highest_modseq)"
        " VALUES (?, ?, ?, ?, ?)",
        (account_id, name, special_use, next_uidvalidity(ctx.conn), INITIAL_MODSEQ))
    mailbox_id = int(cursor.lastrowid or 0)
    ctx.publish(Change(account_id, mailbox_id, INITIAL_MODSEQ, ChangeKind.MAILBOX, name))
    return _info(ctx.conn, mailbox_id)


def inbox(ctx: WriteContext, account_id: int) -> MailboxRow:
    """The account's INBOX, re-created if it went missing: delivered mail is never dropped."""
    row = mailbox_row_by_name(ctx.conn, account_id, INBOX)
    if row is not None:
        return row
    _require_account(ctx.conn, account_id)
    info = _insert_mailbox(ctx, account_id, INBOX, None)
    return MailboxRow(info.id, account_id, INBOX)


def rename_mailbox(ctx: WriteContext, account_id: int, old: str, new: str) -> None:
    source = _existing(ctx.conn, account_id, old)
    target = mailbox_name(new)
    if source.name == INBOX:
        raise InvalidName("INBOX cannot be renamed here (RFC 9051 §6.3.9: create and move)")
    if target == source.name:
        raise AlreadyExists(f"mailbox {target!r} exists")
    if is_inside(target, source.name):
        raise InvalidName(f"cannot rename {source.name!r} into its own subtree")
    renames = _subtree_renames(ctx.conn, account_id, source.name, target)
    for rename in renames:
        if mailbox_row_by_name(ctx.conn, account_id, rename.new_name) is not None:
            raise AlreadyExists(f"mailbox {rename.new_name!r} exists")
    for rename in renames:
        ctx.conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?",
                         (rename.new_name, rename.mailbox_id))
        ctx.conn.execute("UPDATE OR REPLACE subscriptions SET name = ?"
                         " WHERE account_id = ? AND name = ?",
                         (rename.new_name, account_id, rename.old_name))
        ctx.publish(Change(account_id, rename.mailbox_id, rename.modseq, ChangeKind.MAILBOX,
                           rename.new_name))


@dataclass(frozen=True, slots=True)
class _Rename:
    mailbox_id: int
    old_name: str
    new_name: str
    modseq: int


def _subtree_renames(conn: sqlite3.Connection, account_id: int, old: str,
                     new: str) -> list[_Rename]:
    """The renames of ``old`` and every ``old/...`` descendant."""
    rows = conn.execute(
        "SELECT id, name, highest_modseq FROM mailboxes WHERE account_id = ?"
        " AND (name = ? OR substr(name, 1, ?) = ?)",
        (account_id, old, len(old) + 1, old + "/")).fetchall()
    return [_Rename(row["id"], row["name"], new + row["name"][len(old):], row["highest_modseq"])
            for row in rows]


def delete_mailbox(ctx: WriteContext, account_id: int, name: str) -> None:
    mailbox = _existing(ctx.conn, account_id, name)
    if mailbox.name == INBOX:
        raise InvalidName("INBOX cannot be deleted (RFC 9051 §6.3.5)")
    ctx.release(row["blob_id"] for row in ctx.conn.execute(
        "SELECT DISTINCT blob_id FROM messages WHERE mailbox_id = ?", (mailbox.id,)))
    modseq = ctx.conn.execute("SELECT highest_modseq FROM mailboxes WHERE id = ?",
                              (mailbox.id,)).fetchone()[0]
    # Messages and the expunge log go by ON DELETE CASCADE.
    ctx.conn.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox.id,))
    ctx.publish(Change(account_id, mailbox.id, modseq, ChangeKind.MAILBOX, mailbox.name))


def set_subscribed(ctx: WriteContext, account_id: int, name: str, subscribed: bool) -> None:
    normalised = mailbox_name(name)
    _require_account(ctx.conn, account_id)
    if subscribed:
        ctx.conn.execute("INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
                         (account_id, normalised))
    else:
        ctx.conn.execute("DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                         (account_id, normalised))
    mailbox = mailbox_row_by_name(ctx.conn, account_id, normalised)
    ctx.publish(Change(account_id, None if mailbox is None else mailbox.id, 0,
                       ChangeKind.SUBSCRIPTION, normalised))


# -- reads ---------------------------------------------------------------------------------


def list_mailboxes(conn: sqlite3.Connection, account_id: int) -> list[MailboxInfo]:
    return [mailbox_info(row) for row in conn.execute(
        MAILBOX_INFO_QUERY + " WHERE m.account_id = ? ORDER BY m.name", (account_id,))]


def get_mailbox(conn: sqlite3.Connection, account_id: int, name: str) -> MailboxInfo | None:
    try:
        normalised = mailbox_name(name)
    except InvalidName:
        return None  # no mailbox can have an invalid name
    row = conn.execute(MAILBOX_INFO_QUERY + " WHERE m.account_id = ? AND m.name = ?",
                       (account_id, normalised)).fetchone()
    return None if row is None else mailbox_info(row)


def subscriptions(conn: sqlite3.Connection, account_id: int) -> list[str]:
    return [row["name"] for row in conn.execute(
        "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name", (account_id,))]


def keep_recent_uids(ctx: WriteContext, marks: Sequence[tuple[int, int]]) -> None:
    """Move each mailbox's \\Recent mark up to the given UID, never down (imap.recent)."""
    ctx.conn.executemany("UPDATE mailboxes SET recent_uid = max(recent_uid, ?) WHERE id = ?",
                         [(uid, mailbox_id) for mailbox_id, uid in marks])
