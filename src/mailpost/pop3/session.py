"""One POP3 session: the policy and I/O around the sans-I/O protocol machine.

Theory of operation
-------------------
The machine (``pop3.protocol``) frames and parses; this module decides. It reads bytes from the
connection into the machine, takes events out one at a time, answers each, and flushes the
batched replies whenever the machine needs more input (RFC 2449 §6.6 PIPELINING). Decisions
made here:

* **Login.** USER/PASS and AUTH PLAIN/LOGIN (RFC 5034) go through the shared
  :class:`~mailpost.auth.authenticator.Authenticator`, which throttles failures; a network that
  has failed too often gets ``-ERR [AUTH]`` and the connection is closed. APOP (RFC 1939 §7,
  only with ``pop3.apop``) takes the same path with another proof: the greeting carries a fresh
  timestamp (:class:`~mailpost.auth.apop.TimestampSource`) and
  :meth:`~mailpost.auth.authenticator.Authenticator.authenticate_with` checks the digest with
  :class:`~mailpost.auth.apop.APOPVerifier`, so a wrong digest is a failed login like a wrong
  password. A good login then needs a slot in the per-account
  :class:`~mailpost.net.listener.AccountSessionLimiter` (shared with IMAP) and the exclusive
  maildrop lock (RFC 1939 §4; ``-ERR [IN-USE]``, RFC 2449 §8.1.2), and reads the INBOX
  snapshot (:mod:`mailpost.pop3.maildrop`). Store trouble is ``-ERR [SYS/TEMP]`` (RFC 3206).
* **RETR/TOP** send a message of up to :data:`WHOLE_MESSAGE_MAX` octets read whole, together
  with the bodies of the RETR lines already waiting behind it (one ``read_many`` store call per
  pipelined batch, at most :data:`READ_AHEAD_BYTES`), and stream a larger one in 64 KiB pieces
  read in a worker thread, so neither a large message nor the mailbox is ever held in memory.
  A body found clean when it was stored (``MessageMeta.wire_ready``) goes out without being
  scanned again. The connection's write deadline and
  high-water mark bound what a slow reader can make us queue. RETR then sets ``\\Seen`` so IMAP
  shows the message as read (TOP is a peek and does not): in one write for everything retrieved
  so far, once the client pauses (:data:`SEEN_WRITE_PAUSE`), at QUIT (not for the messages
  about to be removed) or when the session ends, so a client that keeps its pipeline full
  never waits for a flag write (Dovecot likewise writes them at the end).
* **QUIT** in the TRANSACTION state removes the messages marked with DELE in **one**
  ``store.expunge`` call, so the removal is atomic; the store then tells IMAP sessions. Any
  other end of the session (EOF, timeout, error) removes nothing (RFC 1939 §6).
* **Idle timeout** ``pop3.idle_timeout`` (at least 10 minutes, RFC 1939 §3): the connection is
  closed without a response and without entering UPDATE.

The lock and the session slot are released in a ``finally`` on every way out.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from mailpost.auth.apop import APOPVerifier, TimestampSource
from mailpost.auth.apop_key import APOPKey
from mailpost.auth.authenticator import Authenticator, AuthResult
from mailpost.auth.ratelimit import AuthThrottle
from mailpost.auth.sasl import (
    MECHANISMS,
    Challenge,
    Credentials,
    Failure,
    SASLMechanism,
    mechanism,
)
from mailpost.config import Config
from mailpost.net.listener import AccountSessionLimiter, Connection, ConnectionLost
from mailpost.pop3 import events as ev
from mailpost.pop3 import replies
from mailpost.pop3.events import Sentinel
from mailpost.pop3.locks import MaildropLocks
from mailpost.pop3.maildrop import SEEN, Maildrop
from mailpost.pop3.protocol import NEED_DATA, POP3ServerProtocol
from mailpost.pop3.replies import Continuation, Reply, err, ok
from mailpost.store.errors import NotFound, StoreError
from mailpost.store.interface import MailStore
from mailpost.store.types import Account, FlagMode, MessageMeta

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024
# Messages up to this size are read in one store call and queued whole with their status
# line and terminator, so a pipelined RETR batch leaves in few TLS records; larger ones stream.
WHOLE_MESSAGE_MAX = 256 * 1024
# Queued output is handed to the connection once it exceeds this (bounded memory).
OUTPUT_HIGH_WATER = 256 * 1024
# RETR lines that have already arrived behind the one being answered are read from the store
# in the same call, up to this many messages and octets (PIPELINING clients send a window).
READ_AHEAD_MESSAGES = 32
READ_AHEAD_BYTES = 1024 * 1024
# \Seen for retrieved messages is written once the client has paused this long (seconds),
# at QUIT (except for messages it deleted) or at the end of the session, not per batch.
SEEN_WRITE_PAUSE = 0.2

TOO_MANY_FAILURES = err("too many failures, try again later", "AUTH", close=True)
INVALID_CREDENTIALS = err("invalid user name or password", "AUTH")
MALFORMED_SASL = err("malformed authentication data", "AUTH")
UNKNOWN_MECHANISM = err("unsupported authentication mechanism", "AUTH")
MAILDROP_IN_USE = err("maildrop already locked: another POP3 session is active", "IN-USE")
TOO_MANY_SESSIONS = err("too many sessions for this account, try again later", "SYS/TEMP")
STORE_UNAVAILABLE = err("maildrop unavailable, try again later", "SYS/TEMP")
NO_INBOX = err("account has no INBOX", "SYS/PERM")
MESSAGE_GONE = err("no such message: it was removed by another session")
UPDATE_FAILED = err("some deleted messages not removed, try again later", "SYS/TEMP",
                    close=True)


@dataclass
class POP3Services:
    """What every POP3 session shares (built once by ``app``).

    With ``pop3.apop`` on, building it loads (or on first use creates) ``data_dir/apop.key``,
    so a key file that cannot be used stops the server at start, not at the first login.
    """

    config: Config
    store: MailStore
    authenticator: Authenticator
    throttle: AuthThrottle
    tls_context: ssl.SSLContext | None
    account_sessions: AccountSessionLimiter
    locks: MaildropLocks = field(default_factory=MaildropLocks)
    apop: APOPVerifier | None = field(default=None, init=False)
    timestamps: TimestampSource = field(init=False)

    def __post_init__(self) -> None:
        self.timestamps = TimestampSource(self.config.hostname)
        if self.config.pop3.apop:
            self.apop = APOPVerifier(self.store, APOPKey.for_data_dir(self.config.data_dir))


class POP3Session:
    def __init__(self, connection: Connection, services: POP3Services) -> None:
        self.connection = connection
        self.services = services
        self.store = services.store
        config = services.config
        self.timeout = config.pop3.idle_timeout
        self.proto = POP3ServerProtocol(
            tls_active=connection.tls_active,
            tls_available=services.tls_context is not None,
            allow_insecure_auth=config.pop3.allow_insecure_auth,
            max_errors=config.limits.max_errors,
            apop=services.apop is not None,
        )
        self.sasl: SASLMechanism | None = None
        self.account: Account | None = None  # set while the lock and the slot are held
        self.maildrop: Maildrop | None = None
        self.closing = False
        self.output = bytearray()
        # RETR'd messages whose \Seen is not yet stored: written in one transaction per
        # pipelined batch instead of one per message.
        self.pending_seen: list[MessageMeta] = []
        # Bodies read ahead for RETR lines already received: message number -> octets.
        self.read_ahead: dict[int, bytes] = {}

    # -- the I/O loop ---------------------------------------------------------------------

    def banner(self) -> Reply:
        """The greeting; with APOP on it carries a new timestamp (RFC 1939 §7)."""
        if self.services.apop is None:
            return ok(f"{self.services.config.hostname} POP3 server ready")
        # The host name is inside the timestamp; writing it twice could push a long one past
        # the 512-octet status line (RFC 2449 §4).
        return ok(f"POP3 server ready {self.services.timestamps()}")

    async def run(self) -> None:
        self.output += self.proto.greeting(self.banner())
        try:
            while not self.closing:
                event = self.proto.next_event()
                if event is NEED_DATA:
                    await self.flush()
                    self.proto.receive_data(await self.next_input())
                    continue
                # PAUSED cannot come here: every event is answered before the next is asked for.
                assert not isinstance(event, Sentinel), "protocol paused without a pending reply"
                reply = await self.handle(event)
                if reply is not None:
                    await self.send(reply)
            await self.flush()
        finally:
            await self.store_seen()
            self.release()

    async def next_input(self) -> bytes:
        """The client's next bytes. A client that pauses with messages retrieved but not yet
        marked gets them marked ``\\Seen`` meanwhile, so an IMAP client sees them read soon;
        one that keeps the pipeline full is not slowed by a write per batch."""
        if not self.pending_seen:
            return await self.connection.read(self.timeout)
        read = asyncio.ensure_future(self.connection.read(self.timeout))
        try:
            done, _ = await asyncio.wait({read}, timeout=SEEN_WRITE_PAUSE)
            if not done:
                await self.store_seen()
            return await read
        finally:
            read.cancel()  # only when leaving by an exception: a finished read ignores it

    async def send(self, reply: Reply | Continuation) -> None:
        self.output += self.proto.send(reply)
        if isinstance(reply, Reply) and reply.close:
            self.closing = True

    async def flush(self) -> None:
        """Hand the queued output to the connection and wait for the peer to take it."""
        if self.output:
            self.connection.write(bytes(self.output))
            self.output.clear()
        await self.connection.flush(self.timeout)

    def release(self) -> None:
        """Give back the maildrop lock and the account's session slot (idempotent)."""
        account, self.account, self.maildrop = self.account, None, None
        if account is not None:
            self.services.locks.release(account.id)
            self.services.account_sessions.release(account.id)

    # -- dispatch ---------------------------------------------------------------------------

    async def handle(self, event: ev.Event) -> Reply | Continuation | None:
        match event:
            case ev.Capa():
                return self.proto.capabilities(MECHANISMS)
            case ev.Stls():
                await self.on_stls()
                return None
            case ev.User():
                return ok("send PASS")  # the same for every name: RFC 1939 §7 allows it
            case ev.Pass(user=user, password=password):
                return await self.login(Credentials(authzid="", authcid=user, password=password))
            case ev.Apop():
                return await self.on_apop(event)
            case ev.Auth():
                return await self.on_auth(event)
            case ev.AuthResponse(data=data):
                return await self.sasl_step(data)
            case ev.AuthAbort():
                self.sasl = None
                return replies.AUTH_ABORTED
            case ev.Quit(update=update):
                return await self.on_quit() if update else replies.BYE
            case ev.Invalid(reply=reply):
                self.sasl = None  # a rejected SASL response ends the exchange too
                return reply
            case ev.ConnectionClosed():
                self.closing = True  # RFC 1939 §6: no QUIT, so nothing is removed
                return None
        return await self.transaction(event)

    async def transaction(self, event: ev.Event) -> Reply | None:
        drop = self.maildrop
        assert drop is not None, "the machine allows these commands only after login"
        if self.read_ahead and not isinstance(event, ev.Retr):
            self.read_ahead.clear()  # read-ahead covers only an unbroken run of RETR lines
        match event:
            case ev.Stat():
                count, size = drop.stat()
                return ok(f"{count} {size}")
            case ev.List(msg=None):
                count, size = drop.stat()
                return Reply(True, f"{count} messages ({size} octets)",
                             lines=drop.scan_listing())
            case ev.List(msg=int(msg)):
                meta = drop.get(msg)
                return ok(f"{msg} {meta.size}") if meta else replies.NO_SUCH_MESSAGE
            case ev.Uidl(msg=None):
                return Reply(True, "unique-id listing follows", lines=drop.unique_id_listing())
            case ev.Uidl(msg=int(msg)):
                meta = drop.get(msg)
                return ok(f"{msg} {drop.unique_id(meta)}") if meta else replies.NO_SUCH_MESSAGE
            case ev.Retr(msg=msg):
                return await self.send_message(drop, msg, None)
            case ev.Top(msg=msg, lines=lines):
                return await self.send_message(drop, msg, lines)
            case ev.Dele(msg=msg):
                if not drop.delete(msg):  # out of range, or marked already
                    return replies.NO_SUCH_MESSAGE
                return ok(f"message {msg} deleted")
            case ev.Rset():
                drop.reset()
                count, size = drop.stat()
                return ok(f"maildrop has {count} messages ({size} octets)")
            case ev.Noop():
                return replies.NOOP_OK
        raise AssertionError(f"unhandled POP3 event {event!r}")

    # -- STLS and login ---------------------------------------------------------------------

    async def on_stls(self) -> None:
        context = self.services.tls_context
        assert context is not None, "the machine refuses STLS without a TLS context"
        await self.send(replies.READY_TO_START_TLS)
        if self.proto.discarded_plaintext:
            log.warning("pop3 %s: discarded plaintext pipelined after STLS",
                        self.connection.remote_ip)
        await self.flush()
        limits = self.services.config.limits
        await self.connection.start_tls(context, limits.tls_handshake_timeout)
        self.proto.tls_started()
        self.sasl = None  # RFC 2595 §4: nothing learnt before the handshake carries over

    async def on_auth(self, event: ev.Auth) -> Reply | Continuation:
        sasl = mechanism(event.mechanism)
        if sasl is None:
            return UNKNOWN_MECHANISM
        if self.services.throttle.too_many(self.connection.remote_ip):
            return TOO_MANY_FAILURES
        self.sasl = sasl
        return await self.sasl_result(sasl.start(event.initial_response))

    async def sasl_step(self, data: bytes) -> Reply | Continuation:
        assert self.sasl is not None, "the machine sends responses only inside AUTH"
        return await self.sasl_result(self.sasl.step(data))

    async def sasl_result(self, step: Challenge | Credentials | Failure) -> Reply | Continuation:
        if isinstance(step, Challenge):
            return Continuation(step.data)
        self.sasl = None
        if isinstance(step, Failure):
            return MALFORMED_SASL
        return await self.login(step)

    async def login(self, credentials: Credentials) -> Reply:
        authenticator = self.services.authenticator
        return await self.authenticated(lambda ip: authenticator.authenticate(credentials, ip))

    async def on_apop(self, event: ev.Apop) -> Reply:
        """APOP name digest (RFC 1939 §7): the USER/PASS path with the digest as the proof."""
        verifier = self.services.apop
        assert verifier is not None, "the machine emits Apop only when APOP is offered"

        async def digest_matches(account: Account | None) -> bool:
            return await verifier.matches(account, event.timestamp, event.digest)

        authenticator = self.services.authenticator
        return await self.authenticated(
            lambda ip: authenticator.authenticate_with(event.name, ip, digest_matches))

    async def authenticated(self, attempt: Callable[[str], Awaitable[AuthResult]]) -> Reply:
        """Run a login ``attempt`` from the peer's address; open the maildrop if it succeeds."""
        ip = self.connection.remote_ip
        throttle = self.services.throttle
        if throttle.too_many(ip):
            return TOO_MANY_FAILURES
        try:
            result = await attempt(ip)
        except StoreError as exc:
            # The directory could not be read: no verdict, so no failure counted (RFC 3206).
            log.warning("pop3 %s: cannot check credentials: %s", ip, exc)
            return STORE_UNAVAILABLE
        if result.ok and result.account is not None:
            return await self.open_maildrop(result.account)
        if result.reason == "throttled" or throttle.too_many(ip):
            log.warning("pop3 %s: too many failed logins, closing", ip)
            return TOO_MANY_FAILURES
        return INVALID_CREDENTIALS

    async def open_maildrop(self, account: Account) -> Reply:
        """Take the session slot and the lock, then read the snapshot (RFC 1939 §4)."""
        services = self.services
        if not services.account_sessions.acquire(account.id):
            return TOO_MANY_SESSIONS
        if not services.locks.acquire(account.id):
            services.account_sessions.release(account.id)
            return MAILDROP_IN_USE
        self.account = account
        try:
            inbox = await self.store.get_mailbox(account.id, "INBOX")
            messages = await self.store.messages(inbox.id) if inbox is not None else []
        except StoreError as exc:
            log.warning("pop3 %s: cannot open the maildrop: %s", account.address, exc)
            self.release()  # RFC 1939 §4: release the lock before answering -ERR
            return STORE_UNAVAILABLE
        if inbox is None:
            self.release()
            return NO_INBOX
        self.maildrop = Maildrop(inbox.id, inbox.uidvalidity, messages)
        count, size = self.maildrop.stat()
        log.info("pop3 %s: %s logged in, %d messages", self.connection.remote_ip,
                 account.address, count)
        return ok(f"maildrop has {count} messages ({size} octets)")

    # -- RETR and TOP -----------------------------------------------------------------------

    async def send_message(self, drop: Maildrop, msg: int, lines: int | None) -> Reply | None:
        """Send message ``msg`` (whole, or TOP's ``lines``); None once it has been sent."""
        meta = drop.get(msg)
        if meta is None:
            return replies.NO_SUCH_MESSAGE
        try:
            if meta.size <= WHOLE_MESSAGE_MAX:
                await self.send_whole(await self.whole_body(drop, msg, meta, lines is None), meta)
            else:
                await self.send_streamed(meta)
        except NotFound:
            return MESSAGE_GONE  # expunged by another session, and its body deleted
        except StoreError:
            return STORE_UNAVAILABLE
        if lines is None and not drop.is_seen(meta):
            drop.mark_seen(meta)
            self.pending_seen.append(meta)
        return None

    async def whole_body(self, drop: Maildrop, msg: int, meta: MessageMeta,
                         retr: bool) -> bytes:
        """The body of message ``msg``: read ahead already, or read now together with those
        of the RETR lines waiting behind this one (one store call for a pipelined batch)."""
        body = self.read_ahead.pop(msg, None)
        if body is not None:
            return body
        wanted = {msg: meta}
        if retr:
            wanted |= self.pipelined_messages(drop, READ_AHEAD_BYTES - meta.size)
        if len(wanted) == 1:
            return await self.store.blobs.read(meta.blob_id)
        bodies = await self.store.blobs.read_many([other.blob_id for other in wanted.values()])
        for number, other in wanted.items():
            found = bodies.get(other.blob_id)
            if number != msg and found is not None:
                self.read_ahead[number] = found
        body = bodies.get(meta.blob_id)
        if body is None:
            raise NotFound(f"message {msg} has no body")
        return body

    def pipelined_messages(self, drop: Maildrop, budget: int) -> dict[int, MessageMeta]:
        """The messages that RETR lines already received ask for next, within ``budget``
        octets (a message that is gone, or too large to be sent whole, is not read ahead)."""
        wanted: dict[int, MessageMeta] = {}
        for number in self.proto.pipelined_retrievals(READ_AHEAD_MESSAGES):
            meta = drop.get(number)
            if meta is None or meta.size > WHOLE_MESSAGE_MAX:
                continue
            if meta.size > budget:
                break
            wanted[number] = meta
            budget -= meta.size
        return wanted

    async def send_whole(self, body: bytes, meta: MessageMeta) -> None:
        await self.send(Reply(True, f"{meta.size} octets", streamed=True))
        self.output += self.proto.send_body(body, wire_ready=meta.wire_ready)
        self.output += self.proto.end_body()
        if len(self.output) >= OUTPUT_HIGH_WATER:
            await self.flush()

    async def send_streamed(self, meta: MessageMeta) -> None:
        body = await asyncio.to_thread(self.store.blobs.open, meta.blob_id)
        try:
            await self.send(Reply(True, f"{meta.size} octets", streamed=True))
            await self.flush()
            await self.stream(body)
        finally:
            body.close()

    async def stream(self, body: BinaryIO) -> None:
        proto = self.proto
        while not proto.body_complete:
            try:
                chunk = await asyncio.to_thread(body.read, READ_CHUNK)
            except OSError as exc:
                # The +OK is out, so no -ERR can follow: drop the connection (no UPDATE).
                log.error("pop3 %s: reading a message body failed: %s",
                          self.connection.remote_ip, exc)
                raise ConnectionLost("message body unreadable") from exc
            if not chunk:
                break
            self.output += proto.send_body(chunk)
            await self.flush()
        self.output += proto.end_body()

    async def store_seen(self, skip: frozenset[int] = frozenset()) -> None:
        """RETR reads a message: set ``\\Seen`` so IMAP clients show it as read, for all the
        messages retrieved since the last time in one transaction (but not for the UIDs in
        ``skip``: those QUIT is about to remove)."""
        drop = self.maildrop
        pending = [meta for meta in self.pending_seen if meta.uid not in skip]
        self.pending_seen = []
        if not pending or drop is None:
            return
        try:
            await self.store.store_flags(drop.mailbox_id, [meta.uid for meta in pending],
                                         FlagMode.ADD, frozenset({SEEN}))
        except StoreError as exc:
            log.warning("pop3: cannot set \\Seen on %d messages: %s", len(pending), exc)

    # -- UPDATE -------------------------------------------------------------------------------

    async def on_quit(self) -> Reply:
        """RFC 1939 §6: remove the marked messages in one transaction, then say goodbye."""
        drop = self.maildrop
        assert drop is not None
        uids = drop.deleted_uids()
        await self.store_seen(skip=frozenset(uids))
        try:
            if uids:
                await self.store.expunge(drop.mailbox_id, uids)
        except StoreError as exc:
            log.warning("pop3 %s: UPDATE failed: %s", self.connection.remote_ip, exc)
            return UPDATE_FAILED
        finally:
            # "Whether the removal was successful or not, the server then releases any
            # exclusive-access lock" (RFC 1939 §6), before the client can see the answer.
            self.release()
        return ok(f"{self.services.config.hostname} closing, {len(uids)} messages deleted",
                  close=True)
