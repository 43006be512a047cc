"""POP3 responses: one value type, the SASL continuation, and the replies the core sends.

Theory of operation
-------------------
A :class:`Reply` is a status indicator (``+OK`` or ``-ERR``, RFC 1939 §3), an optional
extended response code in square brackets (RFC 2449 §8, codes from RFC 2449 §8.1 and RFC 3206:
``IN-USE``, ``AUTH``, ``SYS/TEMP``, ``SYS/PERM``), a text, and optionally the lines of a
multi-line response (CAPA, LIST, UIDL). :meth:`Reply.to_bytes` is the only place where replies
become wire bytes, so it is also where the server guarantees that it never emits a bare CR or
LF, that the first line stays within 512 octets (RFC 2449 §4), and that every line of a
multi-line body is dot-stuffed (RFC 1939 §3).

A ``streamed`` reply is the status line of a multi-line response whose body the session sends
in pieces (RETR and TOP): the protocol machine then expects ``send_body()`` and ``end_body()``.

:class:`Continuation` is the ``+ base64`` server challenge of the AUTH exchange (RFC 5034 §4).

:func:`capabilities` builds the CAPA response (RFC 2449 §5) from the facts that change it:
whether TLS is active, whether STLS can be offered, and whether credentials are accepted here.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

MAX_STATUS_LINE = 512  # RFC 2449 §4: the first line, CRLF included
MAX_CAPABILITY_LINE = 512  # RFC 2449 §5
_RESPONSE_CODE = re.compile(r"[\x21-\x2e\x30-\x5c\x5e-\x7f]+(?:/[\x21-\x2e\x30-\x5c\x5e-\x7f]+)*")


@dataclass(frozen=True, slots=True)
class Reply:
    """One POP3 response; ``lines`` makes it multi-line, ``streamed`` leaves the body to the
    session (RETR, TOP), ``close`` ends the connection once it is sent."""

    ok: bool
    text: str = ""
    code: str | None = None
    lines: tuple[str, ...] | None = None
    streamed: bool = False
    close: bool = False

    def __post_init__(self) -> None:
        if self.code is not None and not _RESPONSE_CODE.fullmatch(self.code):
            raise ValueError(f"bad POP3 response code {self.code!r}")  # RFC 2449 §3 resp-code
        if (self.lines is not None or self.streamed) and not self.ok:
            raise ValueError("only +OK responses are multi-line (RFC 1939 §3)")
        if self.lines is not None and self.streamed:
            raise ValueError("a reply either carries its lines or has them streamed")

    @property
    def multiline(self) -> bool:
        return self.lines is not None or self.streamed

    def status_line(self) -> bytes:
        """The first line, with its CRLF."""
        parts = ["+OK" if self.ok else "-ERR"]
        if self.code is not None:
            parts.append(f"[{self.code}]")
        if self.text:
            parts.append(self.text)
        line = " ".join(parts)
        if "\r" in line or "\n" in line:
            raise ValueError("reply text must not contain CR or LF")
        wire = line.encode("utf-8") + b"\r\n"
        if len(wire) > MAX_STATUS_LINE:
            raise ValueError("POP3 status line longer than 512 octets")
        return wire

    def to_bytes(self) -> bytes:
        """The whole response; a streamed reply gives only its status line."""
        if self.lines is None:
            return self.status_line()
        out = [self.status_line()]
        for line in self.lines:
            if "\r" in line or "\n" in line:
                raise ValueError("reply lines must not contain CR or LF")
            stuffed = "." + line if line.startswith(".") else line  # RFC 1939 §3
            out.append(stuffed.encode("utf-8") + b"\r\n")
        out.append(b".\r\n")
        return b"".join(out)


@dataclass(frozen=True, slots=True)
class Continuation:
    """A server challenge during AUTH: ``+ <base64>`` (RFC 5034 §4; empty data gives ``+ ``)."""

    data: bytes = b""

    def to_bytes(self) -> bytes:
        return b"+ " + base64.b64encode(self.data) + b"\r\n"


def ok(text: str = "", code: str | None = None, *, close: bool = False) -> Reply:
    return Reply(True, text, code, close=close)


def err(text: str, code: str | None = None, *, close: bool = False) -> Reply:
    return Reply(False, text, code, close=close)


# --- replies the protocol machine sends on its own ---------------------------------------------

UNKNOWN_COMMAND = err("unknown command")
WRONG_STATE = err("command not valid in this state")  # RFC 1939 §3
LINE_TOO_LONG = err("command line too long")  # RFC 2449 §4: 255 octets
BARE_LF = err("command line must end with CRLF")
INVALID_CHARACTER = err("invalid character in command line")
NO_ARGUMENTS = err("this command takes no arguments")
BAD_MESSAGE_NUMBER = err("invalid message number")
NO_SUCH_MESSAGE = err("no such message")
BAD_LINE_COUNT = err("invalid number of lines")
TOO_MANY_ERRORS = err("too many errors, closing connection", close=True)

# Authentication (RFC 3206: every -ERR to USER, PASS and AUTH carries a response code, which
# the AUTH-RESP-CODE capability promises).
USER_REQUIRED = err("send USER first", "AUTH")
MISSING_USER_NAME = err("USER needs a name", "AUTH")
MISSING_PASSWORD = err("PASS needs a password", "AUTH")
AUTH_SYNTAX = err("syntax: AUTH mechanism [initial-response]", "AUTH")
AUTH_INVALID_BASE64 = err("invalid base64 data", "AUTH")
AUTH_LINE_TOO_LONG = err("authentication line too long", "AUTH")
# APOP (RFC 1939 §7) is off unless the operator sets pop3.apop: its digest needs the password
# in a recoverable form on the server, while USER/PASS and AUTH need only an argon2id hash.
APOP_UNSUPPORTED = err("APOP is not enabled, use USER/PASS or AUTH over TLS", "AUTH")
APOP_SYNTAX = err("syntax: APOP name digest (32 hex digits)", "AUTH")
# RFC 2595 §2.3 and RFC 8314 §4.1: no clear-text credentials before TLS (security catalogue R4).
ENCRYPTION_REQUIRED = err("authentication requires TLS: use STLS or the pop3s port", "SYS/PERM")
TLS_ALREADY_ACTIVE = err("command not permitted when TLS active")  # RFC 2595 §4

# Common answers, so that every session words them the same way.
READY_TO_START_TLS = ok("begin TLS negotiation")
TLS_NOT_AVAILABLE = err("TLS is not available", "SYS/PERM")
NOOP_OK = ok()
AUTH_ABORTED = err("authentication cancelled", "AUTH")
BYE = ok("bye", close=True)


def capabilities(*, tls_active: bool, offer_stls: bool, credentials_allowed: bool,
                 mechanisms: tuple[str, ...]) -> Reply:
    """The CAPA response (RFC 2449 §5, §6; RFC 2595 §4; RFC 3206 AUTH-RESP-CODE)."""
    lines = ["TOP", "UIDL"]
    if credentials_allowed:
        lines += ["USER", " ".join(("SASL", *mechanisms))]
    lines += ["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "LOGIN-DELAY 0",
              "IMPLEMENTATION mailpost"]
    if offer_stls and not tls_active:
        lines.append("STLS")
    return Reply(True, "capability list follows", lines=tuple(lines))
