"""A POP3 session's view of its maildrop: INBOX as it was at login.

Theory of operation
-------------------
At login the session reads INBOX once (``store.messages``) and numbers the messages 1..n in UID
order (RFC 1939 §4). The numbers and sizes never change during the session, whatever IMAP or
new deliveries do meanwhile: a POP3 client caches them between commands. Messages that arrive
later appear at the next login.

DELE only marks a number (RFC 1939 §5); RSET clears the marks; :meth:`Maildrop.deleted_uids`
gives the UIDs for the one ``store.expunge`` of the UPDATE state. A marked message is invisible
to every command (STAT and LIST leave it out, RETR/TOP/DELE/LIST n/UIDL n answer "no such
message"). A message that another session expunged stays in the snapshot: RETR then fails on
its body and DELE of it is harmless, because the expunge of a missing UID removes nothing.

Unique ids (RFC 1939 §7) are ``"<uidvalidity>.<uid>"``: at most 21 characters from
``0-9.``, within the 1-70 printable characters the RFC allows. UIDVALIDITY never changes for a
mailbox and UIDs are never reused (store invariants), so an id is stable across sessions and
restarts and never names a second message, which is what "leave mail on server" clients rely on
to download each message once (security catalogue P4).
"""

from __future__ import annotations

from collections.abc import Sequence

from mailpost.store.types import MessageMeta

SEEN = "\\Seen"


class Maildrop:
    """The numbered snapshot of one INBOX, with deletion marks."""

    __slots__ = ("_deleted", "_messages", "_seen", "mailbox_id", "uidvalidity")

    def __init__(self, mailbox_id: int, uidvalidity: int,
                 messages: Sequence[MessageMeta]) -> None:
        self.mailbox_id = mailbox_id
        self.uidvalidity = uidvalidity
        self._messages = sorted(messages, key=lambda meta: meta.uid)
        self._deleted: set[int] = set()
        self._seen = {meta.uid for meta in self._messages if SEEN in meta.flags}

    def get(self, number: int) -> MessageMeta | None:
        """Message ``number`` (1-based), or None if out of range or marked as deleted."""
        if not 1 <= number <= len(self._messages) or number in self._deleted:
            return None
        return self._messages[number - 1]

    def delete(self, number: int) -> bool:
        """Mark a message as deleted; False if there is no such (undeleted) message."""
        if self.get(number) is None:
            return False
        self._deleted.add(number)
        return True

    def reset(self) -> None:
        """RSET: unmark every message."""
        self._deleted.clear()

    def stat(self) -> tuple[int, int]:
        """(messages, octets), not counting marked messages (RFC 1939 §5 STAT)."""
        live = self._live()
        return len(live), sum(meta.size for _, meta in live)

    def unique_id(self, meta: MessageMeta) -> str:
        return f"{self.uidvalidity}.{meta.uid}"

    def scan_listing(self) -> tuple[str, ...]:
        """LIST: ``"n size"`` per unmarked message."""
        return tuple(f"{number} {meta.size}" for number, meta in self._live())

    def unique_id_listing(self) -> tuple[str, ...]:
        """UIDL: ``"n unique-id"`` per unmarked message."""
        return tuple(f"{number} {self.unique_id(meta)}" for number, meta in self._live())

    def deleted_uids(self) -> list[int]:
        return sorted(self._messages[number - 1].uid for number in self._deleted)

    def is_seen(self, meta: MessageMeta) -> bool:
        return meta.uid in self._seen

    def mark_seen(self, meta: MessageMeta) -> None:
        """Remember that ``\\Seen`` was set, so a second RETR does not write it again."""
        self._seen.add(meta.uid)

    def _live(self) -> list[tuple[int, MessageMeta]]:
        return [(number, meta) for number, meta in enumerate(self._messages, start=1)
                if number not in self._deleted]
