"""LIST patterns: the canonical pattern, and wildcard matching in linear time.

Theory of operation
-------------------
RFC 9051 §6.3.9 builds a *canonical LIST pattern* from the reference and the mailbox
argument. This server has one personal namespace with no prefix and no "break out"
characters, so the canonical pattern is ``reference + pattern``. A reference that does not
end with the delimiter is read as a level of hierarchy (``LIST Projects %`` lists
``Projects/...``, as a hierarchical browser means it): the RFC leaves that case to the
implementation, and this is the reading that keeps the reference as a prefix. INBOX is
case-insensitive (RFC 9051 §5.1), and the store spells it ``INBOX`` also as the first
level of ``INBOX/...``, so a pattern whose first level is any case of ``inbox`` is folded
to ``INBOX`` the same way.

In a pattern ``*`` matches zero or more characters and ``%`` matches zero or more
characters other than the hierarchy delimiter ``/``.

Matching must never backtrack: a naive recursive matcher, or a regular expression built
from the pattern, takes exponential (or high-polynomial) time on patterns such as
``*%*%*%*%*%*%*%*%b`` (security catalogue I9, Dovecot CVE-2026-33607). Here a pattern is
a small non-deterministic automaton whose states are the positions in the pattern, and
the set of live states is simulated all at once as the bits of one integer (bit-parallel
NFA simulation, as in Shift-And):

* state *i* means "the name read so far matches ``pattern[:i]``";
* a literal at position *i* moves state *i* to *i + 1* when the next character equals it;
* a wildcard at position *i* keeps state *i* alive on any character it may absorb, and
  state *i* also stands for *i + 1* without reading anything (the empty match).

Runs of adjacent wildcards are first collapsed (``*%`` and ``%*`` are ``*``, ``%%`` is
``%``), which changes nothing about what matches and means the empty-match step never
chains. Each name character then costs a fixed handful of integer operations on an
integer as wide as the pattern, so a name is matched in O(len(name) · len(pattern) / w)
for machine words of w bits, whatever the pattern. Several patterns (extended LIST takes
a list) are laid side by side in one integer, so a name is read once for all of them.
"""

from __future__ import annotations

from collections.abc import Iterable

from mailpost.store.types import HIERARCHY_DELIMITER

INBOX = "INBOX"
_WILDCARDS = "*%"


def fold_inbox(name: str) -> str:
    """Spell a first level that is any case of ``inbox`` as ``INBOX`` (RFC 9051 §5.1)."""
    head = name[: len(INBOX)]
    rest = name[len(INBOX):]
    if head.upper() == INBOX and (not rest or rest.startswith(HIERARCHY_DELIMITER)):
        return INBOX + rest
    return name


def canonical_pattern(reference: str, pattern: str) -> str:
    """The canonical LIST pattern of RFC 9051 §6.3.9 for this server's single namespace."""
    if reference and not reference.endswith(HIERARCHY_DELIMITER) \
            and not pattern.startswith(HIERARCHY_DELIMITER):
        reference += HIERARCHY_DELIMITER
    return fold_inbox(reference + pattern)


def collapse_wildcards(pattern: str) -> str:
    """Replace each run of wildcards by the one wildcard that matches the same strings."""
    out: list[str] = []
    run: list[str] = []
    for char in pattern:
        if char in _WILDCARDS:
            run.append(char)
            continue
        if run:
            out.append("*" if "*" in run else "%")
            run = []
        out.append(char)
    if run:
        out.append("*" if "*" in run else "%")
    return "".join(out)


class PatternSet:
    """One or more LIST patterns compiled into one bit-parallel automaton."""

    __slots__ = ("_accept", "_exact", "_literals", "_percent", "_star", "_start", "_wild")

    def __init__(self, patterns: Iterable[str]) -> None:
        self._literals: dict[str, int] = {}
        self._star = self._percent = self._start = self._accept = 0
        self._exact: set[str] = set()
        offset = 0
        for pattern in dict.fromkeys(collapse_wildcards(p) for p in patterns):
            if not any(char in _WILDCARDS for char in pattern):
                self._exact.add(pattern)  # no wildcard: a set lookup is enough
                continue
            self._add(pattern, offset)
            offset += len(pattern) + 1
        self._wild = self._star | self._percent

    def _add(self, pattern: str, offset: int) -> None:
        self._start |= 1 << offset
        self._accept |= 1 << (offset + len(pattern))
        for index, char in enumerate(pattern):
            bit = 1 << (offset + index)
            if char == "*":
                self._star |= bit
            elif char == "%":
                self._percent |= bit
            else:
                self._literals[char] = self._literals.get(char, 0) | bit

    def _closure(self, states: int) -> int:
        # A live wildcard may also match nothing; wildcards never follow one another after
        # collapse_wildcards(), so one step reaches every state the empty match can.
        return states | ((states & self._wild) << 1)

    def matches(self, name: str) -> bool:
        if name in self._exact:
            return True
        states = self._closure(self._start)
        star, percent, literals = self._star, self._percent, self._literals
        for char in name:
            if not states:
                return False
            stay = star if char == HIERARCHY_DELIMITER else star | percent
            states = self._closure(((states & literals.get(char, 0)) << 1) | (states & stay))
        return bool(states & self._accept)
