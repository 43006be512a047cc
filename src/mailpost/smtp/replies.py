"""SMTP replies: one immutable value type and the catalogue of replies the core uses.

Theory of operation
-------------------
A :class:`Reply` is a three-digit code, an optional enhanced status code
(RFC 2034 / RFC 3463) and one or more text lines. :meth:`Reply.to_bytes` is
the only place where replies become wire bytes, so it is also the place that
guarantees the server never emits a bare CR or LF (security catalogue
invariant 2): any text line containing CR or LF is refused with ``ValueError``.
The enhanced code, when present, prefixes every line of a multi-line reply as
RFC 2034 §4 requires.

``close=True`` marks a reply after which the connection ends (221 to QUIT,
421 shutdown or "too many errors"); the protocol machine moves to its closed
state when such a reply is sent.

The constants below are the replies the protocol machine produces on its own
(syntax, sequence, framing and limit errors) plus a few that every session
needs. Sessions are free to build their own with :meth:`Reply.make`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply (RFC 5321 §4.2), possibly multi-line."""

    code: int
    enhanced: str | None
    lines: tuple[str, ...]
    close: bool = False

    def __post_init__(self) -> None:
        if not 200 <= self.code <= 599:
            raise ValueError(f"SMTP reply code out of range: {self.code}")
        # RFC 3463 §2: the class digit of the enhanced code repeats the reply class.
        enhanced = self.enhanced
        if enhanced is not None and (
            not _ENHANCED.fullmatch(enhanced) or enhanced[0] != str(self.code)[0]
        ):
            raise ValueError(f"bad enhanced status code {enhanced!r} for {self.code}")

    @classmethod
    def make(cls, code: int, enhanced: str | None, *lines: str, close: bool = False) -> Reply:
        """Build a reply from its parts; no lines means a reply with empty text."""
        return cls(code, enhanced, tuple(lines) or ("",), close)

    @property
    def positive(self) -> bool:
        """True for 2xx and 3xx replies (RFC 5321 §4.2.1)."""
        return self.code < 400

    def to_bytes(self) -> bytes:
        """Serialise as ``250-a\\r\\n250 b\\r\\n``; refuse text that contains CR or LF."""
        lines = self.lines or ("",)
        out: list[bytes] = []
        for index, text in enumerate(lines):
            if "\r" in text or "\n" in text:
                raise ValueError("reply text must not contain CR or LF")
            separator = " " if index == len(lines) - 1 else "-"
            body = f"{self.enhanced} {text}" if self.enhanced and text else self.enhanced or text
            out.append(f"{self.code}{separator}{body}\r\n".encode())
        return b"".join(out)


# --- Replies the protocol machine sends on its own -------------------------------------

OK = Reply.make(250, "2.0.0", "OK")
BYE = Reply.make(221, "2.0.0", "Bye", close=True)
START_DATA = Reply.make(354, None, "End data with <CR><LF>.<CR><LF>")
READY_TO_START_TLS = Reply.make(220, "2.0.0", "Ready to start TLS")

UNKNOWN_COMMAND = Reply.make(500, "5.5.1", "Command not recognized")
LINE_TOO_LONG = Reply.make(500, "5.5.2", "Line too long")
BARE_LF = Reply.make(500, "5.5.2", "Command line must end with <CR><LF>")
INVALID_CHARACTER = Reply.make(501, "5.5.2", "Syntax error: invalid character in command")
SYNTAX_ERROR = Reply.make(501, "5.5.2", "Syntax error")
INVALID_ARGUMENTS = Reply.make(501, "5.5.4", "Syntax error in parameters or arguments")
NOT_IMPLEMENTED = Reply.make(502, "5.5.1", "Command not implemented")
BAD_SEQUENCE = Reply.make(503, "5.5.1", "Bad sequence of commands")
NEED_HELLO = Reply.make(503, "5.5.1", "Send HELO/EHLO first")
NEED_MAIL = Reply.make(503, "5.5.1", "Need MAIL command first")
NEED_RCPT = Reply.make(503, "5.5.1", "Need RCPT command first")
NESTED_MAIL = Reply.make(503, "5.5.1", "Sender already specified")
DATA_AFTER_BDAT = Reply.make(503, "5.5.1", "DATA and BDAT cannot be mixed in one transaction")
RSET_REQUIRED = Reply.make(503, "5.5.1", "Transaction failed, RSET required")
REFUSED_SESSION = Reply.make(503, "5.5.1", "No SMTP service here, only QUIT is accepted")
TOO_MANY_ERRORS = Reply.make(421, "4.7.0", "Too many errors, closing connection", close=True)

# ESMTP parameters (RFC 5321 §4.1.1.11, §4.2.3: 555 for unrecognised parameters).
UNKNOWN_PARAMETER = Reply.make(555, "5.5.4", "Unrecognized or unsupported parameter")
BAD_PARAMETER = Reply.make(501, "5.5.4", "Malformed or duplicate parameter")
BAD_SENDER_SYNTAX = Reply.make(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply.make(501, "5.1.3", "Bad recipient address syntax")
# RFC 6531 §3.5: 550 for MAIL, 553 for RCPT, enhanced code X.6.7.
NON_ASCII_SENDER = Reply.make(550, "5.6.7", "Non-ASCII address requires SMTPUTF8")
NON_ASCII_RECIPIENT = Reply.make(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")

# Message content (RFC 1870 §6.2; RFC 5321 §4.1.1.4; security catalogue S1, S9).
MESSAGE_TOO_BIG = Reply.make(552, "5.3.4", "Message size exceeds fixed maximum message size")
SMUGGLING_REJECTED = Reply.make(
    550, "5.5.2", "Bare CR or LF around a lone dot in message data; message rejected"
)

# STARTTLS (RFC 3207) and AUTH (RFC 4954).
TLS_ALREADY_ACTIVE = Reply.make(554, "5.5.1", "TLS already active")
TLS_IN_TRANSACTION = Reply.make(503, "5.5.1", "STARTTLS not permitted during a mail transaction")
TLS_NOT_AVAILABLE = Reply.make(454, "4.7.0", "TLS not available")
AUTH_ALREADY = Reply.make(503, "5.5.1", "Already authenticated")
AUTH_IN_TRANSACTION = Reply.make(503, "5.5.1", "AUTH not permitted during a mail transaction")
AUTH_INVALID_BASE64 = Reply.make(501, "5.5.2", "Invalid base64 data")
AUTH_LINE_TOO_LONG = Reply.make(500, "5.5.6", "Authentication exchange line is too long")
AUTH_ABORTED = Reply.make(501, "5.0.0", "Authentication aborted")
AUTH_SUCCEEDED = Reply.make(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply.make(535, "5.7.8", "Authentication credentials invalid")
AUTH_MECHANISM_UNSUPPORTED = Reply.make(504, "5.5.4", "Unrecognized authentication type")
AUTH_REQUIRED = Reply.make(530, "5.7.0", "Authentication required")
ENCRYPTION_REQUIRED = Reply.make(538, "5.7.11", "Encryption required for requested authentication")

# Common policy answers, so that every session words them the same way.
SENDER_OK = Reply.make(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply.make(250, "2.1.5", "Recipient OK")
MESSAGE_ACCEPTED = Reply.make(250, "2.0.0", "Message accepted")
CANNOT_VRFY = Reply.make(
    252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"
)
HELP = Reply.make(214, "2.0.0", "See RFC 5321")
SERVICE_CLOSING = Reply.make(421, "4.3.2", "Service shutting down, closing connection", close=True)
TOO_MANY_RECIPIENTS = Reply.make(452, "4.5.3", "Too many recipients")
INSUFFICIENT_STORAGE = Reply.make(452, "4.3.1", "Insufficient system storage")
LOCAL_ERROR = Reply.make(451, "4.3.0", "Local error in processing")
RELAY_DENIED = Reply.make(554, "5.7.1", "Relay access denied")
LOOP_DETECTED = Reply.make(554, "5.4.6", "Too many Received header fields, mail loop suspected")
