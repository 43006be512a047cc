"""Sequence sets (RFC 9051 §4.1.1 and §9 ``sequence-set``) and their resolution.

Theory of operation
-------------------
A :class:`SequenceSet` is what the client wrote, normalised but never expanded: a tuple of
inclusive ranges plus a flag for ``$`` (RFC 5182 SEARCHRES). ``*`` is stored as :data:`STAR`
(0, a value no ``nz-number`` can take). Each range is ordered on parsing, because RFC 9051 §9
says ``5:2`` means the same as ``2:5``; a range with ``*`` keeps ``*`` on the right because
its value is only known against a mailbox. ``1:4294967295`` is therefore two integers.

Resolution happens against the session's view of the mailbox, given as the ascending list of
UIDs (index ``i`` holds the UID of message sequence number ``i + 1``):

* :meth:`SequenceSet.select_by_msn` for message sequence numbers. A number beyond the mailbox,
  or ``*`` in an empty mailbox, raises :class:`~mailpost.imap.errors.SequenceRangeError`; the
  session answers ``BAD`` (RFC 9051 §9, ``seq-number``; security catalogue I6).
* :meth:`SequenceSet.select_by_uid` for UIDs. Non-existent UIDs are simply skipped, and ``*``
  is the highest UID in use, so ``UID FETCH 559:*`` with highest UID 10 returns UID 10
  (RFC 9051 §9, ``seq-range`` example).

Both first merge the ranges into an :class:`IntervalSet` (sorted, disjoint) and then use
binary search per interval, so the work is ``O(k log k + k log n + matches)`` for ``k``
written ranges and ``n`` messages; it never depends on the width of a range. ``$`` needs the
saved result, passed in as an :class:`IntervalSet` of the same kind (MSNs or UIDs) as the
command uses (RFC 5182 §2.1 implementation note: the session converts between them).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from mailpost.imap.errors import SequenceRangeError

STAR: Final = 0
MAX_NUMBER: Final = 2**32 - 1  # nz-number is a non-zero unsigned 32-bit integer (RFC 9051 §9)

Range = tuple[int, int]

_ELEMENT = re.compile(r"(\*|[1-9][0-9]*)(?::(\*|[1-9][0-9]*))?\Z")
# The characters a sequence set can be made of; the parser cuts the token with this.
TOKEN = re.compile(rb"[0-9*:,$]+")


@dataclass(frozen=True, slots=True)
class IntervalSet:
    """Sorted, disjoint, non-adjacent inclusive intervals of positive integers."""

    intervals: tuple[Range, ...] = ()

    @classmethod
    def from_ranges(cls, ranges: Iterable[Range]) -> IntervalSet:
        """Merge ranges given in any order (each with ``low <= high``) into canonical form."""
        merged: list[list[int]] = []
        for low, high in sorted(ranges):
            if merged and low <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        return cls(tuple((low, high) for low, high in merged))

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> IntervalSet:
        return cls.from_ranges((n, n) for n in numbers)

    def __contains__(self, number: object) -> bool:
        if not isinstance(number, int):
            return False
        index = bisect.bisect_right(self.intervals, (number, MAX_NUMBER + 1)) - 1
        return index >= 0 and self.intervals[index][0] <= number <= self.intervals[index][1]

    def __iter__(self) -> Iterator[int]:
        for low, high in self.intervals:
            yield from range(low, high + 1)

    def __len__(self) -> int:
        return sum(high - low + 1 for low, high in self.intervals)

    def __bool__(self) -> bool:
        return bool(self.intervals)

    @property
    def max(self) -> int | None:
        return self.intervals[-1][1] if self.intervals else None

    def to_sequence_set(self) -> SequenceSet:
        """The compact wire form, e.g. for COPYUID, VANISHED or ESEARCH ALL."""
        return SequenceSet(self.intervals)

    def __str__(self) -> str:
        return str(self.to_sequence_set())


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A parsed ``sequence-set``; see the module docstring for the representation."""

    ranges: tuple[Range, ...]
    saved: bool = False  # "$": the result of the last SEARCH RETURN (SAVE)

    @classmethod
    def parse(cls, text: str) -> SequenceSet:
        """Parse ``text`` (the whole token) or raise ``ValueError`` naming the problem."""
        ranges: list[Range] = []
        saved = False
        for element in text.split(","):
            if element == "$":
                saved = True
            else:
                ranges.append(_parse_element(element))
        return cls(tuple(ranges), saved)

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """Compress numbers into ranges: ``[1, 2, 3, 7]`` gives ``1:3,7``."""
        return IntervalSet.from_numbers(numbers).to_sequence_set()

    @property
    def uses_star(self) -> bool:
        return any(STAR in r for r in self.ranges)

    def __str__(self) -> str:
        parts = [_format_range(r) for r in self.ranges]
        if self.saved:
            parts.append("$")
        return ",".join(parts)

    def intervals(self, largest: int, saved: IntervalSet | None = None) -> IntervalSet:
        """Merge into intervals with ``*`` read as ``largest``; ``$`` adds ``saved``.

        Raises ``ValueError`` if ``$`` is used and ``saved`` is None (the caller decides:
        RFC 5182 §2.1 makes an empty saved result valid, so pass an empty set for that).
        """
        resolved = [_resolve(r, largest) for r in self.ranges]
        if self.saved:
            if saved is None:
                raise ValueError("'$' used but no saved search result was supplied")
            resolved.extend(saved.intervals)
        return IntervalSet.from_ranges(r for r in resolved if r[1] >= 1)

    def select_by_msn(
        self, uids: Sequence[int], saved: IntervalSet | None = None
    ) -> list[tuple[int, int]]:
        """(msn, uid) pairs for message sequence numbers; raise ``SequenceRangeError`` if any
        number (or ``*`` in an empty mailbox) lies beyond the mailbox."""
        exists = len(uids)
        if exists == 0 and self.uses_star:
            raise SequenceRangeError("'*' used in an empty mailbox")
        wanted = self.intervals(exists, saved)
        if wanted.max is not None and wanted.max > exists:
            raise SequenceRangeError(f"message {wanted.max} does not exist ({exists} messages)")
        return [(msn, uids[msn - 1]) for msn in wanted]

    def select_by_uid(
        self, uids: Sequence[int], saved: IntervalSet | None = None
    ) -> list[tuple[int, int]]:
        """(msn, uid) pairs of the existing messages whose UID is in the set."""
        largest = uids[-1] if uids else 0
        result: list[tuple[int, int]] = []
        for low, high in self.intervals(largest, saved).intervals:
            start = bisect.bisect_left(uids, low)
            stop = bisect.bisect_right(uids, high)
            result.extend((index + 1, uids[index]) for index in range(start, stop))
        return result


def _parse_element(element: str) -> Range:
    match = _ELEMENT.match(element)
    if match is None:
        raise ValueError(f"invalid sequence set element {element!r}")
    first = _parse_number(match.group(1))
    second = first if match.group(2) is None else _parse_number(match.group(2))
    if first == STAR or second == STAR:
        return (second, STAR) if first == STAR else (first, STAR)
    return (first, second) if first <= second else (second, first)


def _parse_number(text: str) -> int:
    if text == "*":
        return STAR
    if len(text) > 10 or int(text) > MAX_NUMBER:
        raise ValueError(f"sequence number {text} does not fit in 32 bits")
    return int(text)


def _resolve(rng: Range, largest: int) -> Range:
    low, high = sorted(largest if n == STAR else n for n in rng)
    return (max(low, 1), high)


def _format_range(rng: Range) -> str:
    low, high = ("*" if n == STAR else str(n) for n in rng)
    return low if low == high else f"{low}:{high}"
