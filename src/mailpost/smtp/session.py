"""One SMTP session: the policy around the sans-I/O protocol machine.

The machine (``smtp.protocol``) frames and parses; this module decides. It reads bytes from the
connection into the machine, takes events out one at a time, answers each with a reply, and
flushes the batched replies whenever the machine needs more input (which is exactly what
PIPELINING asks for: RFC 2920 §3.1). Decisions made here:

* who may relay: nobody on the MX listener; authenticated users on submission (RFC 6409);
* AUTH only on submission and only under TLS (RFC 4954 §4, RFC 8314; catalogue R4);
* an authenticated user sends only as their own addresses (catalogue R9);
* recipients resolved at RCPT time: unknown users get 550 5.1.1 (no backscatter);
* a message is answered 250 only after ``delivery.pipeline.commit`` made it durable.
"""

from __future__ import annotations

import base64
import enum
import logging
import secrets
import ssl
from dataclasses import dataclass

from mailpost.auth.authenticator import Authenticator
from mailpost.auth.ratelimit import AuthThrottle
from mailpost.auth.sasl import Challenge, Credentials, Failure, SASLMechanism, mechanism
from mailpost.config import Config
from mailpost.delivery import pipeline
from mailpost.delivery.pipeline import Envelope, EnvelopeRecipient
from mailpost.delivery.resolve import RecipientResolver, Refusal, Resolution
from mailpost.mailauth import inbound
from mailpost.net.listener import Connection
from mailpost.smtp import events as ev
from mailpost.smtp.protocol import NEED_DATA, PAUSED, SMTPServerProtocol
from mailpost.smtp.replies import Reply
from mailpost.store.errors import OverQuota, StoreError, StoreUnavailable
from mailpost.store.interface import BlobWriter, MailStore
from mailpost.store.types import Account, BlobRef, DeliveryTarget

log = logging.getLogger(__name__)


class Mode(enum.Enum):
    MX = "mx"  # port 25: mail for local recipients only, no AUTH
    SUBMISSION = "submission"  # 587/465: AUTH required, relays for its users


@dataclass
class SMTPServices:
    """What every SMTP session shares (built once by ``app``)."""

    config: Config
    store: MailStore
    resolver: RecipientResolver
    authenticator: Authenticator
    throttle: AuthThrottle
    tls_context: ssl.SSLContext | None


def _reply(code: int, enhanced: str | None, text: str, close: bool = False) -> Reply:
    return Reply.make(code, enhanced, text, close=close)


REFUSAL_REPLIES = {
    Refusal.UNKNOWN_USER: _reply(550, "5.1.1", "Recipient address rejected: user unknown"),
    Refusal.RELAY_DENIED: _reply(554, "5.7.1", "Relay access denied"),
    Refusal.ROUTING_TRICK: _reply(550, "5.7.1", "Source routes and %, ! or @ in the local part "
                                                "are not accepted"),
    Refusal.ALIAS_LOOP: _reply(550, "5.4.6", "Alias expansion loop"),
}
STORE_UNAVAILABLE = _reply(452, "4.3.1", "Insufficient system storage, try again later")


class SMTPSession:
    def __init__(self, connection: Connection, mode: Mode, services: SMTPServices) -> None:
        self.connection = connection
        self.mode = mode
        self.services = services
        limits = services.config.limits
        self.proto = SMTPServerProtocol(
            max_line_length=limits.max_line_length,
            max_message_size=limits.max_message_size,
            max_errors=limits.max_errors,
            tls_active=connection.tls_active,
        )
        self.hostname = services.config.hostname
        self.helo: str | None = None
        self.extended = False
        self.account: Account | None = None
        self.envelope: Envelope | None = None
        self.mail_size: int | None = None
        self.writer: BlobWriter | None = None
        self.tap: inbound.MessageTap | None = None  # MX: a copy for SPF/DKIM/DMARC checks
        self.write_failed = False
        self.message_id = ""
        self.sasl: SASLMechanism | None = None
        self.closing = False
        self.output = bytearray()

    # -- the I/O loop ---------------------------------------------------------------------

    async def run(self) -> None:
        banner = _reply(220, None, f"{self.hostname} ESMTP mailpost")
        self.output += self.proto.greeting(banner)
        timeout = self.services.config.limits.smtp_timeout
        try:
            while not self.closing:
                event = self.proto.next_event()
                if event is NEED_DATA:
                    await self.flush(timeout)
                    self.proto.receive_data(await self.connection.read(timeout))
                    continue
                if event is PAUSED:  # pragma: no cover - we always answer before asking again
                    raise RuntimeError("protocol paused without a pending reply")
                reply = await self.handle(event)
                if reply is not None:
                    await self.send(reply)
            await self.flush(timeout)
        finally:
            self.discard_message()

    async def send(self, reply: Reply) -> None:
        # Replies are batched until the machine needs input: a pipelined group gets its
        # replies in one write (RFC 2920 §3.1), and there is one system call, not one each.
        self.output += self.proto.send(reply)
        if reply.close:
            self.closing = True

    async def flush(self, timeout: float) -> None:
        if self.output:
            self.connection.write(bytes(self.output))
            self.output.clear()
        await self.connection.flush(timeout)

    # -- dispatch ---------------------------------------------------------------------------

    async def handle(self, event: object) -> Reply | None:
        match event:
            case ev.DataChunk(data=data):
                self.write_data(data)
                return None
            case ev.Hello():
                return self.on_hello(event)
            case ev.StartTLS():
                return await self.on_starttls()
            case ev.Auth():
                return await self.on_auth(event)
            case ev.AuthResponse(data=data):
                return await self.sasl_step(data)
            case ev.AuthAbort():
                self.sasl = None
                return _reply(501, "5.0.0", "Authentication cancelled")
            case ev.MailFrom():
                return await self.on_mail(event)
            case ev.RcptTo():
                return await self.on_rcpt(event)
            case ev.Data():
                return self.on_data()
            case ev.BdatChunkEnd():
                return self.on_bdat_chunk(event)
            case ev.EndOfData():
                return await self.on_end_of_data(event)
            case ev.Reset():
                self.reset_transaction()
                return _reply(250, "2.0.0", "Reset OK")
            case ev.Noop():
                return _reply(250, "2.0.0", "OK")
            case ev.Quit():
                return _reply(221, "2.0.0", f"{self.hostname} closing connection", close=True)
            case ev.Vrfy():
                return _reply(252, "2.5.0", "Cannot VRFY user, but will accept message")
            case ev.Expn():
                return _reply(502, "5.5.1", "EXPN is not supported")
            case ev.Help():
                return _reply(214, "2.0.0", "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA "
                                            "BDAT RSET NOOP QUIT STARTTLS AUTH VRFY HELP")
            case ev.Invalid(reply=reply):
                if self.writer is not None and not self.proto.in_transaction:
                    self.reset_transaction()
                return reply
            case ev.ConnectionClosed():
                self.closing = True
                return None
        raise AssertionError(f"unhandled SMTP event {event!r}")

    # -- greeting, TLS, AUTH ----------------------------------------------------------------

    def extensions(self) -> list[str]:
        limits = self.services.config.limits
        items = ["PIPELINING", f"SIZE {limits.max_message_size}", "8BITMIME", "SMTPUTF8",
                 "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"]
        if self.services.tls_context is not None and not self.proto.tls_active:
            items.append("STARTTLS")
        if self.mode is Mode.SUBMISSION and self.proto.tls_active:
            items.append("AUTH PLAIN LOGIN")
        return items

    def on_hello(self, event: ev.Hello) -> Reply:
        self.reset_transaction()
        self.helo = event.hostname
        self.extended = event.extended
        if not event.extended:
            return _reply(250, None, self.hostname)
        lines = [f"{self.hostname} Hello {event.hostname} [{self.connection.remote_ip}]"]
        return Reply.make(250, None, *lines, *self.extensions())

    async def on_starttls(self) -> Reply | None:
        context = self.services.tls_context
        if context is None:
            return _reply(454, "4.7.0", "TLS not available")
        await self.send(_reply(220, "2.0.0", "Ready to start TLS"))
        if self.proto.discarded_plaintext:
            log.warning("smtp %s: discarded plaintext pipelined after STARTTLS",
                        self.connection.remote_ip)
        await self.flush(self.services.config.limits.smtp_timeout)
        await self.connection.start_tls(context, self.services.config.limits.tls_handshake_timeout)
        self.proto.tls_started()
        # RFC 3207 §4.2: forget everything learnt before the handshake.
        self.helo = None
        self.reset_transaction()
        return None

    async def on_auth(self, event: ev.Auth) -> Reply:
        if self.mode is not Mode.SUBMISSION:
            return _reply(503, "5.5.1", "AUTH is only offered on the submission port")
        if not self.proto.tls_active:
            return _reply(538, "5.7.11", "Encryption required for requested authentication "
                                         "mechanism")
        if self.services.throttle.too_many(self.connection.remote_ip):
            return _reply(421, "4.7.0", "Too many failed authentications, try later", close=True)
        sasl = mechanism(event.mechanism)
        if sasl is None:
            return _reply(504, "5.5.4", "Unrecognized authentication mechanism")
        self.sasl = sasl
        return await self.sasl_result(sasl.start(event.initial_response))

    async def sasl_step(self, data: bytes) -> Reply:
        if self.sasl is None:  # pragma: no cover - the machine only sends responses in AUTH
            return _reply(503, "5.5.1", "No authentication in progress")
        return await self.sasl_result(self.sasl.step(data))

    async def sasl_result(self, step: Challenge | Credentials | Failure) -> Reply:
        if isinstance(step, Challenge):
            return _reply(334, None, base64.b64encode(step.data).decode("ascii"))
        self.sasl = None
        if isinstance(step, Failure):
            return _reply(501, "5.5.2", f"Malformed authentication data: {step.reason}")
        result = await self.services.authenticator.authenticate(step, self.connection.remote_ip)
        if result.ok and result.account is not None:
            self.account = result.account
            log.info("smtp %s: authenticated as %s", self.connection.remote_ip,
                     result.account.address)
            return _reply(235, "2.7.0", "Authentication successful")
        if self.services.throttle.too_many(self.connection.remote_ip):
            return _reply(421, "4.7.0", "Too many failed authentications, try later", close=True)
        return _reply(535, "5.7.8", "Authentication credentials invalid")

    # -- the transaction --------------------------------------------------------------------

    def protocol_name(self) -> str:
        """RFC 3848 "with" keyword for the Received field."""
        if not self.extended:
            return "SMTP"
        return "ESMTP" + ("S" if self.proto.tls_active else "") + ("A" if self.account else "")

    async def on_mail(self, event: ev.MailFrom) -> Reply:
        config = self.services.config
        if self.mode is Mode.SUBMISSION and self.account is None:
            return _reply(530, "5.7.0", "Authentication required")
        if self.services.store.blobs.free_space() < config.min_free_disk:
            return STORE_UNAVAILABLE
        if self.account is not None and not await self.services.resolver.sender_allowed(
                self.account, event.address):
            return _reply(553, "5.7.1", f"Sender address <{event.address}> not owned by user "
                                        f"{self.account.address}")
        self.envelope = Envelope(
            sender=event.address,
            helo=self.helo or "unknown",
            remote_ip=self.connection.remote_ip,
            protocol=self.protocol_name(),
            tls=self.connection.tls_description,
            authenticated_as=self.account.address if self.account else None,
            ret=event.params.ret,
            envid=event.params.envid,
            smtputf8=event.params.smtputf8,
        )
        self.mail_size = event.params.size  # the machine refused sizes over the limit
        return _reply(250, "2.1.0", "Sender OK")

    async def on_rcpt(self, event: ev.RcptTo) -> Reply:
        envelope = self.envelope
        assert envelope is not None, "the machine orders MAIL before RCPT"
        if len(envelope.recipients) >= self.services.config.limits.max_recipients:
            return _reply(452, "4.5.3", "Too many recipients")
        address = event.address
        if "@" not in address:  # RFC 5321 §4.5.1: <postmaster> without a domain
            postmaster = await self.services.resolver.postmaster_address()
            if postmaster is None:
                return REFUSAL_REPLIES[Refusal.UNKNOWN_USER]
            address = postmaster
        may_relay = self.account is not None
        if event.path.source_route and not may_relay:
            return REFUSAL_REPLIES[Refusal.ROUTING_TRICK]
        resolution = await self.services.resolver.resolve(address, may_relay=may_relay)
        if isinstance(resolution, Refusal):
            return REFUSAL_REPLIES[resolution]
        quota_reply = await self.check_quota(resolution)
        if quota_reply is not None:
            return quota_reply
        envelope.recipients.append(EnvelopeRecipient(
            address, resolution, event.params.notify, event.params.orcpt))
        return _reply(250, "2.1.5", "Recipient OK")

    async def check_quota(self, resolution: Resolution) -> Reply | None:
        size = self.mail_size or 0
        for account in resolution.accounts.values():
            used_bytes, used_messages = await self.services.store.account_usage(account.id)
            if account.quota_bytes is not None:
                if used_bytes >= account.quota_bytes:
                    return _reply(452, "4.2.2", f"Mailbox full: {account.address}")
                if used_bytes + size > account.quota_bytes:
                    return _reply(552, "5.2.2", f"Message too big for mailbox {account.address}")
            if account.quota_messages is not None and used_messages >= account.quota_messages:
                return _reply(452, "4.2.2", f"Mailbox full: {account.address}")
        return None

    def start_message(self) -> None:
        """Open the body file and write the trace headers in front of the message."""
        assert self.envelope is not None
        self.message_id = secrets.token_hex(8).upper()
        self.writer = self.services.store.blobs.writer()
        self.tap = (inbound.tap_for(self.services.config, self.connection.remote_ip)
                    if self.mode is Mode.MX else None)
        self.write_failed = False
        self.write_data(pipeline.trace_headers(self.envelope, self.hostname, self.message_id))

    def write_data(self, data: bytes) -> None:
        if self.writer is None:
            self.start_message()  # first BDAT chunk
        if self.write_failed or self.writer is None:
            return
        try:
            self.writer.write(data)
            if self.tap is not None:
                self.tap.feed(data)
        except StoreError:
            # Disk full mid-message: keep reading to the end, then answer 452 (catalogue §3).
            self.write_failed = True

    def on_data(self) -> Reply:
        self.start_message()
        return _reply(354, None, "End data with <CR><LF>.<CR><LF>")

    def on_bdat_chunk(self, event: ev.BdatChunkEnd) -> Reply:
        if self.writer is None:
            self.start_message()
        return _reply(250, "2.0.0", f"{event.size} octets received")

    async def on_end_of_data(self, event: ev.EndOfData) -> Reply:
        if self.writer is None:
            self.start_message()  # an empty BDAT LAST
        try:
            if event.received_headers >= self.services.config.limits.max_hops:
                return _reply(554, "5.4.6", "Too many hops (Received headers): mail loop?")
            if self.write_failed:
                return STORE_UNAVAILABLE
            return await self.commit_message()
        finally:
            self.reset_transaction()

    async def commit_message(self) -> Reply:
        assert self.writer is not None and self.envelope is not None
        writer, self.writer = self.writer, None
        tap, self.tap = self.tap, None
        try:
            if tap is None:
                blob, mailbox = await writer.finish(), inbound.INBOX
            else:  # RFC 8601 Authentication-Results; DMARC policy (RFC 7489 §6.7)
                verdict = await inbound.authenticate(self.services.config, self.services.store,
                                                     self.envelope, writer, tap)
                if verdict.blob is None:
                    return _reply(550, "5.7.1", verdict.refusal or "Rejected by DMARC policy")
                blob, mailbox = verdict.blob, verdict.mailbox
        except StoreError:
            writer.abort()
            return STORE_UNAVAILABLE
        try:
            await inbound.commit(self.services.store, self.envelope, blob, mailbox)
        except OverQuota:
            await self.release(blob)
            return _reply(552, "5.2.2", "Mailbox full")
        except StoreUnavailable:
            await self.release(blob)
            return STORE_UNAVAILABLE
        if self.services.config.submission.save_to_sent and self.account is not None:
            await self.save_sent_copy(self.account, blob)
        log.info("smtp %s: accepted %s from <%s> for %d recipient(s)", self.connection.remote_ip,
                 self.message_id, self.envelope.sender, len(self.envelope.recipients))
        return _reply(250, "2.0.0", f"OK: queued as {self.message_id}")

    async def release(self, blob: BlobRef) -> None:
        """The message was not accepted after all: its finished body goes at once."""
        try:
            await self.services.store.release_blob(blob)
        except StoreError as exc:  # the start-up sweep removes it then
            log.warning("smtp %s: could not release an undelivered body: %s",
                        self.connection.remote_ip, exc)

    async def save_sent_copy(self, account: Account, blob: BlobRef) -> None:
        """``[submission] save_to_sent``: a copy in the submitter's \\Sent mailbox (RFC 6154).

        A separate transaction after the message is committed: the 250 does not depend on it,
        so a failure here is logged, never reported to the client as a failed submission.
        Without a \\Sent mailbox there is no copy (rather than one in INBOX)."""
        try:
            boxes = await self.services.store.list_mailboxes(account.id)
            sent = next((box.name for box in boxes if box.special_use == "\\Sent"), None)
            if sent is not None:
                target = DeliveryTarget(account.id, sent, frozenset({"\\Seen"}))
                await self.services.store.deliver(blob, [target])
        except StoreError as exc:
            log.warning("smtp %s: no Sent copy for %s: %s", self.connection.remote_ip,
                        account.address, exc)

    def discard_message(self) -> None:
        self.tap = None
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def reset_transaction(self) -> None:
        self.discard_message()
        self.envelope = None
        self.mail_size = None
