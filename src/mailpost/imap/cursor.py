"""The lexical layer: a cursor over one command's line fragments and literals.

Theory of operation
-------------------
The reader (:mod:`mailpost.imap.reader`) delivers a command as alternating pieces: a line
fragment, the literal announced at its end, the next fragment, and so on. The literal
markers (``{5}``, ``{5+}``, ``~{5}``) are already cut off the fragments, so the grammar sees
"end of this fragment's text" followed by a :class:`Literal` token. A :class:`Cursor` walks
these pieces and offers the RFC 9051 §9 lexical productions the grammar is made of: ``SP``,
``atom``, ``astring``, ``string``, ``nstring``, the number types, dates and ``date-time``.

The rules that matter for safety live here, once:

* NUL is refused in quoted strings and in literals (RFC 9051 §9 note 3 and ``CHAR8``;
  security catalogue I8, Dovecot CVE-2019-11500). Only ``literal8`` (``~{n}``) may carry
  NUL, and only where the caller asks for it (APPEND data, RFC 3516 §4.4).
* Quoted strings may hold UTF-8 (RFC 9051 §4.3.1 says IMAP4rev2 servers MUST accept it;
  RFC 6855 §3 says ill-formed UTF-8 is answered with BAD), never other 8-bit octets.
* Numbers follow their grammar exactly: ``number`` and ``nz-number`` fit 32 bits,
  ``number64`` 63 bits, and ``nz-number`` has no leading zero (RFC 9051 §9).
* Parenthesis depth is counted with :meth:`enter`/:meth:`leave` against ``max_depth``, so
  that no grammar rule can be driven into unbounded recursion (security catalogue I4).

Every token is recognised with an anchored regular expression on the current fragment, so
the cost of a command is linear in its length. All errors raise
:class:`~mailpost.imap.errors.ParseError`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailpost.imap.errors import ParseError
from mailpost.imap.seqset import TOKEN as _SEQSET_TOKEN
from mailpost.imap.seqset import SequenceSet

MAX_NUMBER = 2**32 - 1
MAX_NUMBER64 = 2**63 - 1

# ATOM-CHAR: any CHAR except atom-specials = "(" / ")" / "{" / SP / CTL / "%" / "*" / DQUOTE
# / "\" / "]" (RFC 9051 §9). ASTRING-CHAR adds "]"; list-char adds "%" and "*"; a tag is
# 1*<any ASTRING-CHAR except "+">.
ATOM = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]+")
ASTRING_ATOM = re.compile(rb"[\x21\x23\x24\x26\x27\x2b-\x5b\x5d-\x7a\x7c-\x7e]+")
LIST_ATOM = re.compile(rb"[\x21\x23-\x27\x2a-\x5b\x5d-\x7a\x7c-\x7e]+")
TAG = re.compile(rb"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]+")
_QUOTED = re.compile(rb'"((?:[^"\\\x00\r\n]++|\\["\\])*+)"')
_ESCAPE = re.compile(rb'\\(["\\])')
_DIGITS = re.compile(rb"[0-9]+")
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(
    rb'"([ 0-9][0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{4})"'
)
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True, slots=True)
class Literal:
    """The octets of one literal; ``binary`` for ``literal8`` (``~{n}``, RFC 3516 §7)."""

    data: bytes
    binary: bool = False


class Cursor:
    """Walks ``fragments[0] literal[0] fragments[1] ... fragments[-1]``."""

    __slots__ = ("_depth", "_fragments", "_index", "_literals", "_pos", "max_depth")

    def __init__(
        self, fragments: Sequence[bytes], literals: Sequence[Literal], *, max_depth: int = 100
    ) -> None:
        if len(fragments) != len(literals) + 1:
            raise ValueError("a command has one more fragment than literals")
        self._fragments = fragments
        self._literals = literals
        self._index = 0
        self._pos = 0
        self._depth = 0
        self.max_depth = max_depth

    # --- position -------------------------------------------------------------------------

    @property
    def _text(self) -> bytes:
        return self._fragments[self._index]

    def peek(self) -> int:
        """The next octet of the current fragment, or -1 at its end."""
        text = self._text
        return text[self._pos] if self._pos < len(text) else -1

    def at_literal(self) -> bool:
        return self._pos == len(self._text) and self._index < len(self._literals)

    def at_end(self) -> bool:
        return self._pos == len(self._text) and self._index == len(self._literals)

    def expect_end(self) -> None:
        if not self.at_end():
            raise ParseError("Unexpected extra arguments")

    def error(self, text: str) -> ParseError:
        return ParseError(text)

    def match(self, pattern: re.Pattern[bytes]) -> re.Match[bytes] | None:
        """Match ``pattern`` at the cursor inside the current fragment; advance on success."""
        found = pattern.match(self._text, self._pos)
        if found is not None:
            self._pos = found.end()
        return found

    def accept(self, octet: bytes) -> bool:
        if self._text.startswith(octet, self._pos):
            self._pos += len(octet)
            return True
        return False

    def expect(self, octet: bytes, what: str | None = None) -> None:
        if not self.accept(octet):
            raise ParseError(f"Expected {what or repr(octet.decode())}")

    def sp(self) -> None:
        """Exactly one SP (RFC 9051 §9 note 2: never a TAB, never two)."""
        if not self.accept(b" "):
            raise ParseError("Missing or invalid argument separator")

    def accept_keyword(self, word: bytes) -> bool:
        """Accept ``word`` (upper case given) case-insensitively if a delimiter follows."""
        end = self._pos + len(word)
        if self._text[self._pos : end].upper() != word:
            return False
        if end < len(self._text) and ATOM.match(self._text, end) is not None:
            return False  # a longer atom, e.g. "ALLx"
        self._pos = end
        return True

    # --- nesting --------------------------------------------------------------------------

    def enter(self) -> None:
        """Count one more level of nesting; refuse beyond ``max_depth`` (catalogue I4)."""
        self._depth += 1
        if self._depth > self.max_depth:
            raise ParseError("Too deeply nested", code="LIMIT")

    def leave(self) -> None:
        self._depth -= 1

    def open_list(self) -> None:
        self.expect(b"(")
        self.enter()

    def close_list(self) -> None:
        self.expect(b")")
        self.leave()

    # --- tokens ---------------------------------------------------------------------------

    def atom(self) -> str:
        found = self.match(ATOM)
        if found is None:
            raise ParseError("Expected an atom")
        return found.group().decode("ascii")

    def keyword(self) -> str:
        """An atom, upper-cased (command names and keywords are case-insensitive)."""
        return self.atom().upper()

    def astring(self) -> bytes:
        if self.peek() == 0x22:
            return self.quoted()
        if self.at_literal():
            return self.literal()
        found = self.match(ASTRING_ATOM)
        if found is None:
            raise ParseError("Expected an atom or a string")
        return found.group()

    def list_mailbox(self) -> bytes:
        """``list-mailbox = 1*list-char / string`` (a LIST pattern, with wildcards)."""
        if self.peek() == 0x22 or self.at_literal():
            return self.string()
        found = self.match(LIST_ATOM)
        if found is None:
            raise ParseError("Expected a mailbox pattern")
        return found.group()

    def string(self) -> bytes:
        if self.peek() == 0x22:
            return self.quoted()
        if self.at_literal():
            return self.literal()
        raise ParseError("Expected a quoted string or a literal")

    def nstring(self) -> bytes | None:
        if self.accept_keyword(b"NIL"):
            return None
        return self.string()

    def quoted(self) -> bytes:
        found = self.match(_QUOTED)
        if found is None:
            raise ParseError(self._quoted_problem())
        value = _ESCAPE.sub(rb"\1", found.group(1))
        if not value.isascii():
            _check_utf8(value)
        return value

    def _quoted_problem(self) -> str:
        rest = self._text[self._pos :]
        if b"\x00" in rest:
            return "NUL is not allowed in a quoted string"
        return "Invalid or unterminated quoted string"

    def literal(self, *, allow_binary: bool = False) -> bytes:
        """The literal that follows the current fragment; NUL only in ``literal8`` when
        ``allow_binary`` (RFC 3516 §4.4)."""
        if not self.at_literal():
            raise ParseError("Expected a literal")
        literal = self._literals[self._index]
        if literal.binary and not allow_binary:
            raise ParseError("literal8 is not allowed here")
        if not literal.binary and b"\x00" in literal.data:
            raise ParseError("NUL is not allowed in a literal")
        self._index += 1
        self._pos = 0
        return literal.data

    def sequence_set(self) -> SequenceSet:
        """``sequence-set``, including ``$`` (RFC 5182); numbers are checked for 32 bits."""
        found = self.match(_SEQSET_TOKEN)
        if found is None:
            raise ParseError("Expected a sequence set")
        try:
            return SequenceSet.parse(found.group().decode("ascii"))
        except ValueError as exc:
            raise ParseError(f"Invalid sequence set: {exc}") from None

    def number(self, *, limit: int = MAX_NUMBER, nonzero: bool = False) -> int:
        """``number`` (32-bit), ``nz-number`` (``nonzero``) or ``number64`` (``limit``)."""
        found = self.match(_DIGITS)
        if found is None:
            raise ParseError("Expected a number")
        digits = found.group()
        if nonzero and digits.startswith(b"0"):
            raise ParseError("Expected a non-zero number without leading zeros")
        if len(digits) > 20 or int(digits) > limit:
            raise ParseError("Number out of range")
        return int(digits)

    def number64(self, *, nonzero: bool = False) -> int:
        return self.number(limit=MAX_NUMBER64, nonzero=nonzero)

    def date(self) -> dt.date:
        """``date = date-text / DQUOTE date-text DQUOTE`` (RFC 9051 §9)."""
        quoted = self.accept(b'"')
        found = self.match(_DATE)
        if found is None or (quoted and not self.accept(b'"')):
            raise ParseError("Invalid date (expected d-Mon-yyyy)")
        day, month, year = found.groups()
        return _make_date(int(year), _month(month), int(day))

    def date_time(self) -> dt.datetime:
        """``date-time``: ``"dd-Mon-yyyy hh:mm:ss +zzzz"`` (RFC 9051 §9)."""
        found = self.match(_DATE_TIME)
        if found is None:
            raise ParseError("Invalid date-time")
        day, month, year, hour, minute, second, sign, zone = found.groups()
        date = _make_date(int(year), _month(month), int(day.strip()))
        zone_hours, zone_minutes = int(zone[:2]), int(zone[2:])
        if max(zone_hours, int(hour)) > 23 or max(zone_minutes, int(minute)) > 59:
            raise ParseError("Invalid date-time")
        if int(second) > 60:
            raise ParseError("Invalid date-time")
        offset = dt.timedelta(hours=zone_hours, minutes=zone_minutes)
        tz = dt.timezone(-offset if sign == b"-" else offset)
        # Second 60 (a leap second) is folded into 59: datetime cannot hold it.
        return dt.datetime.combine(date, dt.time(int(hour), int(minute), min(int(second), 59)), tz)


def _month(name: bytes) -> int:
    try:
        return MONTHS.index(name.decode("ascii").upper()) + 1
    except ValueError:
        raise ParseError("Invalid month name") from None


def _make_date(year: int, month: int, day: int) -> dt.date:
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise ParseError("No such date") from None


def _check_utf8(value: bytes) -> None:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("Invalid UTF-8 in quoted string") from None


def utf8(value: bytes, what: str = "string") -> str:
    """Decode a string argument as UTF-8, refusing ill-formed input (RFC 6855 §3)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(f"Invalid UTF-8 in {what}") from None


def render_astring(value: str | bytes) -> bytes:
    """Client-direction ``astring``: an atom when possible, else a quoted string, else a
    non-synchronising literal (used to build commands in tests and logs)."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if raw and ASTRING_ATOM.fullmatch(raw) and raw.upper() != b"NIL":
        return raw
    if not any(octet in raw for octet in (b"\r", b"\n", b"\x00")) and _is_utf8(raw):
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d+}\r\n" % len(raw) + raw


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
