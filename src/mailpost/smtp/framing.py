"""Message content framing: DATA dot-decoding, BDAT line-ending repair, body accounting.

Theory of operation
-------------------
:class:`DotDecoder` reads DATA content (RFC 5321 §4.1.1.4, §4.5.2). It sees
the content as lines ended by CRLF, by a bare LF or by a bare CR, and:

* ends the data only at ``<CRLF>.<CRLF>``, where the first CRLF may be the
  one that ended the DATA command (so a "." line first in the data also ends
  it);
* treats a "." line with a bare CR or LF on either side (``\\n.\\n``,
  ``\\r\\n.\\n``, ``\\r.\\r\\n`` ...) as an SMTP smuggling attempt
  (CVE-2023-51764/5/6, security catalogue S1): the data continues, and
  :attr:`DotDecoder.smuggling` makes the caller reject the whole message when
  the real end arrives;
* removes one leading dot from every other line starting with a dot;
* rewrites every other bare CR or bare LF as CRLF, so the output is canonical.

It works on whatever is buffered and never needs a whole line: at most the
two bytes ``.\\r`` (or a lone ``\\r``) are left unconsumed while it waits to
learn what follows, so a 1 GB line costs no memory. The cost stays linear and
almost entirely in C even for hostile input: the only places that need a
Python-level step are lines consisting of a lone dot. Everything between two
of those is one *region*, normalised with one regular-expression substitution
and unstuffed with one ``bytes.replace``: inside a region every dot at the
start of a line is a stuffing dot, because a line that is just "." would have
ended the region. Once a smuggling attempt has been seen nothing more is
output (the message will be rejected), and the decoder merely searches for
the real ``<CRLF>.<CRLF>``.

:class:`CrlfNormaliser` does the same line-ending repair for BDAT chunks
(RFC 3030 §2 requires canonical CRLF; there is no dot-stuffing), carrying a
trailing CR over to the next piece so that a CRLF split between two reads or
two chunks is not doubled.

:class:`MessageBody` does the accounting shared by both: the size limit
(content past ``max_size`` is dropped, the end is then rejected, RFC 1870 and
security catalogue S9) and the count of ``Received:`` header fields for the
mail-loop check (RFC 5321 §6.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CR = 0x0D
_LF = 0x0A
_DOT = 0x2E
_CRLF = b"\r\n"

_ANY_EOL = re.compile(rb"\r\n|\r|\n")
_END_OF_DATA = b"\r\n.\r\n"


@dataclass(slots=True)
class DecodeResult:
    """What one :meth:`DotDecoder.decode` call produced."""

    output: bytes
    consumed: int
    ended: bool


class DotDecoder:
    """Incremental decoder for DATA content; see the module docstring."""

    __slots__ = ("_at_line_start", "_previous_bare", "smuggling")

    def __init__(self) -> None:
        self._at_line_start = True
        # The CRLF ending the DATA command is the first CRLF of a possible <CRLF>.<CRLF>.
        self._previous_bare = False
        self.smuggling = False

    def decode(self, buf: bytes | bytearray) -> DecodeResult:
        """Decode as much of ``buf`` as possible; the caller drops ``consumed`` bytes."""
        out: list[bytes] = []
        pos = 0
        while pos < len(buf) and not self.smuggling:
            if self._at_line_start and buf[pos] == _DOT:
                step = self._dot_line(buf, pos)
                if step is None:
                    return DecodeResult(b"".join(out), pos, False)
                pos, ended = step
                if ended:
                    return DecodeResult(b"".join(out), pos, True)
                continue
            stop = self._region_end(buf, pos)
            if stop == pos:
                break  # only a CR at the end of the buffer is left: CRLF or bare CR?
            out.append(self._region(buf, pos, stop))
            pos = stop
        if self.smuggling:
            # Output before the attempt is kept, so that it does not depend on read sizes.
            pos, ended = self._skip_to_real_end(buf, pos)
            return DecodeResult(b"".join(out), pos, ended)
        return DecodeResult(b"".join(out), pos, False)

    def _dot_line(self, buf: bytes | bytearray, pos: int) -> tuple[int, bool] | None:
        """Handle a line starting with a dot; None means "need more bytes"."""
        if pos + 1 >= len(buf):
            return None
        if buf[pos + 1] not in (_CR, _LF):
            # RFC 5321 §4.5.2: drop the first dot of a line; the rest is text.
            self._at_line_start = False
            return pos + 1, False
        length, bare = _line_ending(buf, pos + 1)
        if length == 0:
            return None
        if not bare and not self._previous_bare:
            return pos + 1 + length, True  # <CRLF>.<CRLF>
        # A lone dot next to a bare CR or LF: never an end (security catalogue S1).
        self.smuggling = True
        self._previous_bare = bare
        return pos + 1 + length, False

    @staticmethod
    def _region_end(buf: bytes | bytearray, pos: int) -> int:
        """Where the region starting at ``pos`` stops: just after a line ending that is
        followed by a lone-dot line (or by a dot at the end of the buffer), or before a CR
        at the very end (CRLF or bare CR: the next byte decides). Plain ``find`` calls (in C)
        rather than a regular expression that would try a match at every byte."""
        size = len(buf)
        best = size
        for marker in (b"\n.", b"\r."):
            start = pos
            while (found := buf.find(marker, start, best)) >= 0:
                after = found + 2
                if after >= size or buf[after] in (_CR, _LF):
                    best = found
                    break
                start = found + 1  # a stuffed dot ("..x" or ".x"): not a region stop
        if best < size:
            return best + 1  # up to and including the line ending before the dot
        if size > pos and buf[size - 1] == _CR:
            return size - 1  # hold back a final CR until its next byte is known
        return size

    def _region(self, buf: bytes | bytearray, pos: int, stop: int) -> bytes:
        """Normalise and unstuff ``buf[pos:stop]``, which holds no lone-dot line."""
        region = bytes(buf[pos:stop])
        last = region[-1]
        self._at_line_start = last in (_CR, _LF)
        if self._at_line_start:
            self._previous_bare = last == _CR or region[-2:] != _CRLF
        if _has_bare_line_ending(region):
            region = _ANY_EOL.sub(_CRLF, region)
        # Every line start inside the region but its first carries a stuffing dot.
        return region.replace(b"\r\n.", _CRLF)

    def _skip_to_real_end(self, buf: bytes | bytearray, pos: int) -> tuple[int, bool]:
        """After a smuggling attempt only the real end matters; find it without output."""
        if self._at_line_start and not self._previous_bare:
            head = bytes(buf[pos : pos + 3])
            if head == b".\r\n":
                return pos + 3, True
            if b".\r\n".startswith(head):
                return pos, False  # too few bytes to tell
        found = buf.find(_END_OF_DATA, pos)
        if found >= 0:
            return found + len(_END_OF_DATA), True
        # Keep a tail that may be the start of the end marker; the search starts over there.
        self._at_line_start = False
        return max(pos, len(buf) - (len(_END_OF_DATA) - 1)), False


def _has_bare_line_ending(data: bytes) -> bool:
    """True if some CR is not followed by LF, or some LF not preceded by CR (three C-level
    counts: much cheaper than a regular expression with look-around on clean input)."""
    carriage_returns = data.count(b"\r")
    return carriage_returns != data.count(b"\n") or carriage_returns != data.count(_CRLF)


def _line_ending(buf: bytes | bytearray, pos: int) -> tuple[int, bool]:
    """Length of the line ending at ``pos`` (0: undecidable yet) and whether it is bare."""
    if buf[pos] == _LF:
        return 1, True
    if pos + 1 >= len(buf):
        return 0, True
    if buf[pos + 1] == _LF:
        return 2, False
    return 1, True


class CrlfNormaliser:
    """Turns bare CR and bare LF into CRLF across successive pieces (BDAT content)."""

    __slots__ = ("_pending_cr",)

    def __init__(self) -> None:
        self._pending_cr = False

    def feed(self, data: bytes, *, final: bool = False) -> bytes:
        """Normalise ``data``; a trailing CR waits for the next piece unless ``final``."""
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        if data.endswith(b"\r") and not final:
            data = data[:-1]
            self._pending_cr = True
        if not _has_bare_line_ending(data):
            return data
        return _ANY_EOL.sub(_CRLF, data)


class ReceivedCounter:
    """Counts ``Received:`` fields in the header section (up to the first empty line).

    Works on whole pieces with C-level searches: a line start is an LF, so the
    count is the number of ``\\nreceived:`` matches. ``_carry`` keeps the LF and the
    first octets of a line cut by a piece boundary while they could still become
    "Received:" (the message itself starts as if after an LF).
    """

    __slots__ = ("_carry", "count", "done")

    _FIELD = re.compile(rb"\nreceived:", re.IGNORECASE)
    _NAME_LENGTH = len(b"received:")

    def __init__(self) -> None:
        self.count = 0
        self.done = False
        self._carry = b"\n"

    def feed(self, data: bytes) -> None:
        """Scan the next piece of canonical CRLF content."""
        if self.done:
            return
        text = self._carry + data
        empty_line = text.find(b"\n\r\n")  # RFC 5322 §2.1: it ends the header section
        if empty_line >= 0:
            text = text[: empty_line + 1]
            self.done = True
        self.count += len(self._FIELD.findall(text))
        line_start = text.rfind(b"\n")
        partial = line_start >= 0 and len(text) - line_start - 1 < self._NAME_LENGTH
        self._carry = text[line_start:] if partial else b""


class MessageBody:
    """Size and header accounting for one message, shared by DATA and BDAT."""

    __slots__ = ("max_size", "overflow", "received", "size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.size = 0  # octets accepted (and emitted) so far
        self.overflow = False
        self.received = ReceivedCounter()

    def accept(self, data: bytes) -> bytes:
        """Return the part of ``data`` that fits under the limit, and account for it."""
        if self.overflow or not data:
            return b""
        room = self.max_size - self.size
        if len(data) > room:
            self.overflow = True
            data = data[:room]
        self.size += len(data)
        self.received.feed(data)
        return data
