"""The SQLite schema, its migrations, and how connections are opened.

Theory of operation
===================

The schema version lives in ``PRAGMA user_version``. :data:`MIGRATIONS` is an append-only list:
entry *n* upgrades a version-*n* database to *n + 1*. Each runs in its own ``BEGIN IMMEDIATE``
transaction together with the ``user_version`` bump (SQLite keeps the header field inside the
transaction), so a crash mid-migration leaves the old version intact. A database newer than this
program refuses to open rather than being misread.

Tables, and the invariants they carry:

``settings``
    Global counters. ``uidvalidity`` is the last UIDVALIDITY handed out; a new mailbox gets
    ``max(last + 1, now)``, so a mailbox deleted and re-created under the same name gets a
    different, higher value (RFC 9051 §2.3.1.1, note 3), even after the clock went backwards.
``domains``, ``accounts``, ``aliases``
    The directory. Names are stored lowercase; an alias row is one (address, target) pair.
    ``accounts.used_bytes`` and ``used_messages`` (version 3) are the sums of the account's
    mailbox counters, kept current by triggers on ``mailboxes``, so a quota check at each SMTP
    RCPT reads one row however many messages and mailboxes the account has.
    ``accounts.apop_secret`` (version 4) is the account's APOP secret (RFC 1939 §7), sealed
    by the caller with a key that is not in the database; NULL for accounts without one.
``mailboxes``
    ``uidnext`` and ``highest_modseq`` only grow. An empty mailbox is at modseq 1 and every
    message change takes ``highest_modseq + 1`` (RFC 7162 §3.1). ``message_count``,
    ``unseen_count`` and ``total_size`` are kept current by triggers on ``messages``, so STATUS,
    LIST-STATUS and quota checks never scan messages, and no code path can forget to update them.
``messages``
    One row per message per mailbox. ``flags`` is the space-separated, sorted flag list (IMAP
    flags are atoms and cannot contain a space); ``seen`` mirrors ``\\Seen`` for the unseen count.
    ``email_id`` is NULL for an original and the original's row id for copies (RFC 8474 EMAILID).
``expunged``
    The expunge log: (mailbox, uid, modseq) for QRESYNC-style ``changes_since`` (RFC 7162 §3.2).
``queue``, ``queue_recipients``
    The outbound queue: one entry per accepted message, one row per remote recipient carrying
    its own status, attempts, next attempt and last error, so a later delivery run can retry
    recipients independently. ``queue.delay_warned`` (version 5) records that the delay
    warning was sent.
``inline_bodies`` (version 2)
    Small message bodies, stored in the transaction that first references them (see
    :mod:`.bodies`). Their ids carry a prefix no file body id has. A rowid table, not
    ``WITHOUT ROWID``: its rows are kilobytes, far too large for the clustered index of a
    ``WITHOUT ROWID`` table.

Row ids of accounts, mailboxes, messages and queue entries are ``AUTOINCREMENT``: never reused
after a delete. Sessions hold mailbox ids (a future MAILBOXID, RFC 8474 §4, must not be reused
either), and EMAILIDs derive from message row ids (RFC 8474 §5.1: an EMAILID identifies one
message's content), so reuse would make a new object answer to an old one's id.

Every table that points at a body has an index on ``blob_id``, because deciding whether a body
may be deleted is a "does anything still reference it" probe.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from mailpost.store.errors import StoreUnavailable

_SCHEMA_V1 = """
CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE domains (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE accounts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    address        TEXT NOT NULL UNIQUE,
    domain         TEXT NOT NULL REFERENCES domains(name),
    password_hash  TEXT NOT NULL,
    quota_bytes    INTEGER,
    quota_messages INTEGER
);
CREATE INDEX accounts_by_domain ON accounts(domain);

CREATE TABLE aliases (
    address TEXT NOT NULL,
    target  TEXT NOT NULL,
    domain  TEXT NOT NULL REFERENCES domains(name),
    PRIMARY KEY (address, target)
) WITHOUT ROWID;
CREATE INDEX aliases_by_domain ON aliases(domain);

CREATE TABLE mailboxes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id     INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    special_use    TEXT,
    uidvalidity    INTEGER NOT NULL,
    uidnext        INTEGER NOT NULL DEFAULT 1,
    highest_modseq INTEGER NOT NULL DEFAULT 1,
    message_count  INTEGER NOT NULL DEFAULT 0,
    unseen_count   INTEGER NOT NULL DEFAULT 0,
    total_size     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (account_id, name)
);

CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;

CREATE TABLE messages (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL,
    modseq        INTEGER NOT NULL,
    flags         TEXT NOT NULL,
    seen          INTEGER NOT NULL,
    internal_date TEXT NOT NULL,
    size          INTEGER NOT NULL,
    blob_id       TEXT NOT NULL,
    email_id      INTEGER,
    UNIQUE (mailbox_id, uid)
);
CREATE INDEX messages_by_modseq ON messages(mailbox_id, modseq);
CREATE INDEX messages_by_blob ON messages(blob_id);

CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid        INTEGER NOT NULL,
    modseq     INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_by_modseq ON expunged(mailbox_id, modseq);

CREATE TABLE queue (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    sender       TEXT NOT NULL,
    blob_id      TEXT NOT NULL,
    blob_size    INTEGER NOT NULL,
    created      REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL,
    last_error   TEXT,
    ret          TEXT,
    envid        TEXT,
    submitter    TEXT
);
CREATE INDEX queue_by_blob ON queue(blob_id);
CREATE INDEX queue_by_next_attempt ON queue(next_attempt);

CREATE TABLE queue_recipients (
    entry_id     INTEGER NOT NULL REFERENCES queue(id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    address      TEXT NOT NULL,
    notify       TEXT,
    orcpt        TEXT,
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL,
    last_error   TEXT,
    PRIMARY KEY (entry_id, position)
) WITHOUT ROWID;

CREATE TRIGGER messages_count_insert AFTER INSERT ON messages BEGIN
    UPDATE mailboxes
       SET message_count = message_count + 1,
           unseen_count = unseen_count + 1 - NEW.seen,
           total_size = total_size + NEW.size
     WHERE id = NEW.mailbox_id;
END;

CREATE TRIGGER messages_count_delete AFTER DELETE ON messages BEGIN
    UPDATE mailboxes
       SET message_count = message_count - 1,
           unseen_count = unseen_count - 1 + OLD.seen,
           total_size = total_size - OLD.size
     WHERE id = OLD.mailbox_id;
END;

CREATE TRIGGER messages_count_seen AFTER UPDATE OF seen ON messages
WHEN OLD.seen != NEW.seen BEGIN
    UPDATE mailboxes
       SET unseen_count = unseen_count + OLD.seen - NEW.seen
     WHERE id = NEW.mailbox_id;
END;
"""

_INLINE_BODIES_V2 = """
CREATE TABLE inline_bodies (
    id   TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
"""

# The account counters follow the mailbox counters (which follow the messages). When a mailbox
# row is deleted its messages go by cascade after the row itself is gone, so their triggers
# find no mailbox to update, and the mailbox's own delete trigger subtracts its full counters.
_ACCOUNT_USAGE_V3 = """
ALTER TABLE accounts ADD COLUMN used_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN used_messages INTEGER NOT NULL DEFAULT 0;

UPDATE accounts
   SET used_bytes = (SELECT COALESCE(SUM(total_size), 0) FROM mailboxes
                      WHERE account_id = accounts.id),
       used_messages = (SELECT COALESCE(SUM(message_count), 0) FROM mailboxes
                         WHERE account_id = accounts.id);

CREATE TRIGGER mailboxes_usage_update AFTER UPDATE OF message_count, total_size ON mailboxes
WHEN OLD.message_count != NEW.message_count OR OLD.total_size != NEW.total_size BEGIN
    UPDATE accounts
       SET used_bytes = used_bytes + NEW.total_size - OLD.total_size,
           used_messages = used_messages + NEW.message_count - OLD.message_count
     WHERE id = NEW.account_id;
END;

CREATE TRIGGER mailboxes_usage_delete AFTER DELETE ON mailboxes BEGIN
    UPDATE accounts
       SET used_bytes = used_bytes - OLD.total_size,
           used_messages = used_messages - OLD.message_count
     WHERE id = OLD.account_id;
END;
"""

_APOP_SECRET_V4 = """
ALTER TABLE accounts ADD COLUMN apop_secret BLOB;
"""

# Version 5: the delivery run's one-time delay warning flag (see .queue_run).
_DELAY_WARNED_V5 = """
ALTER TABLE queue ADD COLUMN delay_warned INTEGER NOT NULL DEFAULT 0;
"""

# Version 6: whether a message's body can be sent as it is (see mailpost.store.lineform);
# messages stored before are "not known" and take the checking path.
_WIRE_READY_V6 = """
ALTER TABLE messages ADD COLUMN wire_ready INTEGER NOT NULL DEFAULT 0;
"""

# Version 7: the MTA-STS policy cache survives restarts (see mailpost.delivery.mtasts).
_MTA_STS_V7 = """
CREATE TABLE mta_sts_policies (
    domain TEXT PRIMARY KEY,
    policy_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    expires REAL NOT NULL
);
"""

# Version 8: where \Recent starts in each mailbox (see mailpost.imap.recent); what is stored
# already counts as announced.
_RECENT_UID_V8 = """
ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0;
UPDATE mailboxes SET recent_uid = uidnext;
"""

# Append-only: MIGRATIONS[n] upgrades user_version n to n + 1. Never edit a released entry.
MIGRATIONS: tuple[str, ...] = (_SCHEMA_V1, _INLINE_BODIES_V2, _ACCOUNT_USAGE_V3,
                               _APOP_SECRET_V4, _DELAY_WARNED_V5, _WIRE_READY_V6,
                               _MTA_STS_V7, _RECENT_UID_V8)

_BUSY_TIMEOUT_MS = 10_000


def open_writer_connection(path: Path) -> sqlite3.Connection:
    """The one read-write connection: WAL, fsync on every commit, foreign keys enforced.

    ``synchronous=FULL`` in WAL mode fsyncs the log at each commit, so a committed delivery
    survives power loss: SMTP's "250 OK" (RFC 5321 §6.1) depends on it.

    The file is created owner-only before SQLite opens it (it holds password hashes); SQLite
    gives the ``-wal`` and ``-shm`` files the database file's permissions.
    """
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreUnavailable(f"cannot switch {path} to WAL mode (got {mode})")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def open_reader_connection(path: Path) -> sqlite3.Connection:
    """A read-only connection; WAL lets it read a consistent snapshot while the writer works."""
    uri = path.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA query_only = ON")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to the newest schema; return the version it is at."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise StoreUnavailable(
            f"database schema version {version} is newer than this program "
            f"({len(MIGRATIONS)}); refusing to open it")
    for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
        try:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {target};\nCOMMIT;")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)
