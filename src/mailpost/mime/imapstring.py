"""IMAP string rendering: NIL, quoted strings and literals.

Theory of operation
-------------------
Every string this package puts into a BODYSTRUCTURE or ENVELOPE goes through :func:`string` or
:func:`nstring`. Values arrive either as ``bytes`` or as ``str`` whose undecodable octets are
carried as lone surrogates (the ``surrogateescape`` convention used throughout
:mod:`mailpost.mime`); :func:`to_octets` turns both into the exact octets of the message.

The choice between the two string forms (RFC 9051 §4.3, formal syntax §9):

* ``quoted = DQUOTE *QUOTED-CHAR DQUOTE``: ``QUOTED-CHAR`` is any ``TEXT-CHAR`` (``CHAR`` minus
  CR and LF, and ``CHAR`` excludes NUL) with ``"`` and ``\\`` escaped by a backslash. UTF-8
  sequences are allowed in a quoted string only when the client may receive them: always in
  IMAP4rev2, after ``ENABLE UTF8=ACCEPT`` in IMAP4rev1 (RFC 6855 §3: "The IMAP server MUST NOT
  send UTF-8 in quoted-strings to the client unless the client has indicated support"). The
  caller says which with ``utf8=True``; even then the octets must be well-formed UTF-8.
* ``literal = "{" number64 "}" CRLF *CHAR8``: anything else, that is 8-bit data when UTF-8 is
  not allowed (or is malformed), and any value containing CR or LF. ``CHAR8`` is ``%x01-ff``:
  a literal cannot carry NUL either, so a NUL octet is replaced by 0x80, the same substitution
  Dovecot makes for its literals. (Only BINARY's ``literal8`` may carry NUL; that is the FETCH
  layer's business, not this module's.)

We never convert 8-bit header text to RFC 2047 encoded words: RFC 2047 §5 forbids encoded words
inside quoted strings and parameter values, and an ENVELOPE must report what the header says.
"""

from __future__ import annotations

import re

NIL = b"NIL"

# Octets that rule out the quoted form in every mode: NUL, CR, LF (not TEXT-CHAR), and 8-bit.
_NOT_PLAIN_QUOTABLE = re.compile(rb"[\x00\r\n\x80-\xff]")
_NEVER_QUOTABLE = re.compile(rb"[\x00\r\n]")


def to_octets(value: str | bytes) -> bytes:
    """The message octets behind ``value`` (``str`` is UTF-8, lone surrogates are raw octets)."""
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogateescape")


def is_quotable(octets: bytes, *, utf8: bool = False) -> bool:
    """True when ``octets`` may be sent as an RFC 9051 ``quoted`` string."""
    if _NOT_PLAIN_QUOTABLE.search(octets) is None:
        return True
    if not utf8 or _NEVER_QUOTABLE.search(octets) is not None:
        return False
    try:
        octets.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def quoted(octets: bytes) -> bytes:
    """``octets`` as a quoted string; the caller has checked :func:`is_quotable`."""
    return b'"' + octets.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(octets: bytes) -> bytes:
    """``octets`` as a synchronising literal, NUL replaced by 0x80 (``CHAR8`` excludes NUL)."""
    octets = octets.replace(b"\x00", b"\x80")
    return b"{%d}\r\n" % len(octets) + octets


def string(value: str | bytes, *, utf8: bool = False) -> bytes:
    """Render ``value`` as an IMAP ``string``: quoted when it can be, otherwise a literal."""
    octets = to_octets(value)
    if is_quotable(octets, utf8=utf8):
        return quoted(octets)
    return literal(octets)


def nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    """Render ``value`` as an IMAP ``nstring``: ``NIL`` for None, else :func:`string`."""
    if value is None:
        return NIL
    return string(value, utf8=utf8)
