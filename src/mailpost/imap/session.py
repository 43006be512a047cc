"""One IMAP session: the I/O loop and state around the sans-I/O protocol machine.

Theory of operation
-------------------
The loop is the same as SMTP's: feed bytes to :class:`IMAPServerProtocol`, take one event,
answer it, flush when the machine needs more input. Commands are dispatched through an
explicit table (``handlers.HANDLERS``) checked against the states each command is valid in
(RFC 9051 §3: not authenticated, authenticated, selected); a handler returns the tagged
completion and writes untagged data through :meth:`IMAPSession.write`.

Before each tagged completion in the selected state the session catches up with the store
(``SelectedMailbox.sync``) when the change bus rang for this account, so other devices'
changes reach the client at every command; EXPUNGE is held back while answering FETCH, STORE
and SEARCH (RFC 9051 §7.5.1) and delivered with the next command that allows it.

COMPRESS=DEFLATE (RFC 4978) wraps both directions once enabled; inflation is bounded per step
so a compression bomb can never produce more than one read's worth of input at a time
(security catalogue I11).
"""

from __future__ import annotations

import enum
import logging
import ssl
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mailpost.auth.authenticator import Authenticator
from mailpost.auth.ratelimit import AuthThrottle
from mailpost.auth.sasl import SASLMechanism
from mailpost.bus import ChangeBus, Subscription
from mailpost.config import Config
from mailpost.imap import commands as cmd
from mailpost.imap import events as ev
from mailpost.imap import handlers
from mailpost.imap.handlers import notify
from mailpost.imap.protocol import IMAPServerProtocol
from mailpost.imap.recent import RecentRegistry
from mailpost.imap.responses import Bye, Response, Tagged, Untagged
from mailpost.imap.selected import SelectedMailbox, SyncOptions
from mailpost.imap.seqset import IntervalSet
from mailpost.net.listener import AccountSessionLimiter, Connection
from mailpost.store.errors import NotFound
from mailpost.store.interface import MailStore
from mailpost.store.types import Account

log = logging.getLogger(__name__)

INFLATE_STEP = 65536
OUTPUT_HIGH_WATER = 256 * 1024


class SessionState(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


@dataclass
class IMAPServices:
    """What every IMAP session shares (built once by ``app``)."""

    config: Config
    store: MailStore
    bus: ChangeBus
    authenticator: Authenticator
    throttle: AuthThrottle
    tls_context: ssl.SSLContext | None
    account_sessions: AccountSessionLimiter
    # Which messages have been announced as \Recent (RFC 3501): one per server process.
    recent: RecentRegistry = field(default_factory=RecentRegistry)


# A handler returns the response that completes its command, or None when it has already
# sent it itself (STARTTLS and COMPRESS must act right after their OK).
Handler = Callable[["IMAPSession", cmd.Command], Awaitable[Response | None]]
# Commands during which no EXPUNGE may be sent (RFC 9051 §7.5.1); their UID forms may.
# RFC 5256 §3 adds SORT and THREAD.
_NO_EXPUNGE = (cmd.Fetch, cmd.Store, cmd.Search, cmd.Sort, cmd.Thread)


class IMAPSession:
    def __init__(self, connection: Connection, services: IMAPServices) -> None:
        self.connection = connection
        self.services = services
        self.config = services.config
        self.store = services.store
        self.proto = IMAPServerProtocol(
            max_line_length=self.config.imap.max_line_length,
            max_command_size=self.config.imap.max_command_size,
        )
        self.state = SessionState.NOT_AUTHENTICATED
        self.account: Account | None = None
        self.subscription: Subscription | None = None
        self.selected: SelectedMailbox | None = None
        self.options = SyncOptions()
        self.enabled: set[str] = set()
        # RFC 5182 SEARCHRES: the UIDs of the last SEARCH ... RETURN (SAVE); None if none.
        self.saved_search: list[int] | None = None
        self.sasl: tuple[str, SASLMechanism] | None = None
        self.closing = False
        self.output = bytearray()
        self._inflate: zlib._Decompress | None = None
        self._deflate: zlib._Compress | None = None

    # -- output -------------------------------------------------------------------------------

    @property
    def utf8(self) -> bool:
        return self.proto.utf8_enabled

    def write(self, data: bytes) -> None:
        """Queue untagged data (or literal octets) for the client. Output is gathered and
        handed to the connection at :meth:`flush` (or past a bound): one TLS record and one
        system call for a whole ``FETCH 1:* (FLAGS)``, not one per message."""
        self.output += data
        if len(self.output) >= OUTPUT_HIGH_WATER:
            self._hand_over()

    def _hand_over(self) -> None:
        if not self.output:
            return
        data = bytes(self.output)
        self.output.clear()
        if self._deflate is not None:
            data = self._deflate.compress(data)
        self.connection.write(data)

    def respond(self, response: Response) -> None:
        """Send a response that the machine must see (tagged, BYE, continuation, ...)."""
        self.write(self.proto.send(response))
        if isinstance(response, Bye):
            self.closing = True

    async def flush(self) -> None:
        self._hand_over()
        if self._deflate is not None:
            self.connection.write(self._deflate.flush(zlib.Z_SYNC_FLUSH))
        await self.connection.flush(self.config.imap.write_timeout)

    # -- input --------------------------------------------------------------------------------

    async def read_input(self, timeout: float) -> bytes:
        """The next plaintext (inflated) input; b"" at EOF."""
        if self._inflate is not None:
            if self._inflate.unconsumed_tail:
                return self._inflate.decompress(self._inflate.unconsumed_tail, INFLATE_STEP)
            while True:
                raw = await self.connection.read(timeout)
                if not raw:
                    return b""
                data = self._inflate.decompress(raw, INFLATE_STEP)
                if data:
                    return data
        return await self.connection.read(timeout)

    def start_compression(self, leftover: bytes) -> None:
        """RFC 4978 §3: raw DEFLATE both ways from the octet after the tagged OK."""
        self._hand_over()  # the tagged OK itself goes out uncompressed
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        if leftover:
            self.proto.receive_data(self._inflate.decompress(leftover, INFLATE_STEP))

    @property
    def compressed(self) -> bool:
        return self._deflate is not None

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        greeting = Untagged("OK", "mailpost IMAP4rev2 ready",
                            "CAPABILITY " + " ".join(handlers.capabilities(self)))
        self.respond(greeting)
        try:
            while not self.closing:
                event = self.proto.next_event()
                if event is ev.NEED_DATA:
                    await self.flush()
                    # NOTIFY hook: RFC 5465 §3.1 notifications while waiting for input.
                    data = await notify.read_input(self, self.current_timeout())
                    self.proto.receive_data(data)
                    continue
                if event is ev.PAUSED:  # pragma: no cover - every event is answered at once
                    raise RuntimeError("IMAP protocol paused without a pending answer")
                await self.handle(event)
            await self.flush()
        finally:
            self.end()

    def current_timeout(self) -> float:
        if self.state is SessionState.NOT_AUTHENTICATED:
            return self.config.imap.preauth_timeout
        return self.config.imap.idle_timeout

    async def handle(self, event: object) -> None:
        notify.note_event(self, event)  # NOTIFY hook: RFC 5465 §5, own changes are not echoed
        if isinstance(event, cmd.Command):
            response = await self.dispatch(event)
            if response is not None:
                self.respond(response)
        elif isinstance(event, (ev.LiteralRequest, ev.AppendMessage)):
            await handlers.literal_decision(self, event)
        elif isinstance(event, (ev.BadCommand, ev.Fatal)):
            await handlers.abort_append(self)  # a half-received APPEND is discarded, never stored
            self.respond(event.response)
        elif isinstance(event, ev.ConnectionClosed):
            await handlers.abort_append(self)
            self.closing = True
        else:
            await handlers.stray_event(self, event)

    async def dispatch(self, command: cmd.Command) -> Response | None:
        handler = handlers.HANDLERS.get(type(command))
        if handler is None:
            return Tagged(command.tag, "BAD", "Command not supported")
        if self.state not in handlers.allowed_states(type(command)):
            return Tagged(command.tag, "BAD", f"Command not allowed in the {self.state.value} "
                                              "state")
        # Work on the current flags: what another device changed a moment ago is what FETCH
        # shows and SEARCH matches. EXPUNGE stays held so the command's sequence numbers keep
        # their meaning (RFC 9051 §7.5.1).
        acts_on_messages = self.state is SessionState.SELECTED and isinstance(command, _NO_EXPUNGE)
        if acts_on_messages and not await self.catch_up(allow_expunge=False):
            return None
        response = await handler(self, command)
        in_mailbox = isinstance(response, Tagged) and self.state is SessionState.SELECTED
        if in_mailbox and not await self.catch_up(allow_expunge=not _forbids_expunge(command)):
            return None
        return response

    async def catch_up(self, allow_expunge: bool) -> bool:
        """Send what other sessions changed, if the bus says anything did. False when the
        session cannot go on (its mailbox was deleted; a BYE has been sent)."""
        if notify.active(self):  # NOTIFY hook: RFC 5465 takes over the bus queue
            return await notify.catch_up(self, allow_expunge)
        selected = self.selected
        if self.subscription is None:
            return True
        if selected is None:
            # Nothing to show without a mailbox: drop the doorbell's queue, or IDLE in the
            # authenticated state would wake up again at once, forever.
            self.subscription.take()
            return True
        changes, overflowed = self.subscription.take()
        touched = overflowed or any(c.mailbox_id == selected.info.id for c in changes)
        if not touched and not (allow_expunge and selected.ghosts):
            return True
        try:
            lines = await selected.sync(self.store, allow_expunge=allow_expunge,
                                        options=self.options)
        except NotFound:
            # Another session deleted the selected mailbox: nothing sensible is left to
            # show, so end the session the way RFC 9051 §7.1.5 allows (Dovecot does the same).
            self.respond(Bye("Selected mailbox was deleted"))
            return False
        for line in lines:
            self.write(line)
        return True

    def saved_set(self, uid: bool) -> IntervalSet:
        """``$`` for ``select_by_uid``/``select_by_msn``: RFC 5182 §2.1 says it follows the
        numbering of the command that uses it; an unset result is empty."""
        uids = self.saved_search or []
        if uid or self.selected is None:
            return IntervalSet.from_numbers(uids)
        numbers = (self.selected.msn_of(u) for u in uids)
        return IntervalSet.from_numbers(n for n in numbers if n is not None)

    # -- login state --------------------------------------------------------------------------

    def logged_in(self, account: Account) -> bool:
        """Enter the authenticated state; False if the account has too many sessions."""
        if not self.services.account_sessions.acquire(account.id):
            return False
        self.account = account
        self.state = SessionState.AUTHENTICATED
        self.proto.authenticated = True
        self.subscription = self.services.bus.subscribe(account.id)
        return True

    def end(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        if self.account is not None:
            self.services.account_sessions.release(self.account.id)
            self.account = None
        self.selected = None


def _forbids_expunge(command: cmd.Command) -> bool:
    return isinstance(command, _NO_EXPUNGE) and not getattr(command, "uid", False)


