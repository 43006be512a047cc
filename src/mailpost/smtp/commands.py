"""Command-line syntax: from one CRLF-stripped line to a verb and typed arguments.

Theory of operation
-------------------
This module knows the *syntax* of each command and nothing about the session
state; :mod:`mailpost.smtp.protocol` checks the *sequence* first and then
calls the parser of the verb. Every parser returns either an event or the
:class:`~mailpost.smtp.replies.Reply` that rejects the line.

:func:`split_command` applies the checks that hold for every line, in this
order:

1. control characters (NUL, CR, TAB ... and DEL) anywhere: ``501 5.5.2``
   (RFC 5321 §2.4: receivers "SHOULD reject such commands"; security
   catalogue S6);
2. an unknown verb: ``500 5.5.1``; a known but unimplemented one (TURN, ETRN,
   SEND ...): ``502 5.5.1``. Verbs are case-insensitive (RFC 5321 §2.4);
3. 8-bit octets: only MAIL and RCPT may carry them, as UTF-8 (RFC 6531 §3.3);
   whether the transaction allows them is decided by their parsers.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from mailpost.smtp import replies
from mailpost.smtp.address import AddressError, parse_path
from mailpost.smtp.events import Auth, Hello, MailFrom, RcptTo
from mailpost.smtp.params import ParamError, parse_mail_params, parse_rcpt_params
from mailpost.smtp.replies import Reply

IMPLEMENTED = frozenset(
    {
        "HELO",
        "EHLO",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "RSET",
        "NOOP",
        "QUIT",
        "VRFY",
        "EXPN",
        "HELP",
        "STARTTLS",
        "AUTH",
    }
)
NOT_IMPLEMENTED = frozenset({"TURN", "ATRN", "ETRN", "SEND", "SOML", "SAML"})
_EIGHT_BIT_VERBS = frozenset({"MAIL", "RCPT"})

_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_HOSTNAME = re.compile(r"[\x21-\x7e]+")
_MAIL_PREFIX = re.compile(r"FROM: *", re.IGNORECASE)
_RCPT_PREFIX = re.compile(r"TO: *", re.IGNORECASE)
_MECHANISM = re.compile(r"[A-Za-z0-9_-]{1,20}")  # RFC 4422 §3.1 sasl-mech
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_BDAT = re.compile(r"(\d{1,20})(?: +(LAST))? *", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CommandLine:
    """A command line that passed the checks common to all verbs."""

    verb: str
    argument: str


def split_command(line: bytes) -> CommandLine | Reply:
    """Split a line into an upper-case verb and its argument text."""
    if _CONTROL.search(line):
        return replies.INVALID_CHARACTER
    verb_bytes, _, rest = line.partition(b" ")
    verb = verb_bytes.decode("latin-1").upper()
    if verb not in IMPLEMENTED:
        return replies.NOT_IMPLEMENTED if verb in NOT_IMPLEMENTED else replies.UNKNOWN_COMMAND
    if rest.isascii():
        return CommandLine(verb, rest.decode("ascii"))
    if verb not in _EIGHT_BIT_VERBS:
        return replies.INVALID_CHARACTER
    try:
        return CommandLine(verb, rest.decode("utf-8"))
    except UnicodeDecodeError:
        return replies.INVALID_CHARACTER


def parse_hello(argument: str, *, extended: bool) -> Hello | Reply:
    """HELO/EHLO need exactly one printable token (RFC 5321 §4.1.1.1)."""
    hostname = argument.strip(" ")
    if not _HOSTNAME.fullmatch(hostname):
        return replies.INVALID_ARGUMENTS
    return Hello(hostname, extended)


def parse_mail(argument: str, *, max_size: int) -> MailFrom | Reply:
    """MAIL FROM:<reverse-path> [params] (RFC 5321 §4.1.1.2), tolerating a space after ':'."""
    prefix = _MAIL_PREFIX.match(argument)
    if prefix is None:
        return replies.BAD_SENDER_SYNTAX
    try:
        path, rest = parse_path(
            argument[prefix.end() :], allow_null=True, allow_postmaster=False, utf8=True
        )
        params = parse_mail_params(rest, max_size=max_size)
    except AddressError:
        return replies.BAD_SENDER_SYNTAX
    except ParamError as error:
        return error.reply
    if not path.address.isascii() and not params.smtputf8:
        return replies.NON_ASCII_SENDER
    return MailFrom(path.address, params, path)


def parse_rcpt(argument: str, *, utf8: bool) -> RcptTo | Reply:
    """RCPT TO:<forward-path> [params] (RFC 5321 §4.1.1.3); ``utf8``: MAIL had SMTPUTF8."""
    prefix = _RCPT_PREFIX.match(argument)
    if prefix is None:
        return replies.BAD_RECIPIENT_SYNTAX
    try:
        path, rest = parse_path(
            argument[prefix.end() :], allow_null=False, allow_postmaster=True, utf8=True
        )
        params = parse_rcpt_params(rest, utf8=utf8)
    except AddressError:
        return replies.BAD_RECIPIENT_SYNTAX
    except ParamError as error:
        return error.reply
    if not path.address.isascii() and not utf8:
        return replies.NON_ASCII_RECIPIENT
    return RcptTo(path.address, params, path)


def parse_auth(argument: str) -> Auth | Reply:
    """AUTH mechanism [initial-response] (RFC 4954 §4); "=" is an empty initial response."""
    words = argument.rstrip(" ").split(" ")
    if not 1 <= len(words) <= 2 or not _MECHANISM.fullmatch(words[0]):
        return replies.INVALID_ARGUMENTS
    if len(words) == 1:
        return Auth(words[0].upper(), None)
    if words[1] == "=":
        return Auth(words[0].upper(), b"")
    decoded = decode_base64(words[1])
    if not decoded:  # invalid, or empty (an empty response must be sent as "=")
        return replies.AUTH_INVALID_BASE64
    return Auth(words[0].upper(), decoded)


def decode_base64(text: str) -> bytes | None:
    """Strict base64 (RFC 4954 §4: reject any non-alphabet octet and misplaced '=')."""
    if not _BASE64.fullmatch(text):
        return None
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except binascii.Error:
        return None


def parse_bdat(argument: str) -> tuple[int, bool] | Reply:
    """BDAT chunk-size [LAST] (RFC 3030 §2)."""
    match = _BDAT.fullmatch(argument)
    if match is None:
        return replies.INVALID_ARGUMENTS
    return int(match.group(1)), match.group(2) is not None


def has_no_argument(argument: str) -> bool:
    """DATA, RSET, QUIT and STARTTLS take no argument (trailing spaces are tolerated)."""
    return not argument.strip(" ")
