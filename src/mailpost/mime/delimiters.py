"""Finding multipart delimiter lines (RFC 2046 §5.1.1) in one forward pass, in linear time.

Theory of operation
-------------------
The parser asks one question, again and again: from line start ``pos``, where is the first
delimiter line of any boundary on the current stack (the boundaries of the multiparts
enclosing ``pos``, innermost last)? Answering it by scanning for every boundary anew would be
quadratic on deep nesting (a delimiter of the outermost multipart may be megabytes away, and
every level would look for it again), and one combined regex per stack costs a compilation per
distinct stack, which a nesting bomb makes thousands of.

Instead each boundary is searched on its own with ``bytes.find`` for ``"\\n--" boundary`` (a
delimiter line need only *start* with ``--boundary``: RFC 2046 §5.1.1, "it is sufficient that
the boundary appear in its entirety following the CRLF"), and what a search found is
remembered: its first occurrence at or after some position, or that none exists up to some
position. Since the parser only moves forward, later questions are mostly answered from memory
and each boundary's text is scanned about once. A question is answered in two passes: first
the boundaries whose answer is remembered, then the others, each searched only up to the best
line found so far, so that a boundary that never appears costs no more than the distance to the
nearest delimiter of another boundary.

When several boundaries start the same line the longest wins, and an identical boundary belongs
to the innermost multipart (RFC 2046 requires boundaries not to be prefixes of each other, so
this only settles what broken or hostile mail does, the way Dovecot does).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Delimiter:
    """A delimiter line found in the data."""

    line_start: int
    content_end: int  # where the entity before it ends: before the line break preceding it
    next_pos: int  # just after the delimiter line
    level: int  # index of the owning boundary in the stack
    close: bool  # "--" right after the boundary: the close delimiter


@dataclass(slots=True)
class _Known:
    """What earlier searches established about one boundary's needle (``"\\n--" boundary``):
    it starts nowhere in ``[low, hit)`` and does start at ``hit``; or, with ``hit == -1``, it
    starts nowhere in ``[low, high]``."""

    low: int
    high: int
    hit: int


class DelimiterFinder:
    """Answers "first delimiter line at or after ``pos``" for one message."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._known: dict[bytes, _Known] = {}

    def find(self, pos: int, stack: tuple[bytes, ...]) -> Delimiter | None:
        """The first delimiter line of a boundary of ``stack`` starting at line start ``pos``
        or later, or None."""
        best_line, best_length, best_level = -1, -1, -1
        unknown: list[tuple[int, bytes]] = []
        seen: set[bytes] = set()
        for level in reversed(range(len(stack))):  # innermost first: it owns identical ones
            boundary = stack[level]
            if boundary in seen:
                continue
            seen.add(boundary)
            line = self._remembered_line(boundary, pos)
            if line is None:
                unknown.append((level, boundary))
            elif line >= 0 and _better(line, len(boundary), best_line, best_length):
                best_line, best_length, best_level = line, len(boundary), level
        for level, boundary in unknown:
            last = best_line if best_line >= 0 else len(self.data)
            line = self._next_line(boundary, pos, last)
            if line >= 0 and _better(line, len(boundary), best_line, best_length):
                best_line, best_length, best_level = line, len(boundary), level
        if best_line < 0:
            return None
        return self._delimiter(pos, best_line, best_length, best_level)

    def _delimiter(self, pos: int, line: int, length: int, level: int) -> Delimiter:
        data = self.data
        after = line + 2 + length
        newline = data.find(b"\n", after)
        content_end = line
        if line > pos:  # the line break before the delimiter belongs to the delimiter
            content_end -= 2 if data[line - 2:line] == b"\r\n" else 1
        return Delimiter(line_start=line, content_end=max(pos, content_end),
                         next_pos=len(data) if newline < 0 else newline + 1, level=level,
                         close=data.startswith(b"--", after))

    # --- one boundary ----------------------------------------------------------------------

    def _remembered_line(self, boundary: bytes, pos: int) -> int | None:
        """The first line at or after ``pos`` for ``boundary`` if memory can tell without
        searching: a line, -1 for "none up to the end of the data", or None (unknown)."""
        if pos == 0:
            return None
        known = self._known.get(boundary)
        start = pos - 1
        if known is None or known.low > start:
            return None
        if known.hit >= start:
            return known.hit + 1
        if known.hit < 0 and known.high >= len(self.data) - 1:
            return -1
        return None

    def _next_line(self, boundary: bytes, pos: int, last: int) -> int:
        """The first line in ``[pos, last]`` that starts with ``"--" boundary``, or -1."""
        data = self.data
        if pos == 0:
            if data.startswith(b"--" + boundary):
                return 0
            pos = 1  # the needle includes the newline before the line
        start, stop = pos - 1, last - 1  # needle positions: the newline before the line
        known = self._known.get(boundary)
        if known is not None and known.low <= start:
            if known.hit >= start:
                return known.hit + 1 if known.hit <= stop else -1
            if known.hit < 0 and stop <= known.high:
                return -1
            if known.hit < 0 and start <= known.high + 1:
                hit = self._search(boundary, known.high + 1, stop)
                self._known[boundary] = _Known(known.low, stop, hit)
                return hit + 1 if hit >= 0 else -1
        hit = self._search(boundary, start, stop)
        self._known[boundary] = _Known(start, stop, hit)
        return hit + 1 if hit >= 0 else -1

    def _search(self, boundary: bytes, first: int, last: int) -> int:
        """Position of ``"\\n--" boundary`` starting within ``[first, last]``, or -1."""
        needle = b"\n--" + boundary
        if last < first:
            return -1
        return self.data.find(needle, first, last + len(needle))


def _better(line: int, length: int, best_line: int, best_length: int) -> bool:
    """An earlier line wins; on the same line a longer boundary wins (ties keep the first,
    which is the innermost since the stack is walked from the inside out)."""
    return best_line < 0 or line < best_line or (line == best_line and length > best_length)
