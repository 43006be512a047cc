"""Value types that cross the store interface.

They are plain frozen dataclasses so that protocol code can hold them without holding a
database handle, and so that the SQLite and (later) PostgreSQL stores return identical shapes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

# The folders every account gets at creation (RFC 6154 special-use attributes). INBOX has no
# special-use attribute; the others carry the attribute clients look for.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)

HIERARCHY_DELIMITER = "/"


@dataclass(frozen=True, slots=True)
class BlobRef:
    """A stored, durable message body: written once, never modified, shared by copies."""

    id: str
    size: int
    # CRLF lines only, no line starting with ".": a POP3/SMTP sender may put it on the wire
    # unchanged (see store.lineform). False also means "not known".
    wire_ready: bool = False


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    address: str
    password_hash: str
    quota_bytes: int | None = None
    quota_messages: int | None = None


@dataclass(frozen=True, slots=True)
class Alias:
    """``address`` is a full address, or ``@domain`` for a catch-all; ``target`` an address."""

    address: str
    target: str


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    id: int
    account_id: int
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highest_modseq: int
    subscribed: bool
    messages: int = 0
    unseen: int = 0
    size: int = 0
    # RFC 3501 \Recent: messages from this UID on have not been announced as recent to any
    # session yet, as last written by a server that stopped (see imap.recent).
    recent_uid: int = 0


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """One message in one mailbox. ``flags`` holds system flags (``\\Seen``) and keywords."""

    mailbox_id: int
    uid: int
    modseq: int
    flags: frozenset[str]
    internal_date: datetime
    size: int
    blob_id: str
    # Stable across COPY/MOVE of the same stored body within an account (RFC 8474 EMAILID).
    email_id: str = ""
    # The body's BlobRef.wire_ready, kept with the message.
    wire_ready: bool = False


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One message of a multi-message append (RFC 3502 MULTIAPPEND)."""

    blob: BlobRef
    flags: frozenset[str]
    internal_date: datetime


class FlagMode(enum.Enum):
    ADD = "+"
    REMOVE = "-"
    REPLACE = ""


@dataclass(frozen=True, slots=True)
class FlagUpdate:
    """Result of a STORE: the messages whose flags changed, and the UIDs that failed the
    UNCHANGEDSINCE test (RFC 7162 §3.1.3)."""

    changed: tuple[MessageMeta, ...]
    failed_unchanged_since: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MailboxChanges:
    """What happened in a mailbox after a given modseq (drives IDLE, NOOP, QRESYNC)."""

    highest_modseq: int
    uidnext: int
    updated: tuple[MessageMeta, ...]
    expunged: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    """One local mailbox that receives a copy of a delivered message."""

    account_id: int
    mailbox: str = "INBOX"
    flags: frozenset[str] = frozenset()
    # SMTP checks the quota at RCPT time; delivery after the 250-to-RCPT may overshoot a little
    # rather than lose mail, so SMTP passes False here. APPEND passes True.
    enforce_quota: bool = False


@dataclass(frozen=True, slots=True)
class OutboundRecipient:
    address: str
    # RFC 3461 parameters, stored verbatim (already validated and xtext-decoded).
    notify: str | None = None
    orcpt: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundEnvelope:
    """A message accepted for remote recipients; the queue delivers it (a later issue)."""

    sender: str
    recipients: tuple[OutboundRecipient, ...]
    ret: str | None = None
    envid: str | None = None
    # The authenticated submitter, for Sent copies, DKIM signing and bounces.
    submitter: str | None = None


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """A recipient domain's MTA-STS policy as last fetched (RFC 8461 §5.1: the cache is what
    protects mail against a downgrade, so it outlives restarts)."""

    domain: str
    policy_id: str
    text: str  # the policy file, parsed again when loaded
    expires: datetime


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: int
    sender: str
    recipients: tuple[OutboundRecipient, ...]
    blob: BlobRef
    created: datetime
    attempts: int = 0
    next_attempt: datetime | None = None
    last_error: str | None = None
    ret: str | None = None
    envid: str | None = None
    submitter: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What :meth:`MailStore.deliver` made durable, in one transaction."""

    local: tuple[MessageMeta, ...] = ()
    queued: QueueEntry | None = None
