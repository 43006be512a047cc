"""The sans-I/O IMAP server state machine (RFC 9051, RFC 3501 and the extensions they list).

Theory of operation
-------------------
:class:`IMAPServerProtocol` is driven like h11 and like
:class:`~mailpost.smtp.protocol.SMTPServerProtocol`: the session feeds what it read with
:meth:`~IMAPServerProtocol.receive_data` (``b""`` at EOF), pulls events with
:meth:`~IMAPServerProtocol.next_event` until ``NEED_DATA``, and answers with
:meth:`~IMAPServerProtocol.send` (or, for literals, :meth:`~IMAPServerProtocol.accept_literal`
and :meth:`~IMAPServerProtocol.reject_literal`), each returning the bytes to write. Nothing
here does I/O, reads a clock or touches the store.

**One event at a time.** After an event that needs an answer (see :mod:`mailpost.imap.events`
for the table), ``next_event()`` returns ``PAUSED`` until it is answered. Pipelined commands
wait in the buffer and are parsed only then, so they see the state the previous command left
(RFC 9051 §5.5). The session should read more from the socket only when it gets
``NEED_DATA``: the buffer then stays bounded by one read plus one line.

**Answers move the state**, never the commands alone:

* a ``Continuation`` answering ``Idle`` makes the next line a ``DONE`` (state ``IDLE``);
  answering ``Authenticate``/``AuthenticateResponse`` makes it a SASL response line (state
  ``AUTHENTICATE``, RFC 9051 §6.2.2);
* a tagged OK to ``Login``/``Authenticate`` sets :attr:`authenticated` (which switches to
  the post-authentication limits); a tagged OK to ``StartTLS`` ends plaintext: buffered
  octets are set aside, never parsed (CVE-2011-0411), and the machine waits for
  :meth:`tls_started`; a tagged OK to ``Compress`` sets the buffered octets aside as the
  first compressed input (RFC 4978 §3), to be collected with :meth:`take_unconsumed`;
  a tagged OK to ``Logout``, a ``Bye`` at any other time, or the answer to ``Fatal`` closes;
* ``Enabled(...)`` records what ENABLE turned on; ``IMAP4rev2`` or ``UTF8=ACCEPT`` switch
  the parser to UTF-8 mailbox names and the text writer to UTF-8.

**Literals** (RFC 9051 §4.3, §7.6; RFC 7888). A line ending in ``{n}`` is held while the
session decides: :class:`~mailpost.imap.events.LiteralRequest` (or ``AppendMessage`` for an
APPEND message). ``accept_literal()`` returns ``+ Ready``; ``reject_literal(response)``
returns the tagged NO/BAD (or BYE), and since the client sends nothing more of that command
the machine simply forgets it. A non-synchronising ``{n+}`` needs no decision unless it is an
APPEND message; if it breaks a limit the machine answers ``BAD [TOOBIG]`` by itself and skips
the ``n`` octets and the rest of the command without holding them, or gives up with
``Fatal`` (``* BYE [TOOBIG]``) when ``n`` is beyond ``max_command_size`` (RFC 7888 §4).
Limits the machine enforces by itself: line length, literal size, literals per command,
total buffered octets per command, nesting depth, and, with ``literal_plus=False``
(LITERAL-), non-synchronising literals over 4096 octets (RFC 7888 §5). All are lower before
authentication (security catalogue I1-I5).

An over-long line is dropped as it arrives and answered ``BAD [LIMIT]`` once its end comes;
the session can keep reading, memory stays bounded (catalogue I5).

**APPEND** is parsed one message at a time and its message octets stream out as
``AppendData`` (:mod:`mailpost.imap.append`), so a 25 MB message is never held here. Lines,
literals, APPEND streaming and skipping live in :mod:`mailpost.imap.commandreader`; this
module keeps the connection-level state and the answer-driven transitions.
"""

from __future__ import annotations

import enum

from mailpost.imap import commands as cmd
from mailpost.imap.commandreader import CommandReader, Limits
from mailpost.imap.errors import LocalProtocolError
from mailpost.imap.events import (
    NEED_DATA,
    PAUSED,
    AppendMessage,
    AuthenticateCancel,
    AuthenticateResponse,
    BadCommand,
    ConnectionClosed,
    Done,
    Event,
    LiteralRequest,
    Sentinel,
    needs_reply,
)
from mailpost.imap.parser import ParseContext, decode_sasl_base64
from mailpost.imap.reader import LineReader, LineStatus
from mailpost.imap.responses import Bye, Continuation, Enabled, Response, Tagged, Untagged

AUTH_LINE_LIMIT = 12288  # RFC 4954 §4's bound for SASL lines, used for AUTHENTICATE too
UTF8_CAPABILITIES = frozenset({"IMAP4REV2", "UTF8=ACCEPT"})

NextEvent = Event | Sentinel


class State(enum.Enum):
    COMMAND = "command"
    AUTHENTICATE = "authenticate"
    IDLE = "idle"
    TLS_PENDING = "tls-pending"
    COMPRESS_PENDING = "compress-pending"
    CLOSED = "closed"


class IMAPServerProtocol:
    """Bytes in, events out; responses in, bytes out. See the module docstring.

    ``max_line_length``, ``max_literal_size`` (one buffered, non-APPEND literal),
    ``max_command_size`` (all buffered octets of one command) and ``max_nesting`` apply after
    authentication; the ``max_preauth_*`` values before it, with a nesting depth of 1.
    ``literal_plus=False`` selects LITERAL- semantics (RFC 7888 §5).
    """

    def __init__(
        self,
        *,
        max_line_length: int = 65536,
        max_literal_size: int = 65536,
        max_command_size: int = 1_048_576,
        max_preauth_line: int = 8192,
        max_preauth_literal: int = 8192,
        max_preauth_command: int = 16384,
        max_nesting: int = 100,
        literal_plus: bool = True,
        authenticated: bool = False,
    ) -> None:
        if min(max_line_length, max_preauth_line) < 1024 or max_nesting < 1:
            raise ValueError("line limits below 1024 octets or nesting below 1 are unusable")
        self._limits = Limits(
            max_line_length, max_literal_size, max_command_size, max_nesting, authenticated=True
        )
        self._preauth_limits = Limits(
            max_preauth_line, max_preauth_literal, max_preauth_command, 1, authenticated=False
        )
        self._authenticated = authenticated
        self._enabled: frozenset[str] = frozenset()
        self._buffer = bytearray()
        self._lines = LineReader()
        self._reader = CommandReader(self._lines, literal_plus=literal_plus)
        self._state = State.COMMAND
        self._eof = False
        self._awaiting: Event | None = None
        self._decision: LiteralRequest | AppendMessage | None = None
        self._open: cmd.Command | None = None  # IDLE/AUTHENTICATE between continuations
        self._unconsumed: bytes | None = None
        self._discarded_plaintext = False

    # --- read-only view for the session ---------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def authenticated(self) -> bool:
        """True after a tagged OK to LOGIN/AUTHENTICATE or a PREAUTH greeting; settable."""
        return self._authenticated

    @authenticated.setter
    def authenticated(self, value: bool) -> None:
        self._authenticated = value

    @property
    def enabled(self) -> frozenset[str]:
        """Capabilities sent in ``Enabled`` responses, upper-cased (RFC 5161)."""
        return self._enabled

    @property
    def utf8_enabled(self) -> bool:
        """UTF-8 in mailbox names and quoted strings (IMAP4rev2 or UTF8=ACCEPT enabled)."""
        return bool(self._enabled & UTF8_CAPABILITIES)

    @property
    def awaiting_reply(self) -> Event | None:
        """The event the next answer is for, if any."""
        return self._awaiting

    @property
    def buffered(self) -> int:
        """Octets received and not yet consumed (bounded; see the module docstring)."""
        return len(self._buffer) + self._reader.holding

    @property
    def discarded_plaintext(self) -> bool:
        """True if plaintext sent after STARTTLS was thrown away (CVE-2011-0411 style)."""
        return self._discarded_plaintext

    @property
    def _current_limits(self) -> Limits:
        return self._limits if self._authenticated else self._preauth_limits

    def _context(self) -> ParseContext:
        return ParseContext(
            utf8_mode=self.utf8_enabled,
            utf8_accept="UTF8=ACCEPT" in self._enabled,
            max_depth=self._current_limits.nesting,
        )

    # --- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed octets read from the peer; ``b""`` means the peer closed its side."""
        if self._eof:
            raise LocalProtocolError("receive_data() called after EOF")
        if not data:
            self._eof = True
            return
        if self._state is State.COMPRESS_PENDING:
            raise LocalProtocolError("call take_unconsumed() after COMPRESS before more data")
        if self._state is State.CLOSED:
            return
        if self._state is State.TLS_PENDING:
            self._discarded_plaintext = True  # RFC 9051 §6.2.1 option 2: thrown away
            return
        self._buffer += data
        self._lines.drop_discarded(self._buffer)

    def next_event(self) -> NextEvent:
        """Return the next event, ``NEED_DATA`` or ``PAUSED``."""
        if self._awaiting is not None:
            return PAUSED
        if self._state is State.CLOSED:
            return ConnectionClosed()
        if self._state in (State.TLS_PENDING, State.COMPRESS_PENDING):
            return self._emit(ConnectionClosed()) if self._eof else PAUSED
        result = self._advance()
        if result is NEED_DATA and self._eof:
            result = ConnectionClosed()
        return self._emit(result)

    def _emit(self, event: NextEvent) -> NextEvent:
        if isinstance(event, Sentinel):
            return event
        if isinstance(event, ConnectionClosed):
            self._close()
        elif needs_reply(event):
            self._awaiting = event
        if isinstance(event, (LiteralRequest, AppendMessage)):
            self._decision = event
        return event

    def _advance(self) -> NextEvent:
        if self._state is State.AUTHENTICATE:
            return self._authenticate_line()
        if self._state is State.IDLE:
            return self._idle_line()
        return self._reader.step(self._buffer, self._current_limits, self._context())

    # --- output ---------------------------------------------------------------------------

    def send(self, response: Response) -> bytes:
        """Record ``response``, apply its transition (module docstring) and return its bytes."""
        if self._state is State.CLOSED:
            raise LocalProtocolError("the connection is closed")
        if self._decision is not None and not isinstance(response, (Untagged, Enabled, Bye)):
            raise LocalProtocolError("answer the literal with accept_literal()/reject_literal()")
        wire = response.to_bytes(utf8=self.utf8_enabled)
        if isinstance(response, Enabled):
            self._enabled |= {name.upper() for name in response.capabilities}
        elif isinstance(response, Continuation):
            self._on_continuation()
        elif isinstance(response, Tagged):
            self._on_tagged(response)
        elif isinstance(response, Bye):
            self._on_bye()
        else:
            self._on_untagged(response)
        return wire

    def accept_literal(self, text: str = "Ready") -> bytes:
        """Accept the pending ``LiteralRequest``/``AppendMessage``; returns ``+ text`` for a
        synchronising literal and ``b""`` for a non-synchronising one."""
        decision = self._take_decision()
        self._reader.accept(decision)
        synchronizing = not isinstance(decision, AppendMessage) or decision.synchronizing
        return Continuation(text).to_bytes() if synchronizing else b""

    def reject_literal(self, response: Tagged | Bye) -> bytes:
        """Refuse the pending literal with a tagged NO/BAD (the command is over) or a BYE.

        For a non-synchronising APPEND message the machine then skips its octets and the
        rest of the command (RFC 7888 §4 option 1) - unless they exceed
        ``max_command_size``: then a ``* BYE [TOOBIG]`` follows the response and the
        connection is closed (option 2; security catalogue I2).
        """
        pending = self._decision
        if isinstance(response, Tagged) and pending is not None and response.tag != pending.tag:
            raise LocalProtocolError(f"tag {response.tag!r} does not answer {pending.tag!r}")
        decision = self._take_decision()
        wire = response.to_bytes(utf8=self.utf8_enabled)
        if isinstance(response, Bye):
            self._close()
        elif not self._reader.reject(decision):
            wire += Bye("Literal too big to skip", "TOOBIG").to_bytes()
            self._close()
        return wire

    def take_unconsumed(self) -> bytes:
        """The octets that followed an accepted COMPRESS (the first compressed input, RFC 4978
        §3) or STARTTLS (discarded plaintext, never to be used). Required after COMPRESS."""
        data, self._unconsumed = self._unconsumed or b"", None
        if self._state is State.COMPRESS_PENDING:
            self._state = State.COMMAND
        return data

    def tls_started(self) -> None:
        """The TLS handshake after STARTTLS succeeded (RFC 9051 §6.2.1): read commands again."""
        if self._state is not State.TLS_PENDING:
            raise LocalProtocolError("tls_started() without an accepted STARTTLS")
        self._state = State.COMMAND
        self._enabled = frozenset()

    def _take_decision(self) -> LiteralRequest | AppendMessage:
        decision = self._decision
        if decision is None:
            raise LocalProtocolError("no literal is waiting for a decision")
        self._decision = None
        self._awaiting = None
        return decision

    def _on_continuation(self) -> None:
        event = self._awaiting
        if isinstance(event, cmd.Idle):
            self._state = State.IDLE
        elif isinstance(event, (cmd.Authenticate, AuthenticateResponse)):
            self._state = State.AUTHENTICATE
        else:
            raise LocalProtocolError(f"no continuation is expected for {event!r}")
        if isinstance(event, cmd.Command):
            self._open = event
        self._awaiting = None

    def _on_tagged(self, response: Tagged) -> None:
        event = self._awaiting if self._awaiting is not None else self._open
        if event is None or getattr(event, "tag", None) != response.tag:
            raise LocalProtocolError(f"tagged response {response.tag!r} answers nothing pending")
        opened = self._open
        self._awaiting = None
        self._open = None
        if self._state in (State.IDLE, State.AUTHENTICATE):
            self._state = State.COMMAND
        if response.status == "OK":
            self._on_success(opened if isinstance(event, AuthenticateResponse) else event)

    def _on_success(self, event: object) -> None:
        if isinstance(event, (cmd.Login, cmd.Authenticate)):
            self._authenticated = True
        elif isinstance(event, cmd.StartTLS):
            self._set_aside_buffer()
            self._discarded_plaintext = self._discarded_plaintext or bool(self._unconsumed)
            self._state = State.TLS_PENDING
        elif isinstance(event, cmd.Compress):
            self._set_aside_buffer()
            self._state = State.COMPRESS_PENDING
        elif isinstance(event, cmd.Logout):
            self._close()

    def _set_aside_buffer(self) -> None:
        """The octets after STARTTLS/COMPRESS belong to another layer; never parse them here."""
        self._unconsumed = bytes(self._buffer)
        self._buffer.clear()
        self._lines.discarding = False
        self._reader.reset()

    def _on_bye(self) -> None:
        if not isinstance(self._awaiting, cmd.Logout):  # RFC 9051 §6.1.3: BYE, then OK
            self._close()

    def _on_untagged(self, response: Untagged) -> None:
        if response.status == "PREAUTH":
            self._authenticated = True
        elif response.status == "BAD" and self._awaits_tagless_bad():
            self._awaiting = None  # "* BAD" answers a line without a readable tag

    def _awaits_tagless_bad(self) -> bool:
        return isinstance(self._awaiting, BadCommand) and self._awaiting.tag is None

    def _close(self) -> None:
        self._state = State.CLOSED
        self._buffer.clear()
        self._reader.reset()
        self._awaiting = None
        self._decision = None
        self._open = None

    # --- AUTHENTICATE and IDLE lines ------------------------------------------------------

    def _authenticate_line(self) -> NextEvent:
        limit = max(AUTH_LINE_LIMIT, self._current_limits.line)
        status, line = self._lines.read(self._buffer, limit)
        if status is LineStatus.NEED_DATA:
            return NEED_DATA
        tag = self._open.tag if self._open is not None else ""
        self._state = State.COMMAND  # a Continuation answer re-enters AUTHENTICATE
        if status is not LineStatus.LINE:
            return BadCommand(tag, "Invalid AUTHENTICATE response line")
        if line == b"*":
            return AuthenticateCancel(tag)
        decoded = decode_sasl_base64(line)
        if decoded is None:
            return BadCommand(tag, "Invalid base64 in AUTHENTICATE response")
        return AuthenticateResponse(tag, decoded)

    def _idle_line(self) -> NextEvent:
        status, line = self._lines.read(self._buffer, self._current_limits.line)
        if status is LineStatus.NEED_DATA:
            return NEED_DATA
        tag = self._open.tag if self._open is not None else ""
        self._state = State.COMMAND
        if status is LineStatus.LINE and line.upper() == b"DONE":
            return Done(tag)
        return BadCommand(tag, "Expected DONE")
