"""The store interface: everything the protocols may ask of persistent state.

Protocol packages (``smtp``, ``imap``, ``pop3``) and ``delivery`` talk only to these
``Protocol`` classes; they never see SQL or file paths. The embedded implementation is
``mailpost.store.sqlite.SQLiteStore`` (SQLite metadata in WAL mode plus one file per message
body); a PostgreSQL implementation can replace it behind the same methods.

Rules every implementation keeps (see docs/architecture.md):

* Every mutating call is one transaction. Message-changing calls bump the mailbox's modseq,
  write the change log and commit; only then is the change published on the bus
  (commit-then-broadcast), so a session woken by the bus always finds the change in the store.
* UIDVALIDITY never changes for an existing mailbox; UIDs are never reused; UIDNEXT only grows,
  and its advance is committed in the same transaction that makes the message visible.
* A body is durable no later than the commit of the first row that references it: a large
  body is a file (fsynced, renamed into place, directory fsynced) before the row is written;
  a small one (64 KiB or less) is written into the database in that same transaction, so it
  shares the group commit's fsync. Bodies are immutable and shared by copies; a body is
  removed once no message or queue entry references it.
* Mailbox names are data, never paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import BinaryIO, Protocol

from mailpost.store.types import (
    Account,
    Alias,
    BlobRef,
    DeliveryOutcome,
    DeliveryTarget,
    FlagMode,
    FlagUpdate,
    MailboxChanges,
    MailboxInfo,
    MessageMeta,
    NewMessage,
    OutboundEnvelope,
    QueueEntry,
    StoredPolicy,
)


class BlobWriter(Protocol):
    """Receives a message body incrementally; nothing is durable until :meth:`finish`."""

    def write(self, data: bytes) -> None:
        """Append bytes (buffered; may raise ``StoreUnavailable`` on a full disk)."""

    @property
    def size(self) -> int:
        """Bytes written so far."""

    async def finish(self) -> BlobRef:
        """Complete the body and return its ref. A large body is made durable here (fsync,
        rename, directory fsync); a small one becomes durable with the transaction that
        first references it (``deliver``/``append``).

        Raises:
            StoreUnavailable: on any I/O error (disk full, EIO); the partial file is removed.
        """

    def abort(self) -> None:
        """Discard what was written (idempotent; safe after finish() failed)."""


class BlobStore(Protocol):
    def writer(self) -> BlobWriter:
        """Start a new body."""

    async def read(self, ref: BlobRef | str, start: int = 0, end: int | None = None) -> bytes:
        """Read ``[start, end)`` of a body (whole body by default)."""

    def open(self, ref: BlobRef | str) -> BinaryIO:
        """Open a body for reading in chunks; blocking, so call it in a worker thread (POP3
        RETR, IMAP BODY[] of large messages). Raises NotFound."""

    async def read_many(self, refs: Sequence[BlobRef | str]) -> dict[str, bytes]:
        """Whole bodies of several messages in one store call, by blob id (a POP3 client's
        pipelined RETRs cost one round trip to the storage instead of one each). A body that
        no longer exists is simply missing from the result; other failures raise StoreError."""

    def free_space(self) -> int:
        """Bytes free on the volume that holds the bodies (for 452 4.3.1 checks)."""


class DirectoryStore(Protocol):
    """Domains, accounts and aliases: who receives mail here and who may log in."""

    async def add_domain(self, name: str) -> None:
        """Raises AlreadyExists."""

    async def remove_domain(self, name: str) -> None:
        """Raises NotFound, or InUse while accounts or aliases of the domain exist."""

    async def list_domains(self) -> list[str]: ...

    async def is_local_domain(self, name: str) -> bool:
        """Case-insensitive."""

    async def add_account(self, address: str, password_hash: str,
                          quota_bytes: int | None = None,
                          quota_messages: int | None = None,
                          apop_secret: bytes | None = None) -> Account:
        """Create the account and its default mailboxes (types.DEFAULT_MAILBOXES).

        ``apop_secret`` is the account's APOP secret as opaque bytes, already sealed by the
        caller (:mod:`mailpost.auth.apop_key`); the store never sees it in clear.

        Raises:
            NotFound: the address's domain is not a local domain.
            AlreadyExists: the address is already an account or an alias.
        """

    async def set_password(self, address: str, password_hash: str,
                           apop_secret: bytes | None = None) -> None:
        """Replace the password hash *and* the APOP secret (None clears it) in one
        transaction, so a secret derived from an old password never outlives it.

        Raises NotFound.
        """

    async def set_apop_secret(self, address: str, secret: bytes | None) -> None:
        """Store the account's sealed APOP secret, or clear it with None. Raises NotFound."""

    async def get_apop_secret(self, address: str) -> bytes | None:
        """The sealed APOP secret (case-insensitive lookup); None when the account has none
        or does not exist."""

    async def set_quota(self, address: str, quota_bytes: int | None,
                        quota_messages: int | None = None) -> None:
        """Raises NotFound."""

    async def remove_account(self, address: str) -> None:
        """Remove the account, its mailboxes and messages. Raises NotFound."""

    async def list_accounts(self) -> list[Account]: ...

    async def get_account(self, address: str) -> Account | None:
        """Case-insensitive lookup by full address."""

    async def get_account_by_id(self, account_id: int) -> Account | None: ...

    async def add_alias(self, address: str, target: str) -> None:
        """``address`` is ``local@domain`` or ``@domain`` (catch-all) of a local domain.

        Raises:
            NotFound: the alias's domain is not local.
            AlreadyExists: the alias exists (or is an account's address).
        """

    async def remove_alias(self, address: str, target: str | None = None) -> None:
        """Remove one target (or all of them). Raises NotFound."""

    async def list_aliases(self) -> list[Alias]: ...

    async def alias_targets(self, address: str) -> list[str]:
        """Targets of an exact alias; empty if none. Catch-alls are looked up as ``@domain``."""

    async def account_usage(self, account_id: int) -> tuple[int, int]:
        """(bytes, messages) currently stored for the account, for quotas."""


class MailboxStore(Protocol):
    """Mailboxes and the messages in them (what IMAP and POP3 see)."""

    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]:
        """All mailboxes of an account, with counts, ordered by name."""

    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo | None:
        """By name; ``INBOX`` matches case-insensitively (RFC 9051 §5.1)."""

    async def create_mailbox(self, account_id: int, name: str,
                             special_use: str | None = None) -> MailboxInfo:
        """Raises AlreadyExists, InvalidName."""

    async def keep_recent_uids(self, marks: Sequence[tuple[int, int]]) -> None:
        """Record, per (mailbox id, uid), that messages below that UID have been announced as
        \\Recent (RFC 3501 §2.3.2); a mark never moves backwards, unknown mailboxes are
        skipped. Written when the server stops."""

    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        """Rename a mailbox and its children (``old/...``). UIDVALIDITY is kept.

        Raises NotFound, AlreadyExists, InvalidName. Renaming INBOX is the IMAP layer's
        special case (RFC 9051 §6.3.6), built from create + move_all.
        """

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        """Delete a mailbox and its messages. Raises NotFound."""

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        """Subscriptions may name mailboxes that do not exist (RFC 9051 §6.3.7)."""

    async def subscriptions(self, account_id: int) -> list[str]: ...

    async def messages(self, mailbox_id: int) -> list[MessageMeta]:
        """Every message in the mailbox, ordered by UID (a session's snapshot)."""

    async def append(self, account_id: int, mailbox_id: int, blob: BlobRef,
                     flags: frozenset[str], internal_date: datetime,
                     enforce_quota: bool = True) -> MessageMeta:
        """Add a stored body to a mailbox. Raises NotFound, OverQuota."""

    async def append_many(self, account_id: int, mailbox_id: int,
                          items: Sequence[NewMessage],
                          enforce_quota: bool = True) -> list[MessageMeta]:
        """Add several stored bodies in one transaction, all or none, with consecutive UIDs
        in the given order (RFC 3502 MULTIAPPEND). Raises NotFound, OverQuota."""

    async def store_flags(self, mailbox_id: int, uids: Sequence[int], mode: FlagMode,
                          flags: frozenset[str],
                          unchanged_since: int | None = None) -> FlagUpdate:
        """Change flags; only messages whose flags really change get a new modseq."""

    async def copy(self, source_mailbox_id: int, uids: Sequence[int],
                   target_mailbox_id: int, enforce_quota: bool = True) -> list[tuple[int, int]]:
        """Copy messages; all or nothing. Returns (source uid, new uid) pairs."""

    async def move(self, source_mailbox_id: int, uids: Sequence[int],
                   target_mailbox_id: int) -> list[tuple[int, int]]:
        """Copy then expunge from the source in one transaction (RFC 6851)."""

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        """Remove the given messages; returns the UIDs that were removed."""

    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxChanges:
        """Messages added or changed, and UIDs expunged, after ``modseq``."""


class QueueStore(Protocol):
    """The durable outbound queue; entries are created by :meth:`MailStore.deliver`."""

    async def list_queue(self) -> list[QueueEntry]: ...

    async def get_queue_entry(self, entry_id: int) -> QueueEntry | None: ...

    async def delete_queue_entry(self, entry_id: int) -> None:
        """Raises NotFound."""

    async def due_queue_entries(self, now: datetime, limit: int,
                                lease_until: datetime) -> list[QueueEntry]:
        """Claim up to ``limit`` entries due at ``now``: their next attempt moves to
        ``lease_until`` in the same transaction, so no other runner takes them, and a runner
        that dies leaves them due again once the lease expires."""

    async def record_attempt(self, entry_id: int, next_attempt: datetime,
                             error: str | None) -> None:
        """Count an attempt for the entry's pending recipients and schedule the next one.

        Raises NotFound."""

    async def complete_recipients(self, entry_id: int, addresses: Sequence[str], status: str,
                                  error: str | None = None) -> int:
        """Mark pending recipients ``"delivered"`` or ``"failed"``; return how many are still
        pending. The entry is deleted (body released) when none is. Raises NotFound."""

    async def reschedule_queue(self, entry_id: int | None, when: datetime) -> int:
        """Make one entry (None: all) due at ``when`` (``queue flush``); return the count.

        Raises NotFound for an unknown id."""

    async def claim_delay_warning(self, entry_id: int) -> bool:
        """True the first time it is called for an entry (the delay warning is sent once)."""

    async def get_mta_sts_policy(self, domain: str) -> StoredPolicy | None:
        """The MTA-STS policy last stored for ``domain`` (lowercase), expired or not."""

    async def put_mta_sts_policy(self, policy: StoredPolicy) -> None:
        """Store (replace) the policy of ``policy.domain``."""


class MailStore(DirectoryStore, MailboxStore, QueueStore, Protocol):
    """The whole store: open it with :func:`mailpost.store.open_store`."""

    @property
    def blobs(self) -> BlobStore: ...

    async def release_blob(self, blob: BlobRef) -> None:
        """A finished body that will not be stored after all (its delivery or APPEND failed
        after ``BlobWriter.finish``): remove it now rather than at the next start-up sweep.
        A body that some message or queue entry references is kept."""

    async def deliver(self, blob: BlobRef, targets: Sequence[DeliveryTarget],
                      outbound: OutboundEnvelope | None = None,
                      internal_date: datetime | None = None) -> DeliveryOutcome:
        """Make one accepted message durable for every recipient at once.

        Local copies go into the target mailboxes and remote recipients into the queue, all in
        one transaction; when it returns, the 250 reply may be sent.

        Raises:
            StoreUnavailable: the transaction failed; nothing was made visible.
            OverQuota: a target with ``enforce_quota`` is over quota; nothing was made visible.
        """

    async def close(self) -> None: ...
