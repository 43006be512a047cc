"""APPEND, parsed one message at a time while the message literals stream past.

Theory of operation
-------------------
With MULTIAPPEND (RFC 3502, generalised by RFC 4466) and the UTF8 data item (RFC 6855 §4)
the grammar is::

    append         = "APPEND" SP mailbox 1*append-message
    append-message = [SP flag-list] [SP date-time] SP append-data
    append-data    = literal / literal8 / "UTF8" SP "(" literal8 ")"

The message literals can be large (up to APPENDLIMIT, RFC 7889), so the protocol machine must
decide about each one *before* reading it, and must never hold it whole. The only other
literal an APPEND can contain is the mailbox name, and it can only come first. So:

* :func:`parse_header` parses the first fragments (``tag APPEND mailbox`` and the first
  message's options, up to the literal marker ending the fragment). If the marker ends the
  fragment where the mailbox should be, it answers :data:`NEED_MAILBOX_LITERAL`: that literal
  is small and is buffered like any other, then the header is parsed again, once.
* :func:`parse_continuation` parses each fragment that follows a message literal: ``)`` if
  the message was ``UTF8 (``, then either the end of the command or the next message's
  options and marker.

Both return a :class:`MessageSpec` (the options of the message whose literal comes next) or
raise :class:`~mailpost.imap.errors.ParseError`; ``parse_continuation`` returns None at the
end of the command.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from mailpost.imap.cursor import Cursor, Literal
from mailpost.imap.errors import ParseError
from mailpost.imap.mailboxargs import mailbox
from mailpost.imap.parser import ParseContext, read_flag, read_tag


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """The options of one APPEND message; ``utf8`` means the literal must be ``literal8``
    and be followed by ``)``."""

    flags: tuple[str, ...]
    internal_date: dt.datetime | None
    utf8: bool


@dataclass(frozen=True, slots=True)
class Header:
    tag: str
    mailbox: str
    first: MessageSpec


NEED_MAILBOX_LITERAL: Final = "need-mailbox-literal"


def parse_header(
    fragments: Sequence[bytes], literals: Sequence[Literal], ctx: ParseContext, *, marker: bool
) -> Header | str:
    """Parse ``tag APPEND mailbox <first message options>`` from the fragments so far.

    ``marker`` tells whether the last fragment ended with a literal marker (already cut off).
    """
    cur = Cursor(fragments, literals, max_depth=ctx.max_depth)
    tag = read_tag(cur)
    cur.sp()
    if cur.keyword() != "APPEND":
        raise ParseError("Expected APPEND")
    cur.sp()
    if cur.at_end() and marker:
        return NEED_MAILBOX_LITERAL
    name = mailbox(cur, utf8_mode=ctx.utf8_mode)
    return Header(tag, name, _message_spec(cur, marker=marker))


def parse_continuation(fragment: bytes, *, marker: bool, after_utf8: bool) -> MessageSpec | None:
    """Parse the fragment after a message literal; None when the command ends there."""
    cur = Cursor((fragment,), ())
    if after_utf8:
        cur.expect(b")", "')' after the UTF8 literal")
    if cur.at_end() and not marker:
        return None
    return _message_spec(cur, marker=marker)


def _message_spec(cur: Cursor, *, marker: bool) -> MessageSpec:
    """``SP [flag-list SP] [date-time SP] ["UTF8" SP "("]`` then the marker at the end."""
    cur.sp()
    flags: tuple[str, ...] = ()
    internal_date = None
    if cur.peek() == ord("("):
        flags = _flag_list(cur)
        cur.sp()
    if cur.peek() == ord('"'):
        internal_date = cur.date_time()
        cur.sp()
    utf8 = cur.accept_keyword(b"UTF8")
    if utf8:
        cur.sp()
        cur.expect(b"(")
    if not cur.at_end() or not marker:
        raise ParseError("Expected the message literal")
    return MessageSpec(flags, internal_date, utf8)


def _flag_list(cur: Cursor) -> tuple[str, ...]:
    cur.expect(b"(")
    flags: list[str] = []
    while not cur.accept(b")"):
        if flags:
            cur.sp()
        flags.append(read_flag(cur))
    return tuple(dict.fromkeys(flags))
