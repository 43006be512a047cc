"""What a careful client knows about its selected mailbox, checked against every response.

Theory of operation
-------------------
Besides the expectations a transcript writes down, every response a connection receives is
fed to its :class:`MailboxModel`, which keeps what a client must keep (RFC 9051 §5.2: "a
client implementation MUST remember mailbox size updates"): the message count and, where
known, the UID at each message sequence number. A response that a correct client could not
apply is a violation, whatever the transcript expects:

* ``* n EXISTS`` that lowers the count (RFC 9051 §5.2: "it is NOT permitted to send an
  EXISTS response that would reduce the number of messages");
* ``* n EXPUNGE`` or ``* n FETCH`` outside 1..count (§7.5.1, §7.5.2);
* ``EXPUNGE`` (or ``VANISHED``, its QRESYNC replacement, RFC 7162 §3.2.10.2) while answering
  FETCH, STORE or SEARCH (§7.5.1), or SORT and THREAD (RFC 5256 §3), in their non-UID forms;
* a FETCH that gives a known message a different UID, or UIDs out of ascending order
  (§2.3.1.1);
* ``VANISHED`` naming a UID the client was never shown (RFC 7162 §3.2.10.2: each UID "results
  in the client decrementing the message count by one").

This is the state tracking imaptest performs in its random tests, reduced to the rules
that the transcripts' multi-connection scenarios exercise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

from tests.imapserver.transcript_match import Atom, Group, Token, tokenize

NO_EXPUNGE_VERBS = {"FETCH", "STORE", "SEARCH", "SORT", "THREAD"}


@dataclass
class MailboxModel:
    selected: bool = False
    uids: list[int | None] = field(default_factory=list)

    def select(self, count: int) -> None:
        self.selected = True
        self.uids = [None] * count

    def leave(self) -> None:
        self.selected = False
        self.uids = []

    def observe(self, line: bytes, command: str) -> str | None:
        """Apply one response received while ``command`` runs; a violation, or None."""
        if not line.startswith(b"* "):
            return None
        tokens = tokenize(line[2:])
        words = [t.text.upper() if isinstance(t, Atom) else "" for t in tokens[:2]]
        if len(words) == 2 and words[0].isdigit() and words[1] in ("EXISTS", "EXPUNGE", "FETCH"):
            number = int(words[0])
            if words[1] == "EXISTS":
                return self._exists(number)
            if words[1] == "EXPUNGE":
                return self._expunge(number, command)
            return self._fetch(number, tokens[2:])
        if words[0] == "VANISHED":
            return self._vanished(tokens[1:], command)
        return None

    def _exists(self, count: int) -> str | None:
        if count < len(self.uids):
            return f"EXISTS lowered the count from {len(self.uids)} to {count} (RFC 9051 §5.2)"
        self.uids.extend([None] * (count - len(self.uids)))
        return None

    def _expunge(self, number: int, command: str) -> str | None:
        if forbids_expunge(command):
            return f"EXPUNGE sent during {_verb(command)} (RFC 9051 §7.5.1)"
        if not 1 <= number <= len(self.uids):
            return f"EXPUNGE {number} with {len(self.uids)} messages (RFC 9051 §7.5.1)"
        del self.uids[number - 1]
        return None

    def _fetch(self, number: int, rest: list[Token]) -> str | None:
        if not 1 <= number <= len(self.uids):
            return f"FETCH for message {number} with {len(self.uids)} messages"
        uid = _uid_item(rest)
        if uid is None:
            return None
        known = self.uids[number - 1]
        if known is not None and known != uid:
            return f"message {number} was UID {known}, now FETCH says UID {uid}"
        self.uids[number - 1] = uid
        return self._ascending()

    def _ascending(self) -> str | None:
        seen = [uid for uid in self.uids if uid is not None]
        if any(a >= b for a, b in pairwise(seen)):
            return f"UIDs not ascending in sequence order: {seen} (RFC 9051 §2.3.1.1)"
        return None

    def _vanished(self, rest: list[Token], command: str) -> str | None:
        if rest and isinstance(rest[0], Group):  # (EARLIER): a report, no count change
            return None
        if forbids_expunge(command):
            return f"VANISHED sent during {_verb(command)} (RFC 7162 §3.2.10.2, §7.5.1)"
        gone = uid_set(rest[0].text) if rest and isinstance(rest[0], Atom) else []
        for uid in gone:
            if uid in self.uids:
                self.uids.remove(uid)
            elif None in self.uids:
                # The client never learned which number this UID had: it can only count.
                self.uids = [None] * (len(self.uids) - 1)
            else:
                return f"VANISHED names UID {uid}, which this client never saw"
        return None


def forbids_expunge(command: str) -> bool:
    return _verb(command) in NO_EXPUNGE_VERBS


def _verb(command: str) -> str:
    words = command.upper().split()
    return words[0] if words else ""


def _uid_item(items: list[Token]) -> int | None:
    if not items or not isinstance(items[0], Group):
        return None
    inner = items[0].items
    for key, value in zip(inner[::2], inner[1::2], strict=False):
        if isinstance(key, Atom) and key.text.upper() == "UID" and isinstance(value, Atom):
            return int(value.text) if value.text.isdigit() else None
    return None


def uid_set(text: str) -> list[int]:
    """``1:3,7`` as numbers (a VANISHED set never holds ``*``)."""
    numbers: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        first, last = sorted((int(low), int(high or low)))
        numbers.extend(range(first, last + 1))
    return numbers
