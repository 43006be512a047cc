"""Events produced by :class:`mailpost.imap.protocol.IMAPServerProtocol` besides commands.

Theory of operation
-------------------
``next_event()`` returns a :class:`~mailpost.imap.commands.Command`, one of the events below,
or a :class:`Sentinel`. The reply rule has no exception: **every event except**
:class:`AppendData` **and** :class:`ConnectionClosed` **must be answered before**
``next_event()`` **returns anything but** ``PAUSED``:

=========================  ==================================================================
event                      how the session answers
=========================  ==================================================================
any ``Command``            ``send(Tagged(tag, ...))``; or ``send(Bye(...))`` to close.
                           ``Idle`` may first get ``send(Continuation("idling"))``;
                           ``Authenticate`` may get ``send(Continuation(data=challenge))``.
``LiteralRequest``         ``accept_literal()`` (writes ``+ Ready``) or
                           ``reject_literal(Tagged(tag, "NO"/"BAD", ...))``
``AppendMessage``          the same: accept to receive the message, or reject (e.g.
                           ``NO [TOOBIG]``, ``NO [TRYCREATE]``, ``NO [OVERQUOTA]``)
``AppendData``             none: write ``data`` to the message being staged
``AppendDone``             ``send(Tagged(tag, "OK", code=APPENDUID ...))`` once every staged
                           message is stored; ``NO`` if any failed (MULTIAPPEND is atomic)
``AuthenticateResponse``   another ``Continuation(data=...)``, or the tagged OK/NO
``AuthenticateCancel``     ``send(Tagged(tag, "BAD", ...))`` (RFC 9051 §6.2.2)
``Done``                   ``send(Tagged(tag, "OK", "IDLE terminated"))``
``BadCommand``             ``send(event.response)``: tagged BAD (untagged if no tag could be
                           read), or ``NO [BADCHARSET ...]`` for SEARCH charsets
``Fatal``                  ``send(event.response)``, a ``BYE``; the machine is then closed
``ConnectionClosed``       none: the peer closed; discard any staged APPEND
=========================  ==================================================================

APPEND streaming. ``tag APPEND box (\\Seen) {326}`` produces :class:`AppendMessage` (with the
parsed mailbox, flags, date and size) *before* any message octet is read. After
``accept_literal()`` the octets arrive as :class:`AppendData` chunks as they are received, never
buffered whole. A message is complete when the next non-``AppendData`` event arrives: another
``AppendMessage`` (MULTIAPPEND, RFC 3502), :class:`AppendDone` (the command ended; commit now),
or a ``BadCommand``/``ConnectionClosed`` (discard everything staged for this command).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field

from mailpost.imap.commands import Command
from mailpost.imap.responses import Bye, Tagged, Untagged


class Sentinel(enum.Enum):
    """Non-event results of ``next_event()``, as in h11."""

    NEED_DATA = "NEED_DATA"  # feed more bytes with receive_data()
    PAUSED = "PAUSED"  # answer the pending event (or finish STARTTLS/COMPRESS) first

    def __repr__(self) -> str:
        return self.value


NEED_DATA = Sentinel.NEED_DATA
PAUSED = Sentinel.PAUSED


@dataclass(frozen=True, slots=True)
class BadCommand:
    """A command the machine rejects by itself (syntax, limits, framing). ``tag`` is None when
    no tag could be read (the answer is then ``* BAD``, RFC 9051 §7.1.3)."""

    tag: str | None
    text: str
    code: str | None = None
    status: str = "BAD"

    @property
    def response(self) -> Tagged | Untagged:
        if self.tag is None:
            return Untagged(self.status, self.text, self.code)
        return Tagged(self.tag, self.status, self.text, self.code)


@dataclass(frozen=True, slots=True)
class Fatal:
    """The connection cannot go on (e.g. a non-synchronising literal too big to skip,
    RFC 7888 §4 option 2): send ``response`` and close."""

    text: str
    code: str | None = None

    @property
    def response(self) -> Bye:
        return Bye(self.text, self.code)


@dataclass(frozen=True, slots=True)
class LiteralRequest:
    """A synchronising literal ``{size}`` inside command ``command``: the client waits for
    ``+`` (RFC 9051 §7.6). Accept or reject it; a rejected command is dropped whole."""

    tag: str
    command: str
    size: int


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND (``index`` 0, 1, ... for MULTIAPPEND) is about to arrive.

    ``binary`` for ``~{n}`` (RFC 3516: may hold NUL), ``utf8`` for ``UTF8 (~{n})`` (RFC 6855
    §4). ``synchronizing`` False means the octets are already on their way (``{n+}``): a
    rejection then makes the machine skip them (RFC 7888 §4); for absurd sizes reject with
    ``Bye`` instead. ``internal_date`` is timezone-aware, or None.
    """

    tag: str
    mailbox: str
    flags: tuple[str, ...]
    internal_date: dt.datetime | None
    size: int
    synchronizing: bool
    binary: bool = False
    utf8: bool = False
    index: int = 0


@dataclass(frozen=True, slots=True)
class AppendData:
    """Octets of the current APPEND message, in order; no reply."""

    tag: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AppendDone:
    """The APPEND command ended after ``count`` messages: commit them and answer."""

    tag: str
    mailbox: str
    count: int


@dataclass(frozen=True, slots=True)
class AuthenticateResponse:
    """A client line during AUTHENTICATE, base64-decoded (RFC 9051 §6.2.2)."""

    tag: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class AuthenticateCancel:
    """The client sent ``*``: answer tagged BAD (RFC 9051 §6.2.2)."""

    tag: str


@dataclass(frozen=True, slots=True)
class Done:
    """``DONE`` ended the IDLE command ``tag`` (RFC 2177 §3)."""

    tag: str


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection (or the machine closed it after a BYE)."""


Event = (
    Command
    | BadCommand
    | Fatal
    | LiteralRequest
    | AppendMessage
    | AppendData
    | AppendDone
    | AuthenticateResponse
    | AuthenticateCancel
    | Done
    | ConnectionClosed
)


def needs_reply(event: Event) -> bool:
    """True for every event the session must answer (see the table above)."""
    return not isinstance(event, (AppendData, ConnectionClosed))
