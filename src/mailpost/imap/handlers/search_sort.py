"""SORT (RFC 5256 §3) and THREAD=ORDEREDSUBJECT (RFC 5256 §3, "poor man's threading").

Theory of operation
-------------------
The handler has already searched; what arrives here is one :class:`Entry` per matching
message, in mailbox order, carrying its message number (what the response shows: sequence
number or UID), its sequence number (the implicit last criterion), its metadata and its cached
header info. Everything here is synchronous and runs in a worker thread.

Sorting uses Python's stable sort once per criterion, from the last criterion to the first,
starting from mailbox order. Stability makes the result lexicographic over the criteria with
the sequence number as the final tie-breaker, and ``reverse=True`` keeps equal items in their
previous order, which is exactly RFC 5256's rule that REVERSE "only reverses a single criterion,
and does not affect the implicit 'sequence number' sort criterion".

Keys (RFC 5256 §3): ARRIVAL is INTERNALDATE; DATE the sent date of §2.2 (Date: header in UTC,
INTERNALDATE when missing or unparseable); SIZE is RFC822.SIZE; SUBJECT the base subject of
§2.1; FROM, TO and CC the ``addr-mailbox`` (local part) of the first address. Strings compare
by ``i;unicode-casemap`` (§7); an absent header is the empty string, which sorts first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailpost.imap.handlers.search_headers import HeaderInfo
from mailpost.imap.responses import ThreadNode
from mailpost.store.types import MessageMeta

SortKey = Callable[["Entry"], float | int | str]


@dataclass(frozen=True, slots=True)
class Entry:
    """One searched message as SORT and THREAD see it."""

    number: int
    msn: int
    meta: MessageMeta
    info: HeaderInfo | None

    @property
    def sent(self) -> float:
        """RFC 5256 §2.2 sent date as a UTC timestamp, INTERNALDATE when unknown."""
        sent = self.info.sent if self.info is not None else None
        return sent.instant if sent is not None else self.meta.internal_date.timestamp()

    @property
    def subject_key(self) -> str:
        return self.info.subject_key if self.info is not None else ""

    @property
    def is_reply(self) -> bool:
        return self.info is not None and self.info.subject.is_reply_or_forward

    def address(self, field: str) -> str:
        return self.info.address_key(field) if self.info is not None else ""


SORT_KEYS: dict[str, SortKey] = {
    "ARRIVAL": lambda e: e.meta.internal_date.timestamp(),
    "CC": lambda e: e.address("cc"),
    "DATE": lambda e: e.sent,
    "FROM": lambda e: e.address("from"),
    "SIZE": lambda e: e.meta.size,
    "SUBJECT": lambda e: e.subject_key,
    "TO": lambda e: e.address("to"),
}
HEADER_CRITERIA = frozenset({"CC", "DATE", "FROM", "SUBJECT", "TO"})


def sort_entries(entries: Sequence[Entry],
                 criteria: Sequence[tuple[str, bool]]) -> list[Entry]:
    """``entries`` ordered by ``(key, reverse)`` criteria, ties by sequence number."""
    ordered = sorted(entries, key=lambda e: e.msn)
    for name, reverse in reversed(criteria):
        ordered.sort(key=SORT_KEYS[name], reverse=reverse)
    return ordered


def date_order(entry: Entry) -> tuple[float, int]:
    """Sent date, then sequence number (RFC 5256 §2.2 tie-breaker)."""
    return (entry.sent, entry.msn)


def ordered_subject(entries: Sequence[Entry]) -> list[ThreadNode]:
    """THREAD=ORDEREDSUBJECT: group by base subject, each group sorted by sent date; the
    first message is the parent of all others; threads ordered by their first message."""
    ordered = sorted(entries, key=lambda e: (e.subject_key, e.sent, e.msn))
    groups: list[list[Entry]] = []
    for entry in ordered:
        if groups and groups[-1][0].subject_key == entry.subject_key:
            groups[-1].append(entry)
        else:
            groups.append([entry])
    groups.sort(key=lambda group: date_order(group[0]))
    return [ThreadNode(group[0].number, tuple(ThreadNode(e.number) for e in group[1:]))
            for group in groups]
