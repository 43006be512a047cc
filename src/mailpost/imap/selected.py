"""A session's view of its selected mailbox, and how it catches up with the store.

Theory of operation
-------------------
Each IMAP session sees the selected mailbox as an ordered list of UIDs (message sequence
number *n* is ``uids[n - 1]``) plus the flags and modseq it last told the client about. The
store holds the truth and a durable change log; the view only moves forward by
:meth:`SelectedMailbox.sync`, which asks the store what changed after the view's modseq and
turns the difference into untagged responses:

* messages gone from the store become ``* n EXPUNGE`` (or ``* VANISHED`` under QRESYNC),
  but only when the current command allows it. RFC 9051 §7.5.1 forbids EXPUNGE while
  answering FETCH, STORE or SEARCH (the UID forms may): sequence numbers the client is using
  must not shift under it. Until then the message stays in the view as a *ghost*: it keeps
  its sequence number, its last known flags, and its body may still be fetched if the file
  is there (RFC 2180 §4.1);
* new messages (UIDs above the highest known) are appended and announced by ``* n EXISTS``;
* flag changes made elsewhere become ``* n FETCH (FLAGS ...)`` with UID, and MODSEQ when
  CONDSTORE is on (RFC 7162 §3.2).

The session's own STORE updates the view directly (:meth:`apply_own_update`) so that the
next sync, which sees the same rows again, compares equal and stays silent: a client never
gets its own change twice, yet never misses someone else's, because ``modseq`` only advances
in ``sync``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from mailpost.imap import responses as rsp
from mailpost.imap.seqset import IntervalSet
from mailpost.store.interface import MailboxStore
from mailpost.store.types import MailboxChanges, MailboxInfo, MessageMeta


@dataclass
class SyncOptions:
    """What the client has enabled, which changes the shape of unsolicited responses."""

    condstore: bool = False
    qresync: bool = False


@dataclass
class SelectedMailbox:
    info: MailboxInfo
    readonly: bool
    uids: list[int]
    messages: dict[int, MessageMeta]
    modseq: int
    uidnext: int
    ghosts: set[int] = field(default_factory=set)

    @classmethod
    async def open(cls, store: MailboxStore, info: MailboxInfo,
                   readonly: bool) -> SelectedMailbox:
        metas = await store.messages(info.id)
        # The snapshot's modseq: changes_since(info.highest_modseq) will return everything
        # committed after the listing, and the comparison in sync() absorbs any overlap.
        fresh = await store.changes_since(info.id, info.highest_modseq)
        view = cls(info, readonly, [m.uid for m in metas], {m.uid: m for m in metas},
                   info.highest_modseq, info.uidnext)
        view._absorb_silently(fresh)
        return view

    def _absorb_silently(self, changes: MailboxChanges) -> None:
        """Fold in what committed between the listing and now, before anything was said."""
        for uid in changes.expunged:
            if uid in self.messages:
                self._remove(uid)
        for meta in changes.updated:
            if meta.uid in self.messages or meta.uid > self.highest_uid:
                if meta.uid not in self.messages:
                    self.uids.append(meta.uid)
                self.messages[meta.uid] = meta
        self.modseq = max(self.modseq, changes.highest_modseq)
        self.uidnext = max(self.uidnext, changes.uidnext)

    # -- lookups ------------------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def highest_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def msn_of(self, uid: int) -> int | None:
        index = bisect.bisect_left(self.uids, uid)
        if index < len(self.uids) and self.uids[index] == uid:
            return index + 1
        return None

    def uid_of(self, msn: int) -> int:
        return self.uids[msn - 1]

    def meta(self, uid: int) -> MessageMeta:
        return self.messages[uid]

    def is_ghost(self, uid: int) -> bool:
        return uid in self.ghosts

    # -- changes ------------------------------------------------------------------------------

    def apply_own_update(self, metas: tuple[MessageMeta, ...] | list[MessageMeta]) -> None:
        """Record flag changes this session made, so sync() will not echo them back."""
        for meta in metas:
            if meta.uid in self.messages:
                self.messages[meta.uid] = meta

    def _remove(self, uid: int) -> int | None:
        msn = self.msn_of(uid)
        if msn is not None:
            del self.uids[msn - 1]
        self.messages.pop(uid, None)
        self.ghosts.discard(uid)
        return msn

    def remove_now(self, uids: list[int], options: SyncOptions) -> list[bytes]:
        """Announce and drop expunged messages (a command that may send EXPUNGE)."""
        known = [uid for uid in uids if uid in self.messages]
        if not known:
            return []
        if options.qresync:
            for uid in known:
                self._remove(uid)
            return [rsp.vanished(IntervalSet.from_numbers(known))]
        lines = []
        # Highest sequence numbers first: each EXPUNGE shifts only the messages after it,
        # so announcing from the top keeps every number we send valid (RFC 9051 §7.5.1).
        for uid in sorted(known, reverse=True):
            msn = self._remove(uid)
            if msn is not None:
                lines.append(rsp.expunge(msn))
        return lines

    async def sync(self, store: MailboxStore, *, allow_expunge: bool,
                   options: SyncOptions) -> list[bytes]:
        """Catch up with the store; returns the untagged lines to send, in a valid order."""
        changes = await store.changes_since(self.info.id, self.modseq)
        lines: list[bytes] = []
        gone = [uid for uid in changes.expunged if uid in self.messages]
        self.ghosts.update(gone)
        if allow_expunge and self.ghosts:
            lines.extend(self.remove_now(sorted(self.ghosts), options))
        added = 0
        for meta in changes.updated:
            if meta.uid in self.ghosts:
                continue
            known = self.messages.get(meta.uid)
            if known is None:
                if meta.uid > self.highest_uid:
                    self.uids.append(meta.uid)
                    self.messages[meta.uid] = meta
                    added += 1
                continue
            self.messages[meta.uid] = meta
            if known.flags != meta.flags or (options.condstore and known.modseq != meta.modseq):
                lines.append(self.flags_line(meta, options))
        if added:
            lines.append(rsp.exists(len(self.uids)))
        self.modseq = max(self.modseq, changes.highest_modseq)
        self.uidnext = max(self.uidnext, changes.uidnext)
        return lines

    def flags_line(self, meta: MessageMeta, options: SyncOptions,
                   include_uid: bool = True) -> bytes:
        msn = self.msn_of(meta.uid)
        assert msn is not None
        items: list[tuple[str, bytes]] = []
        if include_uid:
            items.append(("UID", str(meta.uid).encode()))
        items.append(("FLAGS", rsp.flag_list(sorted(meta.flags))))
        if options.condstore:
            items.append(("MODSEQ", f"({meta.modseq})".encode()))
        return rsp.fetch(msn, items)
