"""The one way a message enters the system from SMTP: trace headers, then one durable commit.

``Envelope`` collects what the SMTP session accepted (sender, resolved recipients, DSN
parameters, connection facts). ``trace_headers`` builds the Return-Path and Received fields
that are written in front of the message body (RFC 5321 §4.4). ``commit`` makes the message
durable for every recipient at once: local copies into INBOXes and remote recipients into the
outbound queue, in one store transaction. Only after it returns may SMTP answer 250.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass, field

from mailpost.delivery.resolve import Resolution
from mailpost.store.interface import MailStore
from mailpost.store.types import (
    BlobRef,
    DeliveryOutcome,
    DeliveryTarget,
    OutboundEnvelope,
    OutboundRecipient,
)

# Characters that may appear in a trace header value we build from client-supplied text
# (HELO name, addresses). Anything else is replaced, so client input can never break the
# header structure (no CR/LF injection: security catalogue S7, CVE-2026-1299 class).
_UNSAFE = re.compile(r"[^\x21-\x7e\u00a0-\U0010ffff]")


def _clean(text: str, limit: int = 255) -> str:
    return _UNSAFE.sub("?", text)[:limit]


@dataclass
class EnvelopeRecipient:
    address: str
    resolution: Resolution
    notify: tuple[str, ...] | None = None
    orcpt: str | None = None


@dataclass
class Envelope:
    """One SMTP transaction: built up by MAIL and RCPT, consumed by DATA/BDAT."""

    sender: str
    helo: str
    remote_ip: str
    protocol: str = "ESMTP"  # RFC 3848: SMTP, ESMTP, ESMTPS, ESMTPA, ESMTPSA
    tls: str | None = None
    authenticated_as: str | None = None
    ret: str | None = None
    envid: str | None = None
    smtputf8: bool = False
    recipients: list[EnvelopeRecipient] = field(default_factory=list)

    @property
    def local_account_ids(self) -> list[int]:
        seen: dict[int, None] = {}
        for recipient in self.recipients:
            for account_id in recipient.resolution.accounts:
                seen.setdefault(account_id, None)
        return list(seen)

    def outbound(self) -> OutboundEnvelope | None:
        remote: list[OutboundRecipient] = []
        known: set[str] = set()
        for recipient in self.recipients:
            for address in recipient.resolution.remote:
                if address in known:
                    continue
                known.add(address)
                notify = ",".join(recipient.notify) if recipient.notify else None
                remote.append(OutboundRecipient(address, notify, recipient.orcpt))
        if not remote:
            return None
        return OutboundEnvelope(
            sender=self.sender,
            recipients=tuple(remote),
            ret=self.ret,
            envid=self.envid,
            submitter=self.authenticated_as,
        )


def trace_headers(envelope: Envelope, hostname: str, message_id: str) -> bytes:
    """Return-Path and Received header fields for the top of the stored message.

    The Received field names the client (HELO and IP), this host, the protocol with its TLS
    and AUTH markers, the TLS version and cipher, and the recipient when there is exactly one
    (naming several would disclose Bcc recipients to each other).
    """
    sender = _clean(envelope.sender, 512)
    when = email.utils.format_datetime(email.utils.localtime())
    parts = [f"from {_clean(envelope.helo)} ([{envelope.remote_ip}])"]
    parts.append(f"by {hostname} (mailpost) with {envelope.protocol} id {message_id}")
    if envelope.tls:
        parts.append(f"(using {_clean(envelope.tls)})")
    if envelope.authenticated_as:
        parts.append(f"(authenticated sender: {_clean(envelope.authenticated_as)})")
    if len(envelope.recipients) == 1:
        parts.append(f"for <{_clean(envelope.recipients[0].address, 512)}>")
    received = "Received: " + "\r\n\t".join(parts) + f";\r\n\t{when}\r\n"
    return f"Return-Path: <{sender}>\r\n{received}".encode()


async def commit(store: MailStore, envelope: Envelope, blob: BlobRef) -> DeliveryOutcome:
    """Make the message durable for every recipient (one transaction); raises StoreError."""
    targets = [DeliveryTarget(account_id) for account_id in envelope.local_account_ids]
    return await store.deliver(blob, targets, envelope.outbound())
