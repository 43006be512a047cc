"""Domains, accounts and aliases (the :class:`~mailpost.store.interface.DirectoryStore` half).

Write functions take a :class:`WriteContext` and run on the writer thread inside their own
savepoint; read functions take a read-only connection. All names are normalised here
(:mod:`.names`): domains and account addresses lowercase, so lookups are exact matches on an
index.

An address is either an account or an alias, never both (checked in both directions), because
the recipient resolver must get one answer for one address. An alias may have several targets:
each (address, target) pair is a row.
"""

from __future__ import annotations

import sqlite3

from mailpost.bus import Change, ChangeKind
from mailpost.store.errors import AlreadyExists, InUse, NotFound
from mailpost.store.sqlite import mailboxes
from mailpost.store.sqlite.names import (
    account_address,
    alias_address,
    alias_target,
    domain_name,
)
from mailpost.store.sqlite.writer import WriteContext
from mailpost.store.types import DEFAULT_MAILBOXES, Account, Alias

_ACCOUNT_COLUMNS = "id, address, password_hash, quota_bytes, quota_messages"


def _account(row: sqlite3.Row) -> Account:
    return Account(id=row["id"], address=row["address"], password_hash=row["password_hash"],
                   quota_bytes=row["quota_bytes"], quota_messages=row["quota_messages"])


def _require_domain(conn: sqlite3.Connection, domain: str) -> None:
    if conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is None:
        raise NotFound(f"{domain} is not a local domain")


def _account_id(conn: sqlite3.Connection, address: str) -> int:
    row = conn.execute("SELECT id FROM accounts WHERE address = ?", (address,)).fetchone()
    if row is None:
        raise NotFound(f"no account {address}")
    return int(row["id"])


# -- domains -------------------------------------------------------------------------------


def add_domain(ctx: WriteContext, name: str) -> None:
    domain = domain_name(name)
    if ctx.conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone():
        raise AlreadyExists(f"domain {domain} exists")
    ctx.conn.execute("INSERT INTO domains (name) VALUES (?)", (domain,))


def remove_domain(ctx: WriteContext, name: str) -> None:
    domain = domain_name(name)
    _require_domain(ctx.conn, domain)
    in_use = ctx.conn.execute(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE domain = ?)"
        " OR EXISTS (SELECT 1 FROM aliases WHERE domain = ?)", (domain, domain)).fetchone()[0]
    if in_use:
        raise InUse(f"domain {domain} still has accounts or aliases")
    ctx.conn.execute("DELETE FROM domains WHERE name = ?", (domain,))


def list_domains(conn: sqlite3.Connection) -> list[str]:
    return [row["name"] for row in conn.execute("SELECT name FROM domains ORDER BY name")]


def is_local_domain(conn: sqlite3.Connection, name: str) -> bool:
    domain = name.strip().lower()
    return conn.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is not None


# -- accounts ------------------------------------------------------------------------------


def add_account(ctx: WriteContext, address: str, password_hash: str,
                quota_bytes: int | None, quota_messages: int | None,
                apop_secret: bytes | None = None) -> Account:
    """Create the account, its default mailboxes (RFC 6154 attributes) and their subscriptions."""
    normalised, domain = account_address(address)
    _require_domain(ctx.conn, domain)
    taken = ctx.conn.execute(
        "SELECT EXISTS (SELECT 1 FROM accounts WHERE address = ?)"
        " OR EXISTS (SELECT 1 FROM aliases WHERE address = ?)",
        (normalised, normalised)).fetchone()[0]
    if taken:
        raise AlreadyExists(f"{normalised} is already an account or an alias")
    cursor = ctx.conn.execute(
        "INSERT INTO accounts (address, domain, password_hash, quota_bytes, quota_messages,"
        " apop_secret) VALUES (?, ?, ?, ?, ?, ?)",
        (normalised, domain, password_hash, quota_bytes, quota_messages, apop_secret))
    account_id = int(cursor.lastrowid or 0)
    for name, special_use in DEFAULT_MAILBOXES:
        mailboxes.create_mailbox(ctx, account_id, name, special_use)
        mailboxes.set_subscribed(ctx, account_id, name, True)
    return Account(account_id, normalised, password_hash, quota_bytes, quota_messages)


def set_password(ctx: WriteContext, address: str, password_hash: str,
                 apop_secret: bytes | None) -> None:
    """The hash and the APOP secret change together: no secret outlives its password."""
    account_id = _account_id(ctx.conn, address.strip().lower())
    ctx.conn.execute("UPDATE accounts SET password_hash = ?, apop_secret = ? WHERE id = ?",
                     (password_hash, apop_secret, account_id))


def set_apop_secret(ctx: WriteContext, address: str, secret: bytes | None) -> None:
    account_id = _account_id(ctx.conn, address.strip().lower())
    ctx.conn.execute("UPDATE accounts SET apop_secret = ? WHERE id = ?", (secret, account_id))


def get_apop_secret(conn: sqlite3.Connection, address: str) -> bytes | None:
    row = conn.execute("SELECT apop_secret FROM accounts WHERE address = ?",
                       (address.strip().lower(),)).fetchone()
    return None if row is None or row[0] is None else bytes(row[0])


def set_quota(ctx: WriteContext, address: str, quota_bytes: int | None,
              quota_messages: int | None) -> None:
    account_id = _account_id(ctx.conn, address.strip().lower())
    ctx.conn.execute("UPDATE accounts SET quota_bytes = ?, quota_messages = ? WHERE id = ?",
                     (quota_bytes, quota_messages, account_id))


def remove_account(ctx: WriteContext, address: str) -> None:
    """Delete the account; its mailboxes, messages and subscriptions go by cascade."""
    account_id = _account_id(ctx.conn, address.strip().lower())
    ctx.release(row["blob_id"] for row in ctx.conn.execute(
        "SELECT DISTINCT blob_id FROM messages WHERE mailbox_id IN"
        " (SELECT id FROM mailboxes WHERE account_id = ?)", (account_id,)))
    for row in ctx.conn.execute(
            "SELECT id, name, highest_modseq FROM mailboxes WHERE account_id = ?",
            (account_id,)).fetchall():
        ctx.publish(Change(account_id, row["id"], row["highest_modseq"], ChangeKind.MAILBOX,
                           row["name"]))
    ctx.conn.execute("DELETE FROM accounts WHERE id = ?", (account_id,))


def list_accounts(conn: sqlite3.Connection) -> list[Account]:
    return [_account(row) for row in conn.execute(
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts ORDER BY address")]


def get_account(conn: sqlite3.Connection, address: str) -> Account | None:
    row = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE address = ?",
                       (address.strip().lower(),)).fetchone()
    return None if row is None else _account(row)


def get_account_by_id(conn: sqlite3.Connection, account_id: int) -> Account | None:
    row = conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE id = ?",
                       (account_id,)).fetchone()
    return None if row is None else _account(row)


def account_usage(conn: sqlite3.Connection, account_id: int) -> tuple[int, int]:
    """One row read: the counters are kept by triggers (see :mod:`.schema`)."""
    row = conn.execute("SELECT used_bytes, used_messages FROM accounts WHERE id = ?",
                       (account_id,)).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


# -- aliases -------------------------------------------------------------------------------


def add_alias(ctx: WriteContext, address: str, target: str) -> None:
    normalised, domain = alias_address(address)
    destination = alias_target(target)
    _require_domain(ctx.conn, domain)
    if ctx.conn.execute("SELECT 1 FROM accounts WHERE address = ?", (normalised,)).fetchone():
        raise AlreadyExists(f"{normalised} is an account")
    if ctx.conn.execute("SELECT 1 FROM aliases WHERE address = ? AND target = ?",
                        (normalised, destination)).fetchone():
        raise AlreadyExists(f"alias {normalised} -> {destination} exists")
    ctx.conn.execute("INSERT INTO aliases (address, target, domain) VALUES (?, ?, ?)",
                     (normalised, destination, domain))


def remove_alias(ctx: WriteContext, address: str, target: str | None) -> None:
    normalised = address.strip().lower()
    if target is None:
        cursor = ctx.conn.execute("DELETE FROM aliases WHERE address = ?", (normalised,))
    else:
        cursor = ctx.conn.execute("DELETE FROM aliases WHERE address = ? AND target = ?",
                                  (normalised, alias_target(target)))
    if cursor.rowcount == 0:
        raise NotFound(f"no alias {normalised}" + (f" -> {target}" if target else ""))


def list_aliases(conn: sqlite3.Connection) -> list[Alias]:
    return [Alias(row["address"], row["target"]) for row in conn.execute(
        "SELECT address, target FROM aliases ORDER BY address, target")]


def alias_targets(conn: sqlite3.Connection, address: str) -> list[str]:
    return [row["target"] for row in conn.execute(
        "SELECT target FROM aliases WHERE address = ? ORDER BY target",
        (address.strip().lower(),))]

