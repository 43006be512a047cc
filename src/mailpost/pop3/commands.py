"""POP3 command-line syntax: from one CRLF-stripped line to a keyword and typed arguments.

Theory of operation
-------------------
This module knows the *syntax* of each command and nothing about the session state;
:mod:`mailpost.pop3.protocol` checks the state first and then calls the parser of the keyword.
Every parser returns either an event or the :class:`~mailpost.pop3.replies.Reply` that rejects
the line.

:func:`split_command` applies the checks that hold for every line: no control characters
(RFC 1939 §3: "Keywords and arguments consist of printable ASCII characters"), a known keyword
(case-insensitive). 8-bit octets are left to the parsers: only USER, PASS and APOP's name
accept them, as UTF-8 (a password may be any Unicode text; internationalised addresses, RFC 6856).

Message numbers are decimal (RFC 1939 §4) without a sign. Anything with more than ten digits
cannot name a message in a maildrop and is answered "no such message" without converting it;
the TOP line count is clamped instead, since a huge count simply means "the whole body".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailpost.pop3 import replies
from mailpost.pop3.events import (
    Apop,
    Auth,
    AuthAbort,
    AuthResponse,
    Event,
    Invalid,
    Pass,
    User,
)
from mailpost.pop3.replies import Reply
from mailpost.smtp.commands import decode_base64

AUTHORIZATION_KEYWORDS = frozenset({"USER", "PASS", "AUTH", "APOP", "CAPA", "STLS", "QUIT"})
TRANSACTION_KEYWORDS = frozenset(
    {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "QUIT", "CAPA"}
)
KEYWORDS = AUTHORIZATION_KEYWORDS | TRANSACTION_KEYWORDS

MAX_NUMBER_DIGITS = 10
MAX_TOP_LINES = 2**31 - 1

_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+")
_MECHANISM = re.compile(r"[A-Za-z0-9_-]{1,20}")  # RFC 4422 §3.1 sasl-mech
_APOP_DIGEST = re.compile(rb"[0-9A-Fa-f]{32}")  # RFC 1939 §7: 16 octets in hex


@dataclass(frozen=True, slots=True)
class CommandLine:
    """A line that passed the checks common to all commands; ``argument`` is still raw."""

    keyword: str
    argument: bytes


def split_command(line: bytes) -> CommandLine | Reply:
    """Split a line into an upper-case keyword and the raw octets after the first space."""
    if _CONTROL.search(line):
        return replies.INVALID_CHARACTER
    keyword_bytes, _, argument = line.partition(b" ")
    keyword = keyword_bytes.decode("latin-1").upper()
    if keyword not in KEYWORDS:
        return replies.UNKNOWN_COMMAND
    return CommandLine(keyword, argument)


def ascii_words(argument: bytes) -> list[str] | Reply:
    """The space-separated arguments of a command that takes only ASCII ones."""
    if not argument.isascii():
        return replies.INVALID_CHARACTER
    return argument.decode("ascii").split()


def parse_no_arguments(argument: bytes, event: Event) -> Event | Reply:
    """STAT, NOOP, RSET, QUIT, CAPA and STLS take no argument (trailing spaces tolerated)."""
    return event if not argument.strip(b" ") else replies.NO_ARGUMENTS


def message_number(word: str) -> int | Reply:
    if not _DIGITS.fullmatch(word):
        return replies.BAD_MESSAGE_NUMBER
    if len(word) > MAX_NUMBER_DIGITS:
        return replies.NO_SUCH_MESSAGE
    return int(word)


def parse_message(argument: bytes) -> int | Reply:
    """``msg`` (RETR, DELE)."""
    words = ascii_words(argument)
    if isinstance(words, Reply):
        return words
    return message_number(words[0]) if len(words) == 1 else replies.BAD_MESSAGE_NUMBER


def parse_optional_message(argument: bytes) -> int | None | Reply:
    """``[msg]`` (LIST, UIDL)."""
    words = ascii_words(argument)
    if isinstance(words, Reply):
        return words
    return None if not words else parse_message(argument)


def parse_top(argument: bytes) -> tuple[int, int] | Reply:
    """TOP msg n (RFC 1939 §7): n is a non-negative number of body lines."""
    words = ascii_words(argument)
    if isinstance(words, Reply):
        return words
    if len(words) != 2:
        return replies.BAD_LINE_COUNT if len(words) == 1 else replies.BAD_MESSAGE_NUMBER
    msg = message_number(words[0])
    if isinstance(msg, Reply):
        return msg
    if not _DIGITS.fullmatch(words[1]):
        return replies.BAD_LINE_COUNT
    lines = int(words[1]) if len(words[1]) <= MAX_NUMBER_DIGITS else MAX_TOP_LINES
    return msg, min(lines, MAX_TOP_LINES)


def _utf8(argument: bytes) -> str | None:
    try:
        return argument.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_user(argument: bytes) -> User | Reply:
    name = _utf8(argument.strip(b" "))
    if name is None:
        return replies.INVALID_CHARACTER
    return User(name) if name else replies.MISSING_USER_NAME


def parse_pass(user: str, argument: bytes) -> Pass | Reply:
    """The password is the whole rest of the line: RFC 1939 §7 lets it contain spaces."""
    password = _utf8(argument)
    if password is None:
        return replies.INVALID_CHARACTER
    return Pass(user, password) if password else replies.MISSING_PASSWORD


def parse_apop(argument: bytes, timestamp: str) -> Apop | Reply:
    """APOP name digest (RFC 1939 §7). The digest is the last word and the name everything
    before it, UTF-8 like USER's. RFC 1939 asks for lower-case hex; upper case is accepted and
    folded."""
    name_octets, _, digest = argument.strip(b" ").rpartition(b" ")
    name = _utf8(name_octets.strip(b" "))
    if name is None:
        return replies.INVALID_CHARACTER
    if not name or not _APOP_DIGEST.fullmatch(digest):
        return replies.APOP_SYNTAX
    return Apop(name, timestamp, digest.decode("ascii").lower())


def parse_auth(argument: bytes) -> Auth | Reply:
    """AUTH mechanism [initial-response] (RFC 5034 §4); ``=`` is an empty initial response."""
    words = ascii_words(argument)
    if isinstance(words, Reply):
        return replies.AUTH_SYNTAX
    if not 1 <= len(words) <= 2 or not _MECHANISM.fullmatch(words[0]):
        return replies.AUTH_SYNTAX
    mechanism = words[0].upper()
    if len(words) == 1:
        return Auth(mechanism, None)
    if words[1] == "=":
        return Auth(mechanism, b"")
    decoded = decode_base64(words[1])
    if not decoded:  # invalid, or an empty response not written as "="
        return replies.AUTH_INVALID_BASE64
    return Auth(mechanism, decoded)


def parse_sasl_response(line: bytes) -> Event:
    """A client line inside the AUTH exchange: ``*`` cancels, else strict base64."""
    if line == b"*":
        return AuthAbort()
    decoded = decode_base64(line.decode("latin-1"))
    if decoded is None:
        return Invalid(replies.AUTH_INVALID_BASE64)
    return AuthResponse(decoded)
