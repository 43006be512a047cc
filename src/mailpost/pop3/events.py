"""Events produced by :class:`mailpost.pop3.protocol.POP3ServerProtocol`.

Theory of operation
-------------------
Every event is a frozen, slotted dataclass. **Every event except** :class:`ConnectionClosed`
**must be answered by exactly one** ``send(reply)`` before ``next_event()`` returns anything
but ``PAUSED``. ``NEED_DATA`` and ``PAUSED`` are the same sentinels as the SMTP core's.

======================  ======================================================================
event                   reply the session sends
======================  ======================================================================
Capa                    ``replies.capabilities(...)`` (multi-line)
Stls                    ``+OK`` (then handshake, then ``tls_started()``) or ``-ERR``
User                    ``+OK`` (whether or not the user exists) or ``-ERR [...]``
Pass, Apop              ``+OK`` maildrop locked and ready, or ``-ERR [AUTH|IN-USE|SYS/...]``
Auth / AuthResponse     ``Continuation`` (a ``+ `` challenge), ``+OK``, or ``-ERR [...]``
AuthAbort               ``-ERR [AUTH]`` (``replies.AUTH_ABORTED``)
Stat, List, Uidl        ``+OK`` (LIST and UIDL without argument: multi-line) or ``-ERR``
Retr, Top               a *streamed* ``+OK`` followed by ``send_body()``/``end_body()``, or
                        ``-ERR``
Dele, Rset, Noop        ``+OK`` or ``-ERR``
Quit                    ``+OK`` or ``-ERR`` (after the UPDATE state); the connection then ends
Invalid                 ``event.reply`` as is
ConnectionClosed        none: the peer closed (nothing is deleted, RFC 1939 §6)
======================  ======================================================================

Message numbers are parsed but not checked against the maildrop: the machine does not know the
maildrop, the session does (RFC 1939 §5: "-ERR no such message").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailpost.pop3.replies import Reply
from mailpost.smtp.events import NEED_DATA, PAUSED, Sentinel

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Apop",
    "Auth",
    "AuthAbort",
    "AuthResponse",
    "Capa",
    "ConnectionClosed",
    "Dele",
    "Event",
    "Invalid",
    "List",
    "Noop",
    "Pass",
    "Quit",
    "Retr",
    "Rset",
    "Sentinel",
    "Stat",
    "Stls",
    "Top",
    "Uidl",
    "User",
]


@dataclass(frozen=True, slots=True)
class Capa:
    """CAPA (RFC 2449 §5), valid in AUTHORIZATION and TRANSACTION."""


@dataclass(frozen=True, slots=True)
class Stls:
    """STLS (RFC 2595 §4); the machine already refused it under TLS or after login."""


@dataclass(frozen=True, slots=True)
class User:
    """USER name (RFC 1939 §7)."""

    name: str


@dataclass(frozen=True, slots=True)
class Pass:
    """PASS right after an accepted USER; ``user`` is that USER's name. The password is the
    rest of the line, spaces included (RFC 1939 §7)."""

    user: str
    password: str = field(default="", repr=False)  # never into a log line


@dataclass(frozen=True, slots=True)
class Apop:
    """APOP name digest (RFC 1939 §7), only emitted when APOP is offered. ``timestamp`` is the
    one this session's greeting carried; ``digest`` is 32 lower-case hex digits."""

    name: str
    timestamp: str
    digest: str = field(repr=False)  # lets an eavesdropper test password guesses offline


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH mechanism [initial-response] (RFC 5034 §4): the mechanism is upper-cased, the
    initial response base64-decoded (``b""`` for ``=``, None when absent)."""

    mechanism: str
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """A base64-decoded client line during the SASL exchange."""

    data: bytes = field(repr=False)  # may carry a password (PLAIN, LOGIN)


@dataclass(frozen=True, slots=True)
class AuthAbort:
    """The client cancelled the exchange with ``*`` (RFC 5034 §4)."""


@dataclass(frozen=True, slots=True)
class Stat:
    """STAT (RFC 1939 §5)."""


@dataclass(frozen=True, slots=True)
class List:
    """LIST [msg]; ``msg`` None asks for the whole scan listing."""

    msg: int | None


@dataclass(frozen=True, slots=True)
class Uidl:
    """UIDL [msg] (RFC 1939 §7)."""

    msg: int | None


@dataclass(frozen=True, slots=True)
class Retr:
    """RETR msg."""

    msg: int


@dataclass(frozen=True, slots=True)
class Top:
    """TOP msg n: the header section, the blank line and the first ``lines`` body lines."""

    msg: int
    lines: int


@dataclass(frozen=True, slots=True)
class Dele:
    """DELE msg: mark for deletion; nothing is removed before QUIT."""

    msg: int


@dataclass(frozen=True, slots=True)
class Rset:
    """RSET: unmark every message marked as deleted."""


@dataclass(frozen=True, slots=True)
class Noop:
    """NOOP."""


@dataclass(frozen=True, slots=True)
class Quit:
    """QUIT; ``update`` is True in the TRANSACTION state, where the session must now remove
    the messages marked as deleted (RFC 1939 §6) before it answers."""

    update: bool


@dataclass(frozen=True, slots=True)
class Invalid:
    """The machine rejected the line; send ``reply`` as is."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection, or a closing reply was sent."""


Event = (
    Capa
    | Stls
    | User
    | Pass
    | Apop
    | Auth
    | AuthResponse
    | AuthAbort
    | Stat
    | List
    | Uidl
    | Retr
    | Top
    | Dele
    | Rset
    | Noop
    | Quit
    | Invalid
    | ConnectionClosed
)
