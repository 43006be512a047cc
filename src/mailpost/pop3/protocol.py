"""The sans-I/O POP3 server state machine (RFC 1939, RFC 2449, RFC 2595 STLS, RFC 5034 AUTH).

Theory of operation
-------------------
:class:`POP3ServerProtocol` is driven like h11 and like the SMTP core: the session feeds the
bytes it read with :meth:`~POP3ServerProtocol.receive_data` (``b""`` at EOF) and pulls typed
events (:mod:`mailpost.pop3.events`) with :meth:`~POP3ServerProtocol.next_event` until it gets
``NEED_DATA``; it answers each event with :meth:`~POP3ServerProtocol.send`, which returns the
wire bytes. Nothing here does I/O, reads a clock or touches the store.

One command at a time. After an event, ``next_event()`` returns ``PAUSED`` until the reply has
been sent, so pipelined commands (RFC 2449 §6.6) wait in the buffer and are parsed only once
the state their predecessor left is known. The session can therefore batch replies and flush
them whenever it sees ``NEED_DATA``.

The reply, not the command, moves the state (:class:`State`):

* ``AUTHORIZATION`` (RFC 1939 §4). USER + ``+OK`` remembers the name for the PASS that must
  come *immediately* after it (RFC 1939 §7); any other line forgets it. PASS, APOP, AUTH or an
  AUTH response answered ``+OK`` enter ``TRANSACTION``. AUTH answered with a
  :class:`~mailpost.pop3.replies.Continuation` makes the next line a SASL response, where
  ``*`` cancels (RFC 5034 §4). STLS + ``+OK`` stops parsing until :meth:`tls_started`.
* ``TRANSACTION`` (RFC 1939 §5). A *streamed* ``+OK`` to RETR or TOP opens a body: the session
  passes the stored octets through :meth:`send_body` (dot-stuffing, line-ending repair and the
  TOP limit, :mod:`mailpost.pop3.body`) and ends with :meth:`end_body`; no event comes out
  while a body is open. QUIT moves to ``UPDATE`` as soon as it is parsed: the session removes
  the deleted messages (RFC 1939 §6) and answers.
* ``CLOSED`` after QUIT's reply or any reply with ``close=True``.

Credentials before TLS: unless ``allow_insecure_auth`` is set, USER, PASS, APOP and AUTH get
``-ERR [SYS/PERM]`` on a connection without TLS (RFC 2595 §2.3, RFC 8314 §4.1; security
catalogue R4), and :func:`~mailpost.pop3.replies.capabilities` then leaves USER and SASL out.

APOP (RFC 1939 §7) is answered ``-ERR`` unless the machine was made with ``apop=True``. Then
:meth:`~POP3ServerProtocol.greeting` must carry exactly one ``<...@...>`` timestamp, which the
machine keeps (it is the session's, and a client may use it after STLS too: the server compares
against what it sent, so an altered plaintext greeting only makes the login fail), and a
well-formed APOP line becomes an :class:`~mailpost.pop3.events.Apop` event carrying it. APOP is
not announced in CAPA: "clients discover server support of APOP by the presence in the greeting
banner of an initial challenge enclosed in angle brackets" (RFC 2449 §6). It obeys the same
TLS rule as USER/PASS, although it does not send the password: an eavesdropper who sees the
timestamp and the MD5 digest can test password guesses offline, so the digest, like a password,
only travels under TLS unless the operator allows credentials in clear. As with PASS, a pending
USER is simply forgotten.

STLS (RFC 2595 §4, CVE-2011-0411): when the ``+OK`` is sent, every byte buffered after the STLS
line is thrown away and never parsed, and bytes fed before :meth:`tls_started` are dropped too;
:attr:`discarded_plaintext` says it happened. :meth:`tls_started` forgets any pending USER.

Bounds (RFC 2449 §4): command lines may be 255 octets with their CRLF; AUTH, USER, PASS and
APOP lines and SASL responses may be 12290, enough for any credentials. A longer line is
dropped as it arrives and answered ``-ERR`` once its end is seen. Every ``-ERR`` sent counts as an error;
once ``max_errors`` have been sent, the next line of any kind gets a closing ``-ERR``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import ClassVar

from mailpost.pop3 import commands, replies
from mailpost.pop3.body import BodyEncoder
from mailpost.pop3.events import (
    NEED_DATA,
    PAUSED,
    Apop,
    Auth,
    AuthResponse,
    Capa,
    ConnectionClosed,
    Dele,
    Event,
    Invalid,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Sentinel,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
)
from mailpost.pop3.replies import Continuation, Reply
from mailpost.smtp.lines import LineReader, LineStatus

__all__ = [
    "COMMAND_LINE_LIMIT",
    "NEED_DATA",
    "PAUSED",
    "LocalProtocolError",
    "POP3ServerProtocol",
    "State",
]

COMMAND_LINE_LIMIT = 255  # RFC 2449 §4, CRLF included
# "AUTH " is known to LineReader already; an APOP line carries an address of up to 254 octets.
_LONG_ARGUMENT_PREFIXES = (b"USER ", b"PASS ", b"APOP ")
# RFC 1939 §7: the timestamp is an RFC 822 msg-id, "<" local "@" domain ">", no space inside.
# A complete, well-formed RETR line still waiting in the buffer (the read-ahead hint).
_PIPELINED_RETR = re.compile(rb"RETR ([0-9]{1,9})\r\n", re.IGNORECASE)
_TIMESTAMP = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")

NextEvent = Event | Sentinel
_CommandHandler = Callable[["POP3ServerProtocol", bytes, "str | None"], "Event | Reply"]


class LocalProtocolError(Exception):
    """The session used the machine wrongly (a bug on our side, not the peer's)."""


class State(enum.Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"
    CLOSED = "closed"


class POP3ServerProtocol:
    """Bytes in, events out; replies in, bytes out. See the module docstring."""

    def __init__(
        self,
        *,
        tls_active: bool = False,
        tls_available: bool = True,
        allow_insecure_auth: bool = False,
        max_errors: int = 20,
        apop: bool = False,
    ) -> None:
        self._buffer = bytearray()
        self._lines = LineReader(COMMAND_LINE_LIMIT)
        self._state = State.AUTHORIZATION
        self._eof = False
        self._awaiting: Event | None = None
        self._user: str | None = None
        self._sasl = False
        self._tls_pending = False
        self._body: BodyEncoder | None = None
        self._tls_active = tls_active
        self._tls_available = tls_available
        self._allow_insecure_auth = allow_insecure_auth
        self._max_errors = max_errors
        self._error_count = 0
        self._discarded_plaintext = False
        self._apop = apop
        self._greeted = False
        self._timestamp: str | None = None  # the APOP challenge of this session's greeting

    # --- read-only view for the session ---------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def credentials_allowed(self) -> bool:
        """May USER/PASS/AUTH be used now? (Under TLS, or where the operator allows it.)"""
        return self._tls_active or self._allow_insecure_auth

    @property
    def apop_timestamp(self) -> str | None:
        """The timestamp the greeting carried (RFC 1939 §7), if APOP is offered."""
        return self._timestamp

    @property
    def offer_stls(self) -> bool:
        """RFC 2595 §4: STLS is announced only where it is permitted."""
        return (self._tls_available and not self._tls_active
                and self._state is State.AUTHORIZATION)

    @property
    def awaiting_reply(self) -> Event | None:
        return self._awaiting

    @property
    def body_open(self) -> bool:
        return self._body is not None

    @property
    def body_complete(self) -> bool:
        """True once a TOP body has all the lines it needs: stop reading the message."""
        return self._body is not None and self._body.complete

    @property
    def error_count(self) -> int:
        return self._error_count

    @property
    def discarded_plaintext(self) -> bool:
        """True if plaintext after STLS was thrown away (CVE-2011-0411 style injection)."""
        return self._discarded_plaintext

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed (bounded; see the module docstring)."""
        return len(self._buffer)

    def pipelined_retrievals(self, limit: int) -> list[int]:
        """Message numbers of the complete ``RETR n`` lines waiting in the buffer behind the
        command being answered, in order, at most ``limit``; the scan stops at the first line
        of another kind.

        A hint for reading ahead (RFC 2449 §6.6 PIPELINING): the session may fetch those
        messages in one store call. Every line is still parsed and answered in its turn, so a
        hint that turns out wrong costs a wasted read, never a wrong reply.
        """
        if self._state is not State.TRANSACTION or self._lines.discarding:
            return []
        numbers: list[int] = []
        buffer, position = self._buffer, 0
        while len(numbers) < limit:
            match = _PIPELINED_RETR.match(buffer, position)
            if match is None:
                break
            numbers.append(int(match[1]))
            position = match.end()
        return numbers

    def capabilities(self, mechanisms: tuple[str, ...]) -> Reply:
        """The CAPA response for the current state (RFC 2449 §5), offering these SASL
        mechanisms (the session's, so that this module needs nothing from ``auth``)."""
        return replies.capabilities(tls_active=self._tls_active, offer_stls=self.offer_stls,
                                    credentials_allowed=self.credentials_allowed,
                                    mechanisms=mechanisms)

    # --- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; ``b""`` means the peer closed its side."""
        if self._eof:
            raise LocalProtocolError("receive_data() called after EOF")
        if not data:
            self._eof = True
            return
        if self._state is State.CLOSED:
            return
        if self._tls_pending:
            self._discarded_plaintext = True  # RFC 2595 §4: nothing sent before TLS counts
            return
        self._buffer += data
        self._lines.drop_discarded(self._buffer)

    def next_event(self) -> NextEvent:
        """Return the next event, ``NEED_DATA`` or ``PAUSED``."""
        if self._awaiting is not None or self._body is not None or self._tls_pending:
            return PAUSED
        if self._state is State.CLOSED:
            return ConnectionClosed()
        result = self._line_step()
        if result is NEED_DATA and self._eof:
            self._close()
            return ConnectionClosed()
        if not isinstance(result, Sentinel):
            self._awaiting = result
        return result

    # --- output ---------------------------------------------------------------------------

    def greeting(self, reply: Reply) -> bytes:
        """The banner, sent once: a single-line ``+OK`` (RFC 1939 §4) that carries one APOP
        timestamp exactly when APOP is offered (RFC 1939 §7)."""
        if self._greeted or not reply.ok or reply.multiline:
            raise LocalProtocolError("the greeting is one single-line +OK, sent once")
        timestamps = _TIMESTAMP.findall(reply.text)
        wanted = 1 if self._apop else 0
        if len(timestamps) != wanted or reply.text.count("<") != wanted:
            raise LocalProtocolError(
                "the greeting carries one <timestamp> with APOP on, and none without")
        self._greeted = True
        self._timestamp = timestamps[0] if timestamps else None
        return reply.to_bytes()

    def send(self, reply: Reply | Continuation) -> bytes:
        """Record the reply to the pending event, apply its transition, return wire bytes."""
        event = self._awaiting
        if event is None:
            raise LocalProtocolError("no event is waiting for a reply")
        if isinstance(reply, Continuation):
            if not isinstance(event, Auth | AuthResponse):
                raise LocalProtocolError("a continuation only answers AUTH")
            self._awaiting = None
            self._sasl = True
            return reply.to_bytes()
        self._check_reply_fits(event, reply)
        wire = reply.to_bytes()
        self._awaiting = None
        if not reply.ok:
            self._error_count += 1
        self._transition(event, reply)
        if reply.close or isinstance(event, Quit):
            self._close()
        return wire

    def send_body(self, data: bytes, *, wire_ready: bool = False) -> bytes:
        """Encode the next piece of the RETR/TOP message (dot-stuffed, CRLF-only);
        ``wire_ready`` as in :meth:`~mailpost.pop3.body.BodyEncoder.feed`."""
        if self._body is None:
            raise LocalProtocolError("no RETR/TOP body is open")
        return self._body.feed(data, wire_ready=wire_ready)

    def end_body(self) -> bytes:
        """Finish the body: the last CRLF if it lacked one, and the ``.CRLF`` terminator."""
        if self._body is None:
            raise LocalProtocolError("no RETR/TOP body is open")
        wire = self._body.finish()
        self._body = None
        return wire

    def tls_started(self) -> None:
        """The TLS handshake after STLS succeeded; the state stays AUTHORIZATION (RFC 2595 §4)."""
        if not self._tls_pending:
            raise LocalProtocolError("tls_started() without an accepted STLS")
        self._tls_pending = False
        self._tls_active = True
        self._user = None
        self._buffer.clear()
        self._lines = LineReader(COMMAND_LINE_LIMIT)

    # --- reply-driven transitions ---------------------------------------------------------

    @staticmethod
    def _check_reply_fits(event: Event, reply: Reply) -> None:
        streams = isinstance(event, Retr | Top)
        if reply.ok and streams != reply.streamed:
            raise LocalProtocolError("RETR and TOP (and only they) are answered by a streamed +OK")
        if reply.ok and isinstance(event, Invalid):
            raise LocalProtocolError("a rejected line cannot be answered +OK")

    def _transition(self, event: Event, reply: Reply) -> None:
        if not reply.ok:
            return
        if isinstance(event, User):
            self._user = event.name
        elif isinstance(event, Pass | Apop | Auth | AuthResponse):
            self._state = State.TRANSACTION
        elif isinstance(event, Stls):
            # CVE-2011-0411: whatever followed STLS in the same read was sent in plaintext.
            self._discarded_plaintext = self._discarded_plaintext or bool(self._buffer)
            self._buffer.clear()
            self._lines = LineReader(COMMAND_LINE_LIMIT)
            self._tls_pending = True
        elif isinstance(event, Retr | Top):
            self._body = BodyEncoder(event.lines if isinstance(event, Top) else None)

    def _close(self) -> None:
        self._state = State.CLOSED
        self._buffer.clear()
        self._body = None
        self._sasl = False

    # --- command lines --------------------------------------------------------------------

    def _line_step(self) -> NextEvent:
        sasl = self._sasl
        status, line, auth_limit = self._lines.read(
            self._buffer, auth=sasl or self._buffer[:5].upper() in _LONG_ARGUMENT_PREFIXES)
        if status is LineStatus.NEED_DATA:
            return NEED_DATA
        # A reply to this line decides what the next one is: a Continuation re-enters SASL,
        # a +OK to USER makes the next line's PASS acceptable.
        self._sasl = False
        user, self._user = self._user, None
        if self._error_count >= self._max_errors:
            return Invalid(replies.TOO_MANY_ERRORS)
        if status is LineStatus.TOO_LONG:
            return Invalid(replies.AUTH_LINE_TOO_LONG if auth_limit else replies.LINE_TOO_LONG)
        if status is LineStatus.BARE_LF:
            return Invalid(replies.BARE_LF)
        if sasl:
            return commands.parse_sasl_response(line)
        return self._command(line, user)

    def _command(self, line: bytes, user: str | None) -> Event:
        command = commands.split_command(line)
        if isinstance(command, Reply):
            return Invalid(command)
        allowed = (commands.AUTHORIZATION_KEYWORDS if self._state is State.AUTHORIZATION
                   else commands.TRANSACTION_KEYWORDS)
        if command.keyword not in allowed:
            return Invalid(replies.WRONG_STATE)  # RFC 1939 §3
        result = self._COMMANDS[command.keyword](self, command.argument, user)
        return Invalid(result) if isinstance(result, Reply) else result

    def _cmd_user(self, argument: bytes, user: str | None) -> Event | Reply:
        if not self.credentials_allowed:
            return replies.ENCRYPTION_REQUIRED
        return commands.parse_user(argument)

    def _cmd_pass(self, argument: bytes, user: str | None) -> Event | Reply:
        if not self.credentials_allowed:
            return replies.ENCRYPTION_REQUIRED
        if user is None:
            return replies.USER_REQUIRED
        return commands.parse_pass(user, argument)

    def _cmd_auth(self, argument: bytes, user: str | None) -> Event | Reply:
        if not self.credentials_allowed:
            return replies.ENCRYPTION_REQUIRED
        return commands.parse_auth(argument)

    def _cmd_apop(self, argument: bytes, user: str | None) -> Event | Reply:
        if self._timestamp is None:  # APOP is off: the greeting carried no challenge
            return replies.APOP_UNSUPPORTED
        if not self.credentials_allowed:
            return replies.ENCRYPTION_REQUIRED
        return commands.parse_apop(argument, self._timestamp)

    def _cmd_capa(self, argument: bytes, user: str | None) -> Event | Reply:
        return commands.parse_no_arguments(argument, Capa())

    def _cmd_stls(self, argument: bytes, user: str | None) -> Event | Reply:
        if self._tls_active:
            return replies.TLS_ALREADY_ACTIVE
        if not self._tls_available:
            return replies.TLS_NOT_AVAILABLE
        return commands.parse_no_arguments(argument, Stls())

    def _cmd_quit(self, argument: bytes, user: str | None) -> Event | Reply:
        update = self._state is State.TRANSACTION
        result = commands.parse_no_arguments(argument, Quit(update))
        if update and isinstance(result, Quit):
            self._state = State.UPDATE  # RFC 1939 §6
        return result

    def _cmd_stat(self, argument: bytes, user: str | None) -> Event | Reply:
        return commands.parse_no_arguments(argument, Stat())

    def _cmd_noop(self, argument: bytes, user: str | None) -> Event | Reply:
        return commands.parse_no_arguments(argument, Noop())

    def _cmd_rset(self, argument: bytes, user: str | None) -> Event | Reply:
        return commands.parse_no_arguments(argument, Rset())

    def _cmd_list(self, argument: bytes, user: str | None) -> Event | Reply:
        msg = commands.parse_optional_message(argument)
        return msg if isinstance(msg, Reply) else List(msg)

    def _cmd_uidl(self, argument: bytes, user: str | None) -> Event | Reply:
        msg = commands.parse_optional_message(argument)
        return msg if isinstance(msg, Reply) else Uidl(msg)

    def _cmd_retr(self, argument: bytes, user: str | None) -> Event | Reply:
        msg = commands.parse_message(argument)
        return msg if isinstance(msg, Reply) else Retr(msg)

    def _cmd_dele(self, argument: bytes, user: str | None) -> Event | Reply:
        msg = commands.parse_message(argument)
        return msg if isinstance(msg, Reply) else Dele(msg)

    def _cmd_top(self, argument: bytes, user: str | None) -> Event | Reply:
        parsed = commands.parse_top(argument)
        return parsed if isinstance(parsed, Reply) else Top(*parsed)

    _COMMANDS: ClassVar[dict[str, _CommandHandler]] = {
        "USER": _cmd_user,
        "PASS": _cmd_pass,
        "AUTH": _cmd_auth,
        "APOP": _cmd_apop,
        "CAPA": _cmd_capa,
        "STLS": _cmd_stls,
        "QUIT": _cmd_quit,
        "STAT": _cmd_stat,
        "NOOP": _cmd_noop,
        "RSET": _cmd_rset,
        "LIST": _cmd_list,
        "UIDL": _cmd_uidl,
        "RETR": _cmd_retr,
        "DELE": _cmd_dele,
        "TOP": _cmd_top,
    }
