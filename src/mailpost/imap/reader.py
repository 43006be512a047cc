"""Framing: bounded CRLF lines and the literal markers at their ends.

Theory of operation
-------------------
An IMAP command is one or more *lines*, each possibly ending with a literal announcement
(RFC 9051 §4.3, RFC 7888 §3): ``{n}`` (synchronising), ``{n+}`` (non-synchronising) or
``~{n}`` / ``~{n+}`` (``literal8``, RFC 3516 §7 and RFC 4466). The literal's octets follow
the CRLF and are *not* line-structured; the command then continues with another line.

:class:`LineReader` cuts lines off the front of the receive buffer. It remembers how far it
has already searched, so a line arriving one octet at a time costs linear time, and it never
holds more than the current limit: when ``limit`` octets are buffered without an LF it drops
them, keeps discarding up to the next LF, and only then reports ``TOO_LONG`` - with the first
64 octets (for the tag) and the last 32 (for a literal marker) of the dropped line, so the
caller can still answer the right tag and skip a literal that follows (security catalogue I5).
A line ending in a bare LF is reported as ``BARE_LF``: RFC 9051 §2.2 requires CRLF.

:func:`find_literal_marker` decides whether a line ends with a literal marker. RFC 7888 §3
says the receiver "MUST check the end of every received line", but the marker only counts
outside a quoted string, so the check first verifies that the line's quotes are balanced
(``"abc {3}`` is an unterminated quoted string, not a literal). A size above ``number64``
(RFC 9051 §9) is reported as :class:`BadMarker` because the octets cannot be accounted for.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

MAX_NUMBER64 = 2**63 - 1
HEAD = 64
TAIL = 32

_MARKER = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")
# Everything outside quoted strings, and whole quoted strings; stops at an unterminated one.
_BALANCED = re.compile(rb'(?:[^"]++|"(?:[^"\\]++|\\.)*+")*+')


class LineStatus(enum.Enum):
    NEED_DATA = enum.auto()
    LINE = enum.auto()
    TOO_LONG = enum.auto()
    BARE_LF = enum.auto()


@dataclass(frozen=True, slots=True)
class LiteralMarker:
    """A literal announced at the end of a line; ``start`` is where the marker begins."""

    size: int
    synchronizing: bool
    binary: bool
    start: int


@dataclass(frozen=True, slots=True)
class BadMarker:
    """A literal marker whose size does not fit ``number64``."""

    synchronizing: bool
    start: int


class LineReader:
    """Splits lines off a shared ``bytearray``; see the module docstring."""

    __slots__ = ("_head", "_scanned", "_tail", "discarding")

    def __init__(self) -> None:
        self.discarding = False
        self._scanned = 0
        self._head = b""
        self._tail = b""

    def read(self, buf: bytearray, limit: int) -> tuple[LineStatus, bytes]:
        """Take one line (without its CRLF) of at most ``limit`` octets from ``buf``.

        For ``TOO_LONG`` the returned bytes summarise the dropped line: the first
        :data:`HEAD` octets, then the last :data:`TAIL` (see :meth:`split_summary`).
        """
        if self.discarding:
            return self._skip(buf)
        newline = buf.find(b"\n", self._scanned)
        if newline < 0:
            if len(buf) > limit + 1:  # content plus a possible CR already exceeds the limit
                self._start_discarding(buf)
            else:
                self._scanned = len(buf)
            return LineStatus.NEED_DATA, b""
        self._scanned = 0
        if newline > limit + 1:
            summary = self._summary(bytes(buf[:HEAD]), bytes(buf[max(0, newline - TAIL) : newline]))
            del buf[: newline + 1]
            return LineStatus.TOO_LONG, summary
        line = bytes(buf[:newline])
        del buf[: newline + 1]
        if not line.endswith(b"\r"):
            return LineStatus.BARE_LF, line
        return LineStatus.LINE, line[:-1]

    def drop_discarded(self, buf: bytearray) -> None:
        """While discarding an over-long line, drop input as it arrives so it is never held."""
        if self.discarding and buf.find(b"\n") < 0:
            self._tail = (self._tail + bytes(buf[-TAIL:]))[-TAIL:]
            buf.clear()

    @staticmethod
    def split_summary(summary: bytes) -> tuple[bytes, bytes]:
        """(head, tail) of a ``TOO_LONG`` summary."""
        return summary[:HEAD], summary[HEAD:]

    def _start_discarding(self, buf: bytearray) -> None:
        self.discarding = True
        self._scanned = 0
        self._head = bytes(buf[:HEAD])
        self._tail = bytes(buf[-TAIL:])
        buf.clear()

    def _skip(self, buf: bytearray) -> tuple[LineStatus, bytes]:
        newline = buf.find(b"\n")
        if newline < 0:
            self._tail = (self._tail + bytes(buf[-TAIL:]))[-TAIL:]
            buf.clear()
            return LineStatus.NEED_DATA, b""
        tail = (self._tail + bytes(buf[:newline]))[-TAIL:]
        del buf[: newline + 1]
        self.discarding = False
        return LineStatus.TOO_LONG, self._summary(self._head, tail)

    @staticmethod
    def _summary(head: bytes, tail: bytes) -> bytes:
        return head.ljust(HEAD, b" ") + tail.removesuffix(b"\r")


def find_literal_marker(line: bytes) -> LiteralMarker | BadMarker | None:
    """The literal marker ending ``line`` outside any quoted string, if there is one."""
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{")
    if start > 0 and line[start - 1 : start] == b"~":
        start -= 1
    found = _MARKER.match(line, start) if start >= 0 else None
    if found is None or not _BALANCED.fullmatch(line):
        return None
    synchronizing = found.group(3) == b""
    digits = found.group(2).lstrip(b"0") or b"0"
    # Checking the length first also keeps int() away from its digit limit.
    if len(digits) > 19 or int(digits) > MAX_NUMBER64:
        return BadMarker(synchronizing, start)
    return LiteralMarker(int(digits), synchronizing, found.group(1) == b"~", start)
