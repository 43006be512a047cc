"""Spotting 8-bit octets in the header section of a message that streams past (RFC 6855 §4).

Theory of operation
-------------------
A server that offers ``UTF8=ACCEPT`` "MUST reject, with a NO response, an APPEND command that
includes any 8-bit character in message header fields" unless the client has enabled UTF-8
(RFC 6855 §4; IMAP4rev2 allows such headers anyway, RFC 9051 §6.3.12 "[I18N-HDRS]"). The
message arrives in chunks of any size and is never held whole, so :class:`HeaderScanner`
looks at each chunk only until the header section ends: the first empty line, i.e. ``CRLF
CRLF`` (RFC 5322 §2.1), or a lone ``LF LF`` from a sloppy client. The last three octets of
the previous chunk are kept so that a boundary falling inside the separator is still found.
A message that starts with an empty line has an empty header section: the scanner starts as
if a line had just ended. The body is never scanned, so the work is bounded by the header
size, not the message size.
"""

from __future__ import annotations

import re

_EIGHT_BIT = re.compile(rb"[\x80-\xff]")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# Pretend a line just ended, so a message that begins with CRLF has no header section.
_START = b"\r\n"
_KEEP = 3  # enough of the previous chunk to complete any separator


class HeaderScanner:
    """Feed the message octets in order; :attr:`eight_bit` tells the verdict so far."""

    __slots__ = ("_done", "_tail", "eight_bit")

    def __init__(self) -> None:
        self.eight_bit = False
        self._tail = _START
        self._done = False

    @property
    def header_complete(self) -> bool:
        """True once the empty line that ends the header section has been seen."""
        return self._done

    def feed(self, chunk: bytes) -> None:
        if self._done or self.eight_bit:
            return  # nothing left to learn: the verdict cannot change any more
        data = self._tail + chunk
        end = _HEADER_END.search(data)
        header = data if end is None else data[: end.start()]
        if _EIGHT_BIT.search(header) is not None:
            self.eight_bit = True
        if end is not None:
            self._done = True
        self._tail = data[-_KEEP:]
