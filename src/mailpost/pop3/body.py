"""The body of a RETR or TOP response, produced piece by piece from the stored message.

Theory of operation
-------------------
:class:`BodyEncoder` turns the stored octets of one message, fed in chunks of any size, into
the lines of a multi-line POP3 response (RFC 1939 §3), and never needs the whole message:

1. **Line endings.** Stored messages use CRLF, but a body that arrived another way might hold a
   bare CR or LF; :class:`~mailpost.smtp.framing.CrlfNormaliser` rewrites those as CRLF (holding
   a trailing CR until the next chunk shows whether an LF follows), so the output never carries
   a bare line ending that a client could read as the end of the response.
2. **TOP limit** (RFC 1939 §7). With ``body_lines`` set, the header section is passed through
   up to and including the first empty line, then only that many body lines. Once the limit is
   reached :attr:`complete` turns True and the caller stops reading the file. A message without
   an empty line is all header and is sent whole.
3. **Dot-stuffing.** Every line that starts with "." gets a second "." in front (RFC 1939 §3,
   security catalogue P5). A line start is known across chunk boundaries, so the split of the
   input never changes the output.

:meth:`BodyEncoder.finish` ends an unterminated last line with CRLF and appends the ``.CRLF``
terminator.

The work per chunk is a handful of C-level scans (``find``, ``count``, ``replace``); the only
Python loop runs over the lines of the one chunk where a TOP limit ends.
"""

from __future__ import annotations

from mailpost.smtp.framing import CrlfNormaliser

_CRLF = b"\r\n"
TERMINATOR = b".\r\n"


class BodyEncoder:
    """Stored message octets in, dot-stuffed response body out; see the module docstring."""

    __slots__ = ("_at_line_start", "_complete", "_in_header", "_lines_left", "_normaliser",
                 "_started")

    def __init__(self, body_lines: int | None = None) -> None:
        if body_lines is not None and body_lines < 0:
            raise ValueError("body_lines must not be negative")
        self._normaliser = CrlfNormaliser()
        self._at_line_start = True
        self._in_header = body_lines is not None
        self._lines_left = body_lines
        self._complete = False
        self._started = False

    @property
    def complete(self) -> bool:
        """True once a TOP limit has been reached: further input would be ignored."""
        return self._complete

    def feed(self, data: bytes, *, wire_ready: bool = False) -> bytes:
        """Encode the next piece of the message.

        ``wire_ready``: ``data`` is the whole message and was found, when it was stored, to
        need no change (:mod:`mailpost.store.lineform`: CRLF lines only, none starting with
        ".", ending with CRLF). Without a TOP limit it then goes out as it is, which spares
        the scans above on the common path; the output is the same either way.
        """
        if self._complete:
            return b""
        if wire_ready and not self._started and self._lines_left is None:
            self._started = True
            return data  # ends with CRLF or is empty: the next line starts a line, as assumed
        self._started = True
        return self._stuff(self._limit(self._normaliser.feed(data)))

    def finish(self) -> bytes:
        """The rest of the body and the terminating ``.CRLF``."""
        tail = b"" if self._complete else self._drain()
        if not self._at_line_start:
            tail += _CRLF
        return tail + TERMINATOR

    def _drain(self) -> bytes:
        """Whatever the normaliser still holds (a trailing CR)."""
        return self._stuff(self._limit(self._normaliser.feed(b"", final=True)))

    # -- TOP ------------------------------------------------------------------------------

    def _limit(self, text: bytes) -> bytes:
        if self._lines_left is None or not text:
            return text
        if not self._in_header:
            return self._take_body_lines(text)
        end = self._header_end(text)
        if end < 0:
            return text
        self._in_header = False
        return text[:end] + self._take_body_lines(text[end:])

    def _header_end(self, text: bytes) -> int:
        """Index just past the empty line that ends the header section in ``text``, or -1."""
        if self._at_line_start and text.startswith(_CRLF):
            return 2
        index = text.find(b"\r\n\r\n")
        return index + 4 if index >= 0 else -1

    def _take_body_lines(self, text: bytes) -> bytes:
        wanted = self._lines_left
        assert wanted is not None
        if wanted == 0:
            self._complete = True
            return b""
        available = text.count(_CRLF)
        if available < wanted:
            self._lines_left = wanted - available
            return text
        end = -2
        for _ in range(wanted):
            end = text.find(_CRLF, end + 2)
        self._lines_left = 0
        self._complete = True
        return text[: end + 2]

    # -- RFC 1939 §3 byte-stuffing --------------------------------------------------------------

    def _stuff(self, text: bytes) -> bytes:
        if not text:
            return text
        stuffed = text.replace(b"\r\n.", b"\r\n..")
        if self._at_line_start and text.startswith(b"."):
            stuffed = b"." + stuffed
        self._at_line_start = text.endswith(b"\n")
        return stuffed
