"""Authentication of mail arriving on the MX listener, between end of data and commit.

Theory of operation
-------------------
The verdicts (SPF, DKIM, DMARC) need the whole message, but the body streams into a blob
writer as it arrives, and the Authentication-Results field must sit at the top of the stored
message (RFC 8601 §5: "prepended"), above text that is already written. Blobs are immutable,
so the session tees the incoming bytes into a :class:`MessageTap` and, at end of data:

* a message of at most ``[mailauth] max_verify_size`` octets is checked from the tap; the
  original writer is aborted (nothing durable was made) and a new body is written: our field,
  then the message with forged Authentication-Results fields removed (§5);
* a larger message keeps only its first :data:`HEAD_BYTES` in the tap. SPF and DMARC are
  evaluated (DMARC can only pass through SPF, so a failure is not enforced: "not evaluated"),
  DKIM is reported as ``none``, and the new body is the field, the cleaned header block and the
  rest copied in slices from the finished original. The original is left unreferenced for the
  store's orphan sweep, because the store has no call to drop a finished body.

The checks block on DNS, so they run in a worker thread; the resolver comes from
:func:`resolver_for`, which tests replace. Clients in ``[mailauth] trusted_networks`` (the
loopback by default: local scripts, a filter in front of us) and a disabled
``verify_inbound`` skip all of this and the message is stored exactly as received.

Policy (RFC 7489 §6.7 leaves it to the receiver): a DMARC ``fail`` whose policy is ``reject``
is refused with 550 5.7.1 when ``[mailauth] dmarc_reject`` is on; otherwise, and for
``quarantine``, local copies are delivered to the recipient's Junk mailbox. Forwarded copies
(aliases to remote addresses) are queued as usual.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field
from functools import cache

from mailpost.config import Config
from mailpost.delivery import pipeline
from mailpost.delivery.pipeline import Envelope
from mailpost.mailauth import dkim, dmarc, results, spf
from mailpost.mailauth.dns import Resolver, SystemResolver
from mailpost.store.interface import BlobWriter, MailStore
from mailpost.store.types import BlobRef, DeliveryOutcome, DeliveryTarget

log = logging.getLogger(__name__)

HEAD_BYTES = 262_144  # enough for any sane header block of a message too large to verify
COPY_SLICE = 1_048_576
JUNK = "Junk"
INBOX = "INBOX"
TOO_LARGE = "message too large to verify"


@dataclass
class MessageTap:
    """A bounded copy of the message as it streams in (the session feeds every chunk)."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    size: int = 0

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        room = (self.limit if self.complete else HEAD_BYTES) - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if not self.complete and len(self.data) > HEAD_BYTES:
            del self.data[HEAD_BYTES:]  # crossed the limit: keep only the head from now on

    @property
    def complete(self) -> bool:
        return self.size <= self.limit


@dataclass(frozen=True, slots=True)
class InboundVerdict:
    blob: BlobRef | None
    mailbox: str = INBOX
    refusal: str | None = None  # the text of a 550 5.7.1 reply


@cache
def _system_resolver(nameservers: tuple[str, ...]) -> SystemResolver:
    return SystemResolver(nameservers)


def resolver_for(config: Config) -> Resolver:
    """The resolver for the checks: ``[dns] nameservers``, else the host's."""
    return _system_resolver(tuple(config.dns.nameservers))


def tap_for(config: Config, remote_ip: str) -> MessageTap | None:
    """A tap when mail from ``remote_ip`` is to be authenticated, else None."""
    settings = config.mailauth
    if not settings.verify_inbound or _trusted(remote_ip, settings.trusted_networks):
        return None
    return MessageTap(settings.max_verify_size)


def _trusted(remote_ip: str, networks: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(remote_ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def evaluate(message: bytes, envelope: Envelope, resolver: Resolver,
             complete: bool) -> results.Verdicts:
    """Every verdict for ``message`` (blocking; ``complete`` False: only its head is here)."""
    spf_result = spf.check_spf(envelope.remote_ip, envelope.sender, envelope.helo, resolver)
    header_block = message[:results.header_end(message)]
    authors = dmarc.author_domains(header_block)
    if not complete:
        verdict = dmarc.evaluate(authors, spf_result, [], resolver)
        if verdict.result == "fail":  # DKIM might have passed: do not act on a half check
            verdict = dmarc.DMARCResult("none", verdict.from_domain, reason=TOO_LARGE)
        return results.Verdicts(spf_result, [], verdict, TOO_LARGE)
    dkim_results = dkim.verify(message, resolver)
    return results.Verdicts(spf_result, dkim_results,
                            dmarc.evaluate(authors, spf_result, dkim_results, resolver))


async def authenticate(config: Config, store: MailStore, envelope: Envelope,
                       writer: BlobWriter, tap: MessageTap) -> InboundVerdict:
    """Check the message, then store it with its Authentication-Results field or refuse it.

    Consumes ``writer`` (aborted or finished). Raises StoreError like ``BlobWriter.finish``.
    """
    message = bytes(tap.data)
    verdicts = await asyncio.to_thread(evaluate, message, envelope, resolver_for(config),
                                       tap.complete)
    log.info("smtp %s: <%s> spf=%s dkim=%s dmarc=%s", envelope.remote_ip, envelope.sender,
             verdicts.spf.result, ",".join(r.result for r in verdicts.dkim) or "none",
             verdicts.dmarc.result)
    if verdicts.dmarc.wants_reject and config.mailauth.dmarc_reject:
        writer.abort()
        return InboundVerdict(None, refusal=f"DMARC policy of {verdicts.dmarc.from_domain} "
                                            "rejects this message")
    field_bytes = results.header_field(config.hostname, verdicts)
    if tap.complete:
        writer.abort()
        blob = await _write(store, field_bytes, results.strip_forged(message, config.hostname))
    else:
        blob = await _rewrite_large(store, await writer.finish(), field_bytes, message,
                                    config.hostname)
    return InboundVerdict(blob, JUNK if verdicts.dmarc.wants_quarantine else INBOX)


async def _write(store: MailStore, prefix: bytes, message: bytes) -> BlobRef:
    """A new body: ``prefix`` then ``message``; the headers are cleaned by the caller."""
    writer = store.blobs.writer()
    try:
        writer.write(prefix)
        writer.write(message)
        return await writer.finish()
    except BaseException:
        # Only on failure: aborting a finished body would drop it before it is delivered.
        writer.abort()
        raise


async def _rewrite_large(store: MailStore, original: BlobRef, prefix: bytes, head: bytes,
                         authserv_id: str) -> BlobRef:
    end = results.header_end(head)
    writer = store.blobs.writer()
    try:
        writer.write(prefix)
        writer.write(results.strip_forged(head[:end], authserv_id))
        for start in range(end, original.size, COPY_SLICE):
            writer.write(await store.blobs.read(original, start,
                                                min(original.size, start + COPY_SLICE)))
        return await writer.finish()
    except BaseException:
        writer.abort()
        raise


async def commit(store: MailStore, envelope: Envelope, blob: BlobRef,
                 mailbox: str) -> DeliveryOutcome:
    """Deliver like ``pipeline.commit``, but local copies go to ``mailbox``."""
    if mailbox == INBOX:
        return await pipeline.commit(store, envelope, blob)
    targets = [DeliveryTarget(account_id, mailbox=mailbox)
               for account_id in envelope.local_account_ids]
    return await store.deliver(blob, targets, envelope.outbound())
