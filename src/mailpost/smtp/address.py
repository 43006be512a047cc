"""RFC 5321 Path / Reverse-path parsing (§4.1.2), with RFC 6531 UTF-8 extensions.

Theory of operation
-------------------
:func:`parse_path` takes the text after ``MAIL FROM:`` or ``RCPT TO:`` and
splits it into a :class:`Path` and the remaining text (the ESMTP parameters).
It is a small hand-written scanner rather than one big regular expression so
that a quoted local part may contain ``>`` or spaces, and so that every
failure names its reason.

What is accepted (RFC 5321 §4.1.2, §4.1.3):

* ``<>`` (only where the caller allows the null reverse-path);
* ``<local@domain>`` where local is a Dot-string or a Quoted-string and domain
  is a Domain or an address literal (``[1.2.3.4]``, ``[IPv6:...]``, or a
  General-address-literal ``[tag:content]``);
* an optional source route ``<@a,@b:local@domain>``: receivers "MUST
  recognize source route syntax" (RFC 5321 §4.1.1.3). It is parsed and
  reported so that relay policy can refuse it (security catalogue R1);
* ``<postmaster>`` without a domain, for RCPT only (RFC 5321 §4.5.1);
* the same without angle brackets (``MAIL FROM:a@b``), a common client bug
  that servers tolerate.

With ``utf8=True`` (the transaction carries SMTPUTF8) the atext, qtext and
sub-domain productions are extended with non-ASCII characters (RFC 6531 §3.3).
Length limits are those of RFC 5321 §4.5.3.1 counted in UTF-8 octets: local
part 64, domain 255, path 256 including the angle brackets.

The normalised address string (:attr:`Path.address`) is ``local@domain`` with
the domain lower-cased, the local part kept as the sender spelled it except
that needless quoting is removed: RFC 5321 §4.1.2 says a quoted form that
could be written unquoted MUST be treated as equivalent to it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MAX_LOCAL_PART = 64
MAX_DOMAIN = 255
MAX_PATH = 256
MAX_LABEL = 63

# RFC 6531 §3.3 UTF8-non-ascii, minus the C1 control characters (security catalogue S6).
_NON_ASCII = "\u00a0-\U0010ffff"
_ATEXT = "A-Za-z0-9!#$%&'*+\\-/=?^_`{|}~"
_DOT_STRING_ASCII = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_DOT_STRING_UTF8 = re.compile(rf"[{_ATEXT}{_NON_ASCII}]+(?:\.[{_ATEXT}{_NON_ASCII}]+)*")
_LABEL_ASCII = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_LET_DIG_UTF8 = f"A-Za-z0-9{_NON_ASCII}"
_LABEL_UTF8 = re.compile(rf"[{_LET_DIG_UTF8}](?:[{_LET_DIG_UTF8}-]*[{_LET_DIG_UTF8}])?")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_GENERAL_LITERAL = re.compile(r"([A-Za-z0-9-]*[A-Za-z0-9]):([\x21-\x5a\x5e-\x7e]+)")
_ROUTE_DOMAIN = re.compile(r"@([^,:@]+)")


class AddressError(ValueError):
    """The text is not a valid RFC 5321 path; the message says why."""


@dataclass(frozen=True, slots=True)
class Path:
    """A parsed reverse-path or forward-path.

    ``local_part`` is the unquoted value (``a b`` for ``"a b"@x``); ``quoted``
    records that the sender used the Quoted-string form. The null path ``<>``
    has an empty local part and domain; ``<postmaster>`` has an empty domain.
    """

    local_part: str
    domain: str
    source_route: tuple[str, ...] = ()
    quoted: bool = False

    @property
    def is_null(self) -> bool:
        return not self.local_part and not self.domain

    @property
    def address(self) -> str:
        """The normalised ``local@domain`` string ("" for ``<>``)."""
        if self.is_null:
            return ""
        local = quote_local_part(self.local_part)
        return f"{local}@{self.domain}" if self.domain else local

    @property
    def routing_trick(self) -> bool:
        """True when the path could steer relaying elsewhere (security catalogue R1).

        RFC 2505 §2.1: the '%' hack, UUCP '!' paths, a quoted '@' and source routes
        must all be refused or resolved before a relay decision.
        """
        return bool(self.source_route) or any(c in self.local_part for c in "%!@")


NULL_PATH = Path("", "")


def quote_local_part(local: str) -> str:
    """Render a local part, quoting it only when it is not a valid Dot-string."""
    if _DOT_STRING_UTF8.fullmatch(local):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def parse_path(
    text: str, *, allow_null: bool, allow_postmaster: bool, utf8: bool
) -> tuple[Path, str]:
    """Parse a path at the start of ``text``; return it and the text after it.

    Raises :class:`AddressError` when the path is malformed.
    """
    if text.startswith("<"):
        inner, rest = _split_bracketed(text)
        wire_length = len(inner.encode()) + 2
    else:
        inner = text.partition(" ")[0]
        if not inner:
            raise AddressError("missing path")  # the null path must be written "<>"
        rest = text[len(inner) :]
        wire_length = len(inner.encode()) + 2
    if rest and not rest.startswith(" "):
        raise AddressError("garbage after the path")
    if wire_length > MAX_PATH:
        raise AddressError("path too long")
    return _parse_inner(inner, allow_null, allow_postmaster, utf8), rest.lstrip(" ")


def _split_bracketed(text: str) -> tuple[str, str]:
    """Find the ``>`` closing the path, skipping over a quoted local part."""
    in_quote = False
    index = 1
    while index < len(text):
        char = text[index]
        if in_quote and char == "\\":
            index += 2
            continue
        if char == '"':
            in_quote = not in_quote
        elif char == ">" and not in_quote:
            return text[1:index], text[index + 1 :]
        index += 1
    raise AddressError("missing '>'")


def _parse_inner(inner: str, allow_null: bool, allow_postmaster: bool, utf8: bool) -> Path:
    if not inner:
        if allow_null:
            return NULL_PATH
        raise AddressError("empty path")
    if allow_postmaster and inner.lower() == "postmaster":
        return Path("postmaster", "")
    route: tuple[str, ...] = ()
    if inner.startswith("@"):
        route, inner = _parse_source_route(inner, utf8)
    local, quoted, domain = _split_mailbox(inner, utf8)
    return Path(local, domain, route, quoted)


def _parse_source_route(inner: str, utf8: bool) -> tuple[tuple[str, ...], str]:
    """Parse ``@a,@b:`` (RFC 5321 A-d-l) and return the route and the mailbox after it."""
    route_text, colon, mailbox = inner.partition(":")
    if not colon:
        raise AddressError("source route without ':'")
    hops = route_text.split(",")
    domains = []
    for hop in hops:
        match = _ROUTE_DOMAIN.fullmatch(hop)
        if match is None:
            raise AddressError("malformed source route")
        domains.append(parse_domain(match.group(1), utf8=utf8, allow_literal=False))
    return tuple(domains), mailbox


def _split_mailbox(mailbox: str, utf8: bool) -> tuple[str, bool, str]:
    """Split ``local@domain`` into (unquoted local part, quoted?, normalised domain)."""
    if mailbox.startswith('"'):
        end = _quoted_end(mailbox)
        wire_local, domain_text = mailbox[:end], mailbox[end + 1 :]
        if mailbox[end : end + 1] != "@":
            raise AddressError("missing '@' after quoted local part")
        local, quoted = _parse_quoted(mailbox, utf8), True
    else:
        wire_local, at, domain_text = mailbox.rpartition("@")
        if not at:
            raise AddressError("missing '@'")
        pattern = _DOT_STRING_UTF8 if utf8 else _DOT_STRING_ASCII
        if not pattern.fullmatch(wire_local):
            raise AddressError("invalid local part")
        local, quoted = wire_local, False
    if len(wire_local.encode()) > MAX_LOCAL_PART:
        raise AddressError("local part too long")
    return local, quoted, parse_domain(domain_text, utf8=utf8, allow_literal=True)


def _quoted_end(text: str) -> int:
    """Index just past the closing quote of the Quoted-string starting text."""
    index = 1
    while index < len(text):
        if text[index] == "\\":
            index += 2
        elif text[index] == '"':
            return index + 1
        else:
            index += 1
    raise AddressError("unterminated quoted local part")


def _parse_quoted(text: str, utf8: bool) -> str:
    """Unquote a Quoted-string (RFC 5321 qtextSMTP / quoted-pairSMTP)."""
    end = _quoted_end(text)
    out: list[str] = []
    index = 1
    while index < end - 1:
        char = text[index]
        if char == "\\":
            char = text[index + 1]
            if not " " <= char <= "~":
                raise AddressError("invalid quoted-pair")
            index += 2
        else:
            if not _is_qtext(char, utf8):
                raise AddressError("invalid character in quoted local part")
            index += 1
        out.append(char)
    return "".join(out)


def _is_qtext(char: str, utf8: bool) -> bool:
    code = ord(char)
    if code >= 0x80:
        return utf8 and code >= 0xA0
    return 32 <= code <= 126 and char not in '"\\'


def parse_domain(text: str, *, utf8: bool, allow_literal: bool) -> str:
    """Validate a Domain or address literal and return its normalised form."""
    if allow_literal and text.startswith("["):
        return _parse_address_literal(text)
    if not text or len(text.encode()) > MAX_DOMAIN:
        raise AddressError("invalid domain length")
    pattern = _LABEL_UTF8 if utf8 else _LABEL_ASCII
    for label in text.split("."):
        if len(label.encode()) > MAX_LABEL or not pattern.fullmatch(label):
            raise AddressError("invalid domain")
    return text.lower()


def _parse_address_literal(text: str) -> str:
    """RFC 5321 §4.1.3 address literals: IPv4, ``IPv6:`` and General-address-literal."""
    if not text.endswith("]") or len(text) > MAX_DOMAIN:
        raise AddressError("malformed address literal")
    content = text[1:-1]
    if _IPV4.fullmatch(content):
        try:
            return f"[{ipaddress.IPv4Address(content)}]"
        except ValueError:
            raise AddressError("invalid IPv4 address literal") from None
    if content[:5].lower() == "ipv6:":
        if "%" in content:  # the ipaddress module accepts zone ids; RFC 5321 does not
            raise AddressError("invalid IPv6 address literal")
        try:
            return f"[IPv6:{ipaddress.IPv6Address(content[5:]).compressed}]"
        except ValueError:
            raise AddressError("invalid IPv6 address literal") from None
    match = _GENERAL_LITERAL.fullmatch(content)
    if match is None:
        raise AddressError("malformed address literal")
    return f"[{match.group(1)}:{match.group(2)}]"
