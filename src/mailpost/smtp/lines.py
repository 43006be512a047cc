"""Bounded command-line framing for the SMTP server core.

Theory of operation
-------------------
:class:`LineReader` cuts CRLF-terminated lines off the front of the receive
buffer (RFC 5321 §2.3.8). It never lets a line grow the buffer past its
limit: as soon as ``limit`` octets are buffered without an LF, the reader
switches to *discarding* mode, drops what it holds, and keeps dropping input
up to the next LF; only then does it report :attr:`LineStatus.TOO_LONG`, so
the reply (500 5.5.2) comes once, after the whole over-long line is gone
(security catalogue S5).

A line ended by a bare LF is reported as :attr:`LineStatus.BARE_LF` and not
returned: RFC 5321 §2.3.8 says bare LFs are not line endings, and executing
such a "line" is what enables command smuggling.

AUTH lines get a larger limit: RFC 4954 §4 says 12288 octets is a sufficient
line length for the AUTH command and for SASL responses, whatever the normal
command limit is. The reader applies that limit to a SASL response line
(``auth=True``) and to any line whose first five octets are ``AUTH ``; both
decisions depend only on bytes already seen, so splitting the input
differently never changes the outcome.
"""

from __future__ import annotations

import enum

AUTH_LINE_LIMIT = 12288 + 2  # RFC 4954 §4, plus the CRLF


class LineStatus(enum.Enum):
    NEED_DATA = enum.auto()
    LINE = enum.auto()
    TOO_LONG = enum.auto()
    BARE_LF = enum.auto()


class LineReader:
    """Splits command lines off a shared ``bytearray``; see the module docstring."""

    __slots__ = ("_discarding_auth", "discarding", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.discarding = False
        self._discarding_auth = False

    def read(self, buf: bytearray, *, auth: bool = False) -> tuple[LineStatus, bytes, bool]:
        """Take one line from ``buf``.

        Returns the status, the line without its CRLF (for ``LINE``), and whether
        the AUTH limit applied to it (so the caller can choose 500 5.5.6).
        """
        if self.discarding:
            return self._skip_rest_of_long_line(buf)
        limit = self._limit_for(buf, auth)
        newline = buf.find(b"\n", 0, limit)
        if newline < 0:
            if len(buf) >= limit:
                self.discarding = True
                self._discarding_auth = limit > self.limit
                return self._skip_rest_of_long_line(buf)
            return LineStatus.NEED_DATA, b"", False
        line = bytes(buf[:newline])
        del buf[: newline + 1]
        if not line.endswith(b"\r"):
            return LineStatus.BARE_LF, b"", limit > self.limit
        return LineStatus.LINE, line[:-1], limit > self.limit

    def drop_discarded(self, buf: bytearray) -> None:
        """While discarding, drop input as it arrives so it is never held."""
        if self.discarding:
            newline = buf.find(b"\n")
            if newline < 0:
                buf.clear()

    def _limit_for(self, buf: bytearray, auth: bool) -> int:
        if auth or buf[:5].upper() == b"AUTH ":
            return max(self.limit, AUTH_LINE_LIMIT)
        return self.limit

    def _skip_rest_of_long_line(self, buf: bytearray) -> tuple[LineStatus, bytes, bool]:
        newline = buf.find(b"\n")
        if newline < 0:
            buf.clear()
            return LineStatus.NEED_DATA, b"", False
        del buf[: newline + 1]
        self.discarding = False
        return LineStatus.TOO_LONG, b"", self._discarding_auth
