"""Local delivery from a pipe: the engine of ``mailpost deliver`` (an LDA, like dovecot-lda).

Theory of operation
-------------------
Another program hands over one message on standard input with its envelope on the command
line: a front MTA's ``mailbox_command``, fetchmail's ``mda``, a sieve or procmail setup, a
script that files a report. :func:`deliver_stream` then does what the SMTP listener does at
the end of DATA, without the network:

1. **Recipients** are resolved like RCPT TO on the MX (:mod:`mailpost.delivery.resolve`):
   accounts, aliases, sub-addresses, catch-alls; local only. An unknown or non-local address
   fails the whole delivery before anything is stored.
2. **The message** is streamed into a new body: a ``Return-Path`` when the sender is known, a
   ``Received`` field that names this host and ``local`` as the protocol, then the octets read.
   A leading mbox ``From `` line (what MTAs put before a message for an LDA) is dropped, and
   line endings become CRLF (:class:`~mailpost.smtp.framing.CrlfNormaliser`): Unix pipes carry
   LF, stored messages use CRLF. The size is bounded by ``limits.max_message_size``.
3. **One transaction** stores it for every account (:meth:`MailStore.deliver`), in the folder
   asked for if the account has it, else in INBOX (a missing folder never loses mail).

The store's change events reach a running server through the doorbell socket
(:mod:`mailpost.doorbell`), so IDLE clients see the new message at once.

Outcomes map to the exit statuses of ``sysexits.h`` that MTAs understand: unknown recipient
67 (permanent), message too large or unreadable 65 (permanent), store trouble 75 (try again).
"""

from __future__ import annotations

import contextlib
import email.utils
import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from mailpost.delivery.resolve import RecipientResolver, Refusal
from mailpost.smtp.framing import CrlfNormaliser
from mailpost.store.errors import StoreError
from mailpost.store.interface import BlobWriter, MailStore
from mailpost.store.types import Account, DeliveryTarget

READ_CHUNK = 64 * 1024
_MBOX_SEPARATOR = b"From "


class Status(enum.IntEnum):
    """Exit statuses from sysexits.h, the LDA convention."""

    OK = 0
    DATAERR = 65  # the message itself is unacceptable
    NOUSER = 67  # an addressee is unknown
    TEMPFAIL = 75  # try again later


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    detail: str


@dataclass(frozen=True, slots=True)
class Request:
    """What the command line says: who gets it, from whom, into which folder."""

    recipients: Sequence[str]
    sender: str | None = None
    mailbox: str = "INBOX"
    hostname: str = "localhost"
    max_size: int = 26_214_400


async def deliver_stream(store: MailStore, request: Request, stream: BinaryIO) -> Outcome:
    """Deliver the message read from ``stream``; see the module docstring."""
    accounts = await _resolve(store, request)
    if isinstance(accounts, Outcome):
        return accounts
    writer = store.blobs.writer()
    try:
        writer.write(_trace_fields(request))
        problem = _copy_message(stream, writer, request.max_size)
        if problem is not None:
            writer.abort()
            return problem
        blob = await writer.finish()
    except StoreError as exc:
        writer.abort()
        return Outcome(Status.TEMPFAIL, f"cannot store the message: {exc}")
    try:
        targets = [DeliveryTarget(account.id, await _folder(store, account, request.mailbox))
                   for account in accounts]
        outcome = await store.deliver(blob, targets)
    except StoreError as exc:
        with contextlib.suppress(StoreError):  # else the start-up sweep removes it
            await store.release_blob(blob)
        return Outcome(Status.TEMPFAIL, f"cannot store the message: {exc}")
    return Outcome(Status.OK, f"delivered to {len(outcome.local)} mailbox(es)")


async def _resolve(store: MailStore, request: Request) -> list[Account] | Outcome:
    if not request.recipients:
        return Outcome(Status.NOUSER, "no recipient given")
    resolver = RecipientResolver(store, request.hostname)
    accounts: dict[int, Account] = {}
    try:
        for address in request.recipients:
            result = await resolver.resolve(address, may_relay=False)
            if isinstance(result, Refusal):
                reason = "not a local address" if result is Refusal.RELAY_DENIED else "unknown"
                return Outcome(Status.NOUSER, f"{address}: {reason}")
            if result.remote:
                return Outcome(Status.NOUSER, f"{address}: forwards to remote addresses "
                               f"({', '.join(result.remote)}); send it through SMTP instead")
            accounts.update(result.accounts)
    except StoreError as exc:
        return Outcome(Status.TEMPFAIL, f"cannot look up recipients: {exc}")
    return list(accounts.values())


def _trace_fields(request: Request) -> bytes:
    fields = f"Return-Path: <{request.sender}>\r\n" if request.sender is not None else ""
    when = email.utils.format_datetime(email.utils.localtime())
    message_id = secrets.token_hex(8).upper()
    fields += (f"Received: by {request.hostname} (mailpost) with local id {message_id};"
               f"\r\n\t{when}\r\n")
    return fields.encode()


def _copy_message(stream: BinaryIO, writer: BlobWriter, max_size: int) -> Outcome | None:
    """Stream the message into ``writer``; an Outcome if it cannot be taken."""
    normaliser = CrlfNormaliser()
    first = True
    size = 0
    while True:
        try:
            chunk = stream.read(READ_CHUNK)
        except OSError as exc:
            return Outcome(Status.DATAERR, f"cannot read the message: {exc}")
        if first:
            chunk = _without_mbox_separator(chunk)
            first = False
        if not chunk:
            break
        size += len(chunk)
        if size > max_size:
            return Outcome(Status.DATAERR, f"message larger than {max_size} octets")
        writer.write(normaliser.feed(chunk))
    writer.write(normaliser.feed(b"", final=True))
    return None if size else Outcome(Status.DATAERR, "empty message")


def _without_mbox_separator(chunk: bytes) -> bytes:
    """Drop a leading ``From sender date`` line (mbox style, not a header field). The first
    read is a whole chunk unless the message is shorter, so the line is inside it."""
    if not chunk.startswith(_MBOX_SEPARATOR) or b"\n" not in chunk:
        return chunk
    return chunk.split(b"\n", 1)[1]


async def _folder(store: MailStore, account: Account, wanted: str) -> str:
    if wanted.upper() == "INBOX" or await store.get_mailbox(account.id, wanted) is not None:
        return wanted
    return "INBOX"
