"""The ``\\Recent`` flag of IMAP4rev1 (RFC 3501 §2.3.2): which session hears of a message first.

Theory of operation
-------------------
RFC 3501 calls a message *recent* for exactly one session: the first to be told about it,
either because it selects the mailbox after the message arrived or because the message
arrives while it has the mailbox selected. IMAP4rev2 deprecated the flag (RFC 9051 Appendix E,
item 12), but IMAP4rev1 clients still use it: mutt, for one, tells new mail from old unread mail by it.

UIDs only grow, so "announced to some session" is a prefix of the UID space: per mailbox, the
first UID not yet announced. :class:`RecentRegistry` keeps that mark in memory for the whole
server process, because it moves on every delivery to a selected mailbox and writing it each
time would cost a transaction per woken session. A session *claims* UIDs at or above the mark
(:meth:`RecentRegistry.claim`: at SELECT for the messages already there, then for each new
message its catch-up reports); the mark moves past them, so no other session gets them.

The marks reach the store (``MailboxInfo.recent_uid``) when the server stops
(:meth:`RecentRegistry.marks`, ``MailboxStore.keep_recent_uids``), and a mailbox not seen
since start-up begins at its stored mark. After a crash some messages are recent again for the
next session; RFC 3501 accepts that ("if it is not possible to determine whether or not this
session is the first session to be notified about a message, then that message SHOULD be
considered recent").

Only sessions that have not enabled IMAP4rev2 and selected read-write claim. An EXAMINE
session sees the unclaimed messages as recent without taking the flag away (RFC 3501 §2.3.2:
"if the session is read-write, subsequent sessions will not see \\Recent"; §6.3.2), and an
IMAP4rev2 client never shows the flag, so it does not take it from an IMAP4rev1 client on
another device either.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Set as AbstractSet

from mailpost.store.types import MailboxInfo, MessageMeta

RECENT = "\\Recent"


def flags_of(meta: MessageMeta, recent: AbstractSet[int]) -> list[str]:
    """The flags a FLAGS item shows: the stored ones, and ``\\Recent`` where it applies."""
    flags = sorted(meta.flags)
    if recent and meta.uid in recent:
        flags.append(RECENT)
    return flags


class RecentRegistry:
    """Per mailbox, the first UID no session has claimed (see the module docstring)."""

    __slots__ = ("_first",)

    def __init__(self) -> None:
        self._first: dict[int, int] = {}

    def first_unclaimed(self, info: MailboxInfo) -> int:
        return max(self._first.get(info.id, 0), info.recent_uid)

    def peek(self, info: MailboxInfo, uids: Iterable[int]) -> set[int]:
        """The UIDs among ``uids`` nobody has claimed, left unclaimed (EXAMINE)."""
        first = self.first_unclaimed(info)
        return {uid for uid in uids if uid >= first}

    def claim(self, info: MailboxInfo, uids: Iterable[int]) -> set[int]:
        """Take the UIDs among ``uids`` that no session has had as recent yet."""
        first = self.first_unclaimed(info)
        claimed = {uid for uid in uids if uid >= first}
        if claimed:
            self._first[info.id] = max(claimed) + 1
        return claimed

    def marks(self) -> list[tuple[int, int]]:
        """(mailbox id, first unclaimed UID) for every mailbox claimed from since start-up."""
        return list(self._first.items())
