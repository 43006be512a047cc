"""The sans-I/O SMTP server state machine (RFC 5321 with its common extensions).

Theory of operation
-------------------
:class:`SMTPServerProtocol` is driven like h11: the session feeds the bytes it
read with :meth:`~SMTPServerProtocol.receive_data` (``b""`` at EOF) and pulls
typed events with :meth:`~SMTPServerProtocol.next_event` until it gets
``NEED_DATA``; it answers events with :meth:`~SMTPServerProtocol.send`, which
returns the wire bytes. Nothing here does I/O, reads a clock or imports the
store: the module is a pure function of the bytes and replies it is given.

One command at a time. After an event that needs a reply (see
:mod:`mailpost.smtp.events` for the table), ``next_event()`` returns
``PAUSED`` until ``send()`` is called. The reply, not the command, moves the
state: MAIL + 2xx opens the transaction, RCPT + 2xx counts a recipient, DATA
+ 354 starts the data phase, STARTTLS + 220 ends plaintext, AUTH + 334 makes
the next line a SASL response, AUTH + 235 marks the session authenticated,
QUIT + 221 (or any reply with ``close=True``) closes. This is also what makes
PIPELINING (RFC 2920) safe: pipelined commands wait in the buffer and are
parsed only after the previous reply has been recorded, so the session can
batch replies and flush them whenever it sees ``NEED_DATA``. ``send()`` of a
reply that does not fit the pending event raises :class:`LocalProtocolError`:
that is a bug in the session, never the peer's fault.

The machine answers by itself, as :class:`~mailpost.smtp.events.Invalid`
events, every error that needs no policy: framing (over-long lines, bare LF
line endings), syntax, bad sequence, STARTTLS with TLS active, AUTH in a
transaction or twice, and the message-level rejections at the end of data
(smuggling, size). It counts every 4xx/5xx reply sent; once ``max_errors``
have been sent, the next line of any kind gets ``421 4.7.0`` with
``close=True`` (Postfix ``smtpd_hard_error_limit``). A message accepted with
250 resets the count, because the limit is about clients that make errors
"without delivering mail".

States (:class:`State`): ``GREETING`` until :meth:`greeting` is sent;
``COMMAND``; ``SASL`` (one AUTH response line); ``DATA`` and ``BDAT``
(message content, :mod:`mailpost.smtp.content`); ``TLS_PENDING`` between the
220 to STARTTLS and :meth:`tls_started`; ``REFUSED`` after a 554 greeting,
where only QUIT is accepted (RFC 5321 §3.1); ``CLOSED``.

STARTTLS (RFC 3207 §4.2, CVE-2011-0411): when the 220 is sent, every byte
buffered after the STARTTLS line is thrown away and never parsed;
:attr:`discarded_plaintext` tells the session it happened. Plaintext fed
before :meth:`tls_started` is dropped too. :meth:`tls_started` forgets the
EHLO, the transaction and any authentication.

Memory is bounded by the session's read size plus ``max_line_length`` (or the
12288-octet AUTH line limit): over-long lines are dropped as they arrive, and
message content is decoded and handed out as it arrives, never held whole.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from mailpost.smtp import commands, replies
from mailpost.smtp.content import BdatReader, ChunkSkipper, ContentReader, DataReader, Effect
from mailpost.smtp.events import (
    NEED_DATA,
    PAUSED,
    POSITIVE_CODES,
    Auth,
    AuthAbort,
    AuthResponse,
    BdatChunkEnd,
    ConnectionClosed,
    Data,
    DataChunk,
    EndOfData,
    Event,
    Expn,
    Hello,
    Help,
    Invalid,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Reset,
    Sentinel,
    StartTLS,
    Vrfy,
    needs_reply,
)
from mailpost.smtp.lines import LineReader, LineStatus
from mailpost.smtp.replies import Reply

__all__ = ["NEED_DATA", "PAUSED", "LocalProtocolError", "SMTPServerProtocol", "State"]


class LocalProtocolError(Exception):
    """The session used the machine wrongly (a bug on our side, not the peer's)."""


class State(enum.Enum):
    GREETING = "greeting"
    REFUSED = "refused"
    COMMAND = "command"
    SASL = "sasl"
    DATA = "data"
    BDAT = "bdat"
    TLS_PENDING = "tls-pending"
    CLOSED = "closed"


@dataclass(slots=True)
class _Transaction:
    mail: MailFrom
    recipients: int = 0
    bdat: BdatReader | None = None  # set by the first accepted BDAT (RFC 3030: no DATA after)
    failed: bool = False  # a BDAT chunk was refused: only RSET helps (RFC 3030 §2)


# RFC 2920 §3.1 (plus STARTTLS, RFC 3207 §4.2, and AUTH, RFC 4954 §4): these must end
# a pipelined group; bytes already waiting behind them mean the client did not wait.
_ENDS_GROUP = (Hello, Data, Vrfy, Expn, Quit, Noop, StartTLS, Auth)

NextEvent = Event | Sentinel
_ReplyHandler = Callable[["SMTPServerProtocol", Event, Reply], None]
_CommandHandler = Callable[["SMTPServerProtocol", str], "NextEvent | Reply"]


class SMTPServerProtocol:
    """Bytes in, events out; replies in, bytes out. See the module docstring."""

    def __init__(
        self,
        *,
        max_line_length: int = 4096,
        max_message_size: int = 26214400,
        max_errors: int = 20,
        tls_active: bool = False,
    ) -> None:
        self._max_message_size = max_message_size
        self._max_errors = max_errors
        self._max_line_length = max_line_length
        self._buffer = bytearray()
        self._lines = LineReader(max_line_length)
        self._state = State.GREETING
        self._eof = False
        self._ready: deque[Event] = deque()
        self._awaiting: Event | None = None
        self._hello: Hello | None = None
        self._transaction: _Transaction | None = None
        self._content: ContentReader | None = None
        self._tls_active = tls_active
        self._authenticated = False
        self._error_count = 0
        self._discarded_plaintext = False
        self._improper_pipelining = False
        self._spoke_before_greeting = False

    # --- read-only view for the session ---------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def authenticated(self) -> bool:
        """Set when a 235 reply is sent for Auth/AuthResponse; cleared by tls_started()."""
        return self._authenticated

    @property
    def hello(self) -> Hello | None:
        """The accepted HELO/EHLO, or None before one (and after STARTTLS)."""
        return self._hello

    @property
    def in_transaction(self) -> bool:
        """True from an accepted MAIL until the end of data, RSET, EHLO or STARTTLS."""
        return self._transaction is not None

    @property
    def mail_from(self) -> MailFrom | None:
        return self._transaction.mail if self._transaction else None

    @property
    def recipient_count(self) -> int:
        """Accepted RCPTs in the current transaction."""
        return self._transaction.recipients if self._transaction else 0

    @property
    def awaiting_reply(self) -> Event | None:
        """The event that the next send() answers, if any."""
        return self._awaiting

    @property
    def error_count(self) -> int:
        return self._error_count

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed (bounded; see the module docstring)."""
        return len(self._buffer)

    @property
    def discarded_plaintext(self) -> bool:
        """True if plaintext after STARTTLS was thrown away (CVE-2011-0411 style injection)."""
        return self._discarded_plaintext

    @property
    def improper_pipelining(self) -> bool:
        """True once the client sent ahead where RFC 2920 says it must wait (catalogue S4)."""
        return self._improper_pipelining

    @property
    def spoke_before_greeting(self) -> bool:
        """True if the client sent bytes before the greeting (a "pregreet" talker)."""
        return self._spoke_before_greeting

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
        if self._state is State.TLS_PENDING:
            # RFC 3207 §4.2: nothing sent in plaintext after STARTTLS may be acted upon.
            self._discarded_plaintext = True
            return
        if self._state is State.GREETING:
            self._spoke_before_greeting = True
        self._buffer += data
        self._lines.drop_discarded(self._buffer)

    def next_event(self) -> NextEvent:
        """Return the next event, ``NEED_DATA`` or ``PAUSED``."""
        if self._ready:
            return self._emit(self._ready.popleft())
        if self._awaiting is not None:
            return PAUSED
        if self._state is State.CLOSED:
            return ConnectionClosed()
        result = self._advance()
        if result is NEED_DATA and self._eof:
            self._state = State.CLOSED
            return ConnectionClosed()
        if isinstance(result, Sentinel):
            return result
        return self._emit(result)

    def _emit(self, event: Event) -> Event:
        if needs_reply(event):
            self._awaiting = event
        return event

    def _advance(self) -> NextEvent:
        if self._state in (State.GREETING, State.TLS_PENDING):
            return NEED_DATA if self._eof else PAUSED
        if self._state in (State.DATA, State.BDAT):
            return self._content_step()
        return self._line_step()

    # --- output ---------------------------------------------------------------------------

    def greeting(self, reply: Reply) -> bytes:
        """Send the banner: 220, or a refusal (421 with close, or 554, RFC 5321 §3.1)."""
        if self._state is not State.GREETING:
            raise LocalProtocolError("the greeting has already been sent")
        if reply.code == 220:
            next_state = State.COMMAND
        elif reply.close:
            next_state = State.CLOSED
        elif reply.code == 554:
            next_state = State.REFUSED
        else:
            raise LocalProtocolError(f"{reply.code} is not a greeting")
        wire = reply.to_bytes()
        self._state = next_state
        return wire

    def send(self, reply: Reply) -> bytes:
        """Record the reply to the pending event, apply its transition, return wire bytes."""
        event = self._awaiting
        if event is None:
            raise LocalProtocolError("no event is waiting for a reply")
        if reply.positive and reply.code not in POSITIVE_CODES[type(event)]:
            raise LocalProtocolError(f"{reply.code} does not answer {type(event).__name__}")
        wire = reply.to_bytes()
        self._awaiting = None
        if not reply.positive:
            self._error_count += 1
        self._REPLY_HANDLERS[type(event)](self, event, reply)
        if reply.close:
            self._close()
        return wire

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded: forget everything (RFC 3207 §4.2)."""
        if self._state is not State.TLS_PENDING:
            raise LocalProtocolError("tls_started() without an accepted STARTTLS")
        self._tls_active = True
        self._hello = None
        self._authenticated = False
        self._reset_transaction()
        self._state = State.COMMAND

    # --- reply-driven transitions ---------------------------------------------------------

    def _on_hello(self, event: Event, reply: Reply) -> None:
        if reply.positive:
            assert isinstance(event, Hello)
            self._hello = event

    def _on_starttls(self, event: Event, reply: Reply) -> None:
        if reply.positive:
            self._discarded_plaintext = self._discarded_plaintext or bool(self._buffer)
            self._buffer.clear()
            self._lines = LineReader(self._max_line_length)
            self._state = State.TLS_PENDING

    def _on_auth(self, event: Event, reply: Reply) -> None:
        if reply.code == 334:
            self._state = State.SASL
        elif reply.code == 235:
            self._authenticated = True

    def _on_mail(self, event: Event, reply: Reply) -> None:
        if reply.positive:
            assert isinstance(event, MailFrom)
            self._transaction = _Transaction(event)

    def _on_rcpt(self, event: Event, reply: Reply) -> None:
        if reply.positive and self._transaction is not None:
            self._transaction.recipients += 1

    def _on_data(self, event: Event, reply: Reply) -> None:
        if reply.positive:
            self._state = State.DATA
            self._content = DataReader(self._max_message_size)

    def _on_chunk_end(self, event: Event, reply: Reply) -> None:
        if not reply.positive and self._transaction is not None:
            self._transaction.failed = True

    def _on_end_of_data(self, event: Event, reply: Reply) -> None:
        self._reset_transaction()
        if reply.positive:
            self._error_count = 0

    def _on_quit(self, event: Event, reply: Reply) -> None:
        if reply.positive:
            self._close()

    def _no_transition(self, event: Event, reply: Reply) -> None:
        return None

    _REPLY_HANDLERS: ClassVar[dict[type[Event], _ReplyHandler]] = {
        Hello: _on_hello,
        StartTLS: _on_starttls,
        Auth: _on_auth,
        AuthResponse: _on_auth,
        AuthAbort: _no_transition,
        MailFrom: _on_mail,
        RcptTo: _on_rcpt,
        Data: _on_data,
        BdatChunkEnd: _on_chunk_end,
        EndOfData: _on_end_of_data,
        Reset: _no_transition,
        Noop: _no_transition,
        Quit: _on_quit,
        Vrfy: _no_transition,
        Expn: _no_transition,
        Help: _no_transition,
        Invalid: _no_transition,
    }

    def _close(self) -> None:
        self._state = State.CLOSED
        self._buffer.clear()
        self._ready.clear()

    def _reset_transaction(self) -> None:
        self._transaction = None
        self._content = None

    # --- command lines --------------------------------------------------------------------

    def _line_step(self) -> NextEvent:
        sasl = self._state is State.SASL
        status, line, auth_limit = self._lines.read(self._buffer, auth=sasl)
        if status is LineStatus.NEED_DATA:
            return NEED_DATA
        if sasl:
            self._state = State.COMMAND  # a 334 reply to this line re-enters SASL
        if self._error_count >= self._max_errors:
            return Invalid(replies.TOO_MANY_ERRORS)
        if status is LineStatus.TOO_LONG:
            return Invalid(replies.AUTH_LINE_TOO_LONG if auth_limit else replies.LINE_TOO_LONG)
        if status is LineStatus.BARE_LF:
            return Invalid(replies.BARE_LF)
        if sasl:
            return self._sasl_response(line)
        event = self._command(line)
        if not isinstance(event, Sentinel):
            self._note_pipelining(event)
        return event

    def _note_pipelining(self, event: Event) -> None:
        if not self._buffer or isinstance(event, Invalid):
            return
        extended = self._hello is not None and self._hello.extended
        if isinstance(event, _ENDS_GROUP) or not extended:
            self._improper_pipelining = True

    def _sasl_response(self, line: bytes) -> Event:
        """RFC 4954 §4: "*" cancels; anything else must be strict base64."""
        if line == b"*":
            return AuthAbort()
        decoded = commands.decode_base64(line.decode("latin-1"))
        if decoded is None:
            return Invalid(replies.AUTH_INVALID_BASE64)
        return AuthResponse(decoded)

    def _command(self, line: bytes) -> NextEvent:
        command = commands.split_command(line)
        if isinstance(command, Reply):
            return Invalid(replies.REFUSED_SESSION if self._refused() else command)
        if self._refused() and command.verb != "QUIT":
            return Invalid(replies.REFUSED_SESSION)
        result = self._COMMANDS[command.verb](self, command.argument)
        return Invalid(result) if isinstance(result, Reply) else result

    def _refused(self) -> bool:
        return self._state is State.REFUSED

    def _cmd_helo(self, argument: str) -> Event | Reply:
        return self._hello_command(argument, extended=False)

    def _cmd_ehlo(self, argument: str) -> Event | Reply:
        return self._hello_command(argument, extended=True)

    def _hello_command(self, argument: str, *, extended: bool) -> Event | Reply:
        result = commands.parse_hello(argument, extended=extended)
        if isinstance(result, Hello):
            self._reset_transaction()  # RFC 5321 §4.1.4: a later EHLO acts as RSET
        return result

    def _cmd_mail(self, argument: str) -> Event | Reply:
        if self._hello is None:
            return replies.NEED_HELLO
        if self._transaction is not None:
            return replies.NESTED_MAIL
        return commands.parse_mail(argument, max_size=self._max_message_size)

    def _cmd_rcpt(self, argument: str) -> Event | Reply:
        transaction = self._transaction
        if transaction is None:
            return replies.NEED_MAIL
        if transaction.failed or transaction.bdat is not None:
            return replies.BAD_SEQUENCE
        return commands.parse_rcpt(argument, utf8=transaction.mail.params.smtputf8)

    def _cmd_data(self, argument: str) -> Event | Reply:
        transaction = self._transaction
        if transaction is None:
            return replies.NEED_MAIL
        if transaction.failed:
            return replies.RSET_REQUIRED
        if transaction.bdat is not None:
            return replies.DATA_AFTER_BDAT
        if transaction.recipients == 0:
            return replies.NEED_RCPT
        return Data() if commands.has_no_argument(argument) else replies.INVALID_ARGUMENTS

    def _cmd_rset(self, argument: str) -> Event | Reply:
        if not commands.has_no_argument(argument):
            return replies.INVALID_ARGUMENTS
        self._reset_transaction()
        return Reset()

    def _cmd_noop(self, argument: str) -> Event | Reply:
        return Noop()

    def _cmd_quit(self, argument: str) -> Event | Reply:
        return Quit() if commands.has_no_argument(argument) else replies.INVALID_ARGUMENTS

    def _cmd_vrfy(self, argument: str) -> Event | Reply:
        text = argument.strip(" ")
        return Vrfy(text) if text else replies.INVALID_ARGUMENTS

    def _cmd_expn(self, argument: str) -> Event | Reply:
        text = argument.strip(" ")
        return Expn(text) if text else replies.INVALID_ARGUMENTS

    def _cmd_help(self, argument: str) -> Event | Reply:
        return Help(argument.strip(" "))

    def _cmd_starttls(self, argument: str) -> Event | Reply:
        if self._tls_active:
            return replies.TLS_ALREADY_ACTIVE
        if self._transaction is not None:
            return replies.TLS_IN_TRANSACTION
        return StartTLS() if commands.has_no_argument(argument) else replies.INVALID_ARGUMENTS

    def _cmd_auth(self, argument: str) -> Event | Reply:
        if self._hello is None:
            return replies.NEED_HELLO
        if self._authenticated:
            return replies.AUTH_ALREADY  # RFC 4954 §4: no second AUTH after success
        if self._transaction is not None:
            return replies.AUTH_IN_TRANSACTION
        return commands.parse_auth(argument)

    def _cmd_bdat(self, argument: str) -> NextEvent | Reply:
        parsed = commands.parse_bdat(argument)
        if isinstance(parsed, Reply):
            return parsed  # the chunk size is unknown, so its octets cannot be skipped
        size, last = parsed
        refusal = self._bdat_refusal()
        if refusal is not None:
            self._content = ChunkSkipper(size, refusal)
        else:
            assert self._transaction is not None
            if self._transaction.bdat is None:
                self._transaction.bdat = BdatReader(self._max_message_size)
            self._transaction.bdat.begin(size, last)
            self._content = self._transaction.bdat
        self._state = State.BDAT
        return self._content_step()

    def _bdat_refusal(self) -> Reply | None:
        """Why this BDAT cannot be accepted; its octets are still read first (RFC 3030 §2)."""
        transaction = self._transaction
        if transaction is None:
            return replies.NEED_MAIL
        if transaction.failed:
            return replies.RSET_REQUIRED
        if transaction.recipients == 0:
            return replies.NEED_RCPT
        return None

    _COMMANDS: ClassVar[dict[str, _CommandHandler]] = {
        "HELO": _cmd_helo,
        "EHLO": _cmd_ehlo,
        "MAIL": _cmd_mail,
        "RCPT": _cmd_rcpt,
        "DATA": _cmd_data,
        "BDAT": _cmd_bdat,
        "RSET": _cmd_rset,
        "NOOP": _cmd_noop,
        "QUIT": _cmd_quit,
        "VRFY": _cmd_vrfy,
        "EXPN": _cmd_expn,
        "HELP": _cmd_help,
        "STARTTLS": _cmd_starttls,
        "AUTH": _cmd_auth,
    }

    # --- message content ------------------------------------------------------------------

    def _content_step(self) -> NextEvent:
        """Hand out decoded content, then (right after it) the event that ends it."""
        assert self._content is not None
        step = self._content.read(self._buffer)
        end = step.end
        if end is not None:
            self._state = State.COMMAND
            self._content = None
            self._apply_effect(step.effect)
        if step.data:
            if end is not None:
                self._ready.append(end)
            return DataChunk(step.data)
        return end if end is not None else NEED_DATA

    def _apply_effect(self, effect: Effect) -> None:
        """Applied when the end is decided, so the session sees it while handling the event."""
        if effect is Effect.END_TRANSACTION:
            self._reset_transaction()
        elif effect is Effect.FAIL_TRANSACTION and self._transaction is not None:
            self._transaction.failed = True
