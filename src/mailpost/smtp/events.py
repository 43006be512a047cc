"""Events produced by :class:`mailpost.smtp.protocol.SMTPServerProtocol`.

Theory of operation
-------------------
Every event is a frozen, slotted dataclass. The reply rule is simple and has
no exception: **every event except** :class:`DataChunk` **and**
:class:`ConnectionClosed` **must be answered by exactly one** ``send(reply)``
**before** ``next_event()`` **returns anything but** ``PAUSED``.

Which reply goes with which event:

======================  =====================================================
event                   reply the session sends
======================  =====================================================
Hello                   250 (EHLO: multi-line capability list), or 4xx/5xx
StartTLS                220 (then do the handshake, then ``tls_started()``)
Auth / AuthResponse     334 challenge, 235 success, or 4xx/5xx
AuthAbort               501 (``replies.AUTH_ABORTED``)
MailFrom / RcptTo       250 (RCPT also 251), or 4xx/5xx
Data                    354 (``replies.START_DATA``) starts the data phase
DataChunk               none: store the bytes
BdatChunkEnd            250 for this non-LAST chunk, or 4xx/5xx (the
                        transaction is then failed until RSET, RFC 3030 §2)
EndOfData               250 once the message is stored durably, or 4xx/5xx
                        (both for DATA's final dot and for ``BDAT ... LAST``)
Reset / Noop            250
Quit                    221 (``replies.BYE``)
Vrfy / Expn / Help      250/251/252 / 250/252 / 211/214, or 4xx/5xx
Invalid                 ``event.reply`` as is
ConnectionClosed        none: the peer closed; drop any partial message
======================  =====================================================

BDAT framing: a ``BDAT n`` command produces no event of its own. Its ``n``
octets come out as :class:`DataChunk` events, then :class:`BdatChunkEnd` (not
LAST) or :class:`EndOfData` (LAST). A BDAT transaction therefore has no
:class:`Data` event: open the message sink on the first ``DataChunk`` or at
``EndOfData``, whichever comes first. A ``BDAT 0 LAST`` gives an ``EndOfData``
with no chunk before it.

A transaction ends when the reply to ``EndOfData`` is sent (whatever its
code), on RSET, on HELO/EHLO, and after STARTTLS. When the machine itself
rejects a message at its end (``Invalid`` with 550 for smuggling or 552 for
size) the transaction is already over when the event is returned, so while
handling an ``Invalid`` the session can test ``protocol.in_transaction`` to
know whether to drop its envelope.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailpost.smtp.address import Path
from mailpost.smtp.params import MailParams, RcptParams
from mailpost.smtp.replies import Reply

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Auth",
    "AuthAbort",
    "AuthResponse",
    "BdatChunkEnd",
    "ConnectionClosed",
    "Data",
    "DataChunk",
    "EndOfData",
    "Event",
    "Expn",
    "Hello",
    "Help",
    "Invalid",
    "MailFrom",
    "MailParams",
    "Noop",
    "Quit",
    "RcptParams",
    "RcptTo",
    "Reset",
    "Sentinel",
    "StartTLS",
    "Vrfy",
    "needs_reply",
]


class Sentinel(enum.Enum):
    """Non-event results of ``next_event()``, as in h11."""

    NEED_DATA = "NEED_DATA"  # feed more bytes with receive_data()
    PAUSED = "PAUSED"  # send() the pending reply (or finish STARTTLS) first

    def __repr__(self) -> str:
        return self.value


NEED_DATA = Sentinel.NEED_DATA
PAUSED = Sentinel.PAUSED


@dataclass(frozen=True, slots=True)
class Hello:
    """HELO (``extended=False``) or EHLO (``extended=True``). The transaction is already reset."""

    hostname: str
    extended: bool


@dataclass(frozen=True, slots=True)
class StartTLS:
    """STARTTLS (RFC 3207)."""


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (RFC 4954): mechanism upper-cased; ``initial_response`` decoded, b"" for "="."""

    mechanism: str
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """A base64-decoded client line during the SASL exchange."""

    data: bytes


@dataclass(frozen=True, slots=True)
class AuthAbort:
    """The client cancelled the SASL exchange with "*" (RFC 4954 §4)."""


@dataclass(frozen=True, slots=True)
class MailFrom:
    """MAIL FROM; ``address`` is the normalised path ("" for ``<>``), ``path`` the parsed one."""

    address: str
    params: MailParams
    path: Path


@dataclass(frozen=True, slots=True)
class RcptTo:
    """RCPT TO; ``address`` is normalised ("postmaster" for ``<postmaster>``)."""

    address: str
    params: RcptParams
    path: Path


@dataclass(frozen=True, slots=True)
class Data:
    """DATA; reply 354 to start the data phase."""


@dataclass(frozen=True, slots=True)
class DataChunk:
    """Message content: dot-unstuffed, bare CR/LF turned into CRLF. Needs no reply."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfData:
    """The message is complete; ``size`` counts the octets of all its DataChunks."""

    size: int
    received_headers: int


@dataclass(frozen=True, slots=True)
class BdatChunkEnd:
    """A non-LAST BDAT chunk has been read; ``size`` is its declared octet count.

    LAST chunks end with :class:`EndOfData` instead, so ``last`` is always False;
    it is kept so that code matching on it stays explicit.
    """

    size: int
    last: bool = False


@dataclass(frozen=True, slots=True)
class Reset:
    """RSET; the machine has already dropped its transaction state."""


@dataclass(frozen=True, slots=True)
class Noop:
    """NOOP (any argument is ignored, RFC 5321 §4.1.1.9)."""


@dataclass(frozen=True, slots=True)
class Quit:
    """QUIT."""


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class Expn:
    argument: str


@dataclass(frozen=True, slots=True)
class Help:
    argument: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """The machine rejected the input; send ``reply`` as is."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the connection (``receive_data(b"")``), or a closing reply was sent."""


Event = (
    Hello
    | StartTLS
    | Auth
    | AuthResponse
    | AuthAbort
    | MailFrom
    | RcptTo
    | Data
    | DataChunk
    | EndOfData
    | BdatChunkEnd
    | Reset
    | Noop
    | Quit
    | Vrfy
    | Expn
    | Help
    | Invalid
    | ConnectionClosed
)


# The positive (2xx/3xx) codes that may answer each event (the table above);
# 4xx and 5xx answer any event. ``send()`` enforces this.
POSITIVE_CODES: dict[type[Event], frozenset[int]] = {
    Hello: frozenset({250}),
    StartTLS: frozenset({220}),
    Auth: frozenset({334, 235}),
    AuthResponse: frozenset({334, 235}),
    AuthAbort: frozenset(),
    MailFrom: frozenset({250}),
    RcptTo: frozenset({250, 251}),
    Data: frozenset({354}),
    BdatChunkEnd: frozenset({250}),
    EndOfData: frozenset({250}),
    Reset: frozenset({250}),
    Noop: frozenset({250}),
    Quit: frozenset({221}),
    Vrfy: frozenset({250, 251, 252}),
    Expn: frozenset({250, 252}),
    Help: frozenset({211, 214}),
    Invalid: frozenset(),
}


def needs_reply(event: Event) -> bool:
    """True for every event that must be answered with exactly one ``send()``."""
    return not isinstance(event, DataChunk | ConnectionClosed)
