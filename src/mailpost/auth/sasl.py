"""Server side of the SASL mechanisms mailpost offers: PLAIN and LOGIN, without I/O.

Theory of operation
-------------------
A mechanism object runs one authentication exchange (RFC 4422 §3) and is then thrown away; get
a fresh one from :func:`mechanism` for every AUTH / AUTHENTICATE command. The protocol layer
(SMTP, IMAP, POP3) owns everything that is protocol-specific: base64 framing, the ``=`` empty
initial response of RFC 4954 §4, the ``*`` abort of RFC 4422 §3.5, line-length limits and the
reply codes. It hands this module decoded bytes and gets back one :data:`Step`:

* :class:`Challenge`: send these bytes to the client (base64-encoded by the protocol layer) and
  pass the client's decoded reply to :meth:`SASLMechanism.step`;
* :class:`Credentials`: the exchange is complete; give them to the authenticator;
* :class:`Failure`: the client broke the mechanism's grammar (SMTP ``501``, IMAP ``BAD``, POP3
  ``-ERR``). Failures never say anything about the account, only about the syntax.

Every input comes from an unauthenticated peer, so parsing is bounded and total: no input makes
a mechanism raise, and anything longer than the bounds below is refused before it is decoded.

Bounds: RFC 4616 §2 requires accepting identities and passwords of up to 255 octets. mailpost
accepts identities of up to 255 octets (an address never exceeds 254, RFC 5321 §4.5.3.1.3) and
passwords of up to 512 octets (room for long passphrases), so a whole PLAIN message is at most
1024 octets. Identities must not contain control characters: no mailpost address has one, and
refusing them here keeps CR/LF and escape sequences out of every log line that names a user.

No string preparation (SASLprep) is applied: passwords are hashed exactly as given, and the
RFC 4616 §2 rule that a stored hash must be of the *prepared* string holds trivially when the
preparation is the identity. Account lookup is case-insensitive in the store.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

MAX_IDENTITY_OCTETS = 255
MAX_PASSWORD_OCTETS = 512
# Two NUL separators plus three maximal fields: 255 + 255 + 512 + 2.
MAX_MESSAGE_OCTETS = 1024

MECHANISMS: tuple[str, ...] = ("PLAIN", "LOGIN")

_NUL = b"\x00"


@dataclass(frozen=True, slots=True)
class Challenge:
    """Server data to send to the client; empty means an empty challenge (RFC 4422 §5 2a)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    """The result of a complete exchange, still to be verified.

    ``authzid`` is empty when the client asked to act as itself (RFC 4422 §3.4.1). The password
    is left out of ``repr`` so that logging a ``Credentials`` cannot leak it.
    """

    authzid: str
    authcid: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Failure:
    """The client's message does not follow the mechanism's grammar; ``reason`` is for logs."""

    reason: str


Step: TypeAlias = Challenge | Credentials | Failure


class SASLMechanism(Protocol):
    """One server-side exchange of one mechanism (single use)."""

    name: str

    def start(self, initial_response: bytes | None) -> Step:
        """Begin the exchange; ``None`` means the client sent no initial response, which is
        different from an empty one (RFC 4422 §3.3, RFC 4954 §4 ``=``)."""
        ...

    def step(self, response: bytes) -> Step:
        """Consume the client's (decoded) reply to the last challenge."""
        ...


class _Phase(enum.Enum):
    NEW = enum.auto()
    AWAIT_MESSAGE = enum.auto()  # PLAIN: empty challenge sent
    AWAIT_USERNAME = enum.auto()  # LOGIN: "Username:" sent
    AWAIT_PASSWORD = enum.auto()  # LOGIN: "Password:" sent
    DONE = enum.auto()


def _decode_identity(raw: bytes, what: str) -> str | Failure:
    """UTF-8 decode an authcid or authzid, enforcing the identity bounds."""
    if len(raw) > MAX_IDENTITY_OCTETS:
        return Failure(f"{what} too long")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Failure(f"{what} is not UTF-8")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
        return Failure(f"{what} contains control characters")
    return text


def _decode_password(raw: bytes) -> str | Failure:
    """UTF-8 decode a password (form-free per RFC 4616 §2 apart from NUL and the bound)."""
    if len(raw) > MAX_PASSWORD_OCTETS:
        return Failure("password too long")
    if _NUL in raw:
        return Failure("password contains NUL")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return Failure("password is not UTF-8")


def parse_plain(message: bytes) -> Credentials | Failure:
    """Parse ``[authzid] NUL authcid NUL passwd`` (RFC 4616 §2)."""
    if len(message) > MAX_MESSAGE_OCTETS:
        return Failure("message too long")
    parts = message.split(_NUL)
    if len(parts) != 3:
        # Fewer than two NULs is a truncated message; more means a NUL inside a field, which
        # RFC 4616 §2 forbids ("MUST NOT appear"), e.g. "\0a\0b\0c".
        return Failure("PLAIN message needs exactly two NUL separators")
    raw_authzid, raw_authcid, raw_password = parts
    if not raw_authcid:
        return Failure("empty authentication identity")
    if not raw_password:
        return Failure("empty password")
    authzid = _decode_identity(raw_authzid, "authorization identity")
    if isinstance(authzid, Failure):
        return authzid
    authcid = _decode_identity(raw_authcid, "authentication identity")
    if isinstance(authcid, Failure):
        return authcid
    password = _decode_password(raw_password)
    if isinstance(password, Failure):
        return password
    return Credentials(authzid=authzid, authcid=authcid, password=password)


class PlainMechanism:
    """RFC 4616: client-first, one message. Without an initial response the server sends an
    empty challenge (RFC 4422 §5 2a) and the message comes as the reply."""

    name = "PLAIN"

    def __init__(self) -> None:
        self._phase = _Phase.NEW

    def start(self, initial_response: bytes | None) -> Step:
        if self._phase is not _Phase.NEW:
            return self._finish(Failure("exchange already started"))
        if initial_response is None:
            self._phase = _Phase.AWAIT_MESSAGE
            return Challenge(b"")
        return self._finish(parse_plain(initial_response))

    def step(self, response: bytes) -> Step:
        if self._phase is not _Phase.AWAIT_MESSAGE:
            return self._finish(Failure("no response expected"))
        return self._finish(parse_plain(response))

    def _finish(self, outcome: Credentials | Failure) -> Step:
        self._phase = _Phase.DONE
        return outcome


USERNAME_CHALLENGE = b"Username:"
PASSWORD_CHALLENGE = b"Password:"


class LoginMechanism:
    """The de-facto LOGIN mechanism (draft-murchison-sasl-login): the server asks
    ``Username:`` then ``Password:``. A client may send the username as the initial response
    (what RFC 4954 clients do with ``AUTH LOGIN <base64 user>``). LOGIN cannot carry an
    authorization identity, so ``authzid`` is always empty."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._phase = _Phase.NEW
        self._username = ""

    def start(self, initial_response: bytes | None) -> Step:
        if self._phase is not _Phase.NEW:
            return self._fail("exchange already started")
        if initial_response is None:
            self._phase = _Phase.AWAIT_USERNAME
            return Challenge(USERNAME_CHALLENGE)
        return self._take_username(initial_response)

    def step(self, response: bytes) -> Step:
        if self._phase is _Phase.AWAIT_USERNAME:
            return self._take_username(response)
        if self._phase is _Phase.AWAIT_PASSWORD:
            return self._take_password(response)
        return self._fail("no response expected")

    def _take_username(self, raw: bytes) -> Step:
        if not raw:
            return self._fail("empty username")
        username = _decode_identity(raw, "username")
        if isinstance(username, Failure):
            self._phase = _Phase.DONE
            return username
        self._username = username
        self._phase = _Phase.AWAIT_PASSWORD
        return Challenge(PASSWORD_CHALLENGE)

    def _take_password(self, raw: bytes) -> Step:
        self._phase = _Phase.DONE
        if not raw:
            return Failure("empty password")
        password = _decode_password(raw)
        if isinstance(password, Failure):
            return password
        return Credentials(authzid="", authcid=self._username, password=password)

    def _fail(self, reason: str) -> Failure:
        self._phase = _Phase.DONE
        return Failure(reason)


def mechanism(name: str) -> SASLMechanism | None:
    """A fresh server-side mechanism for ``name`` (case-insensitive, RFC 4422 §3.1), or None
    when mailpost does not offer it."""
    if not name.isascii():
        # Mechanism names are ASCII (RFC 4422 §3.1); without this check str.upper() would
        # map the dotless i (U+0131) onto "I".
        return None
    upper = name.upper()
    if upper == PlainMechanism.name:
        return PlainMechanism()
    if upper == LoginMechanism.name:
        return LoginMechanism()
    return None
