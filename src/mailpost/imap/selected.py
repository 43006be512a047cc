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

Sharing between sessions
------------------------
A server holds many sessions on the same mailbox (a user's phone, laptop and tablet; a shared
mailbox with many readers), and nearly all of them sit in IDLE, in step with the store. Their
views would be identical, and a view costs memory in proportion to the mailbox (a UID list,
a dict and a :class:`MessageMeta` per message: hundreds of bytes per message per session).
So a view that is exactly the mailbox at its modseq uses a :class:`MailboxState` shared by all
such sessions: one immutable UID list and dict per mailbox and modseq, copy on write. A view
takes private copies only when it must differ from the store (ghosts it may not announce yet,
its own STORE or EXPUNGE not synchronised yet) and shares again at the next sync that leaves
it in step. When a change arrives, the first session to catch up builds the next shared state
(:meth:`MailboxState.successor`, one O(mailbox) copy per change and mailbox, not per session)
and the others adopt it; each still computes its own untagged lines, since they depend on its
options (CONDSTORE, QRESYNC).

The same change wakes every session of the mailbox at once, and each asks the store for
``changes_since`` its modseq. Sessions at the same modseq share one query
(:func:`changes_since`), but only a query that started after the change that woke them was
announced: :func:`mailpost.bus.published` tells whether anything was published since the
shared query began, and if so a fresh query is started, so a joined answer can never miss the
change the joining session was woken for.

Shared states are found through a per-store registry of weak references, keyed by mailbox id
and UIDVALIDITY, so a SELECT of a mailbox that other sessions have open costs one
``changes_since`` instead of listing every message; a state lives as long as some view uses it.
"""

from __future__ import annotations

import asyncio
import bisect
import weakref
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from mailpost.bus import published
from mailpost.imap import responses as rsp
from mailpost.imap.recent import RecentRegistry, flags_of
from mailpost.imap.seqset import IntervalSet
from mailpost.store.interface import MailboxStore
from mailpost.store.types import MailboxChanges, MailboxInfo, MessageMeta


@dataclass
class SyncOptions:
    """What the client has enabled, which changes the shape of unsolicited responses."""

    condstore: bool = False
    qresync: bool = False


# ---------------------------------------------------------------------------------------------
# Shared states and shared queries


class MailboxState:
    """One mailbox at one modseq: its UIDs in order and their metadata. Never modified once
    a view uses it; views that are exactly this state share it."""

    __slots__ = ("__weakref__", "_successor", "key", "messages", "modseq", "uidnext", "uids")

    def __init__(self, key: tuple[int, int], modseq: int, uidnext: int, uids: list[int],
                 messages: dict[int, MessageMeta]) -> None:
        self.key = key  # (mailbox id, UIDVALIDITY)
        self.modseq = modseq
        self.uidnext = uidnext
        self.uids = uids
        self.messages = messages
        self._successor: weakref.ref[MailboxState] | None = None

    def successor(self, changes: MailboxChanges) -> MailboxState:
        """This state with ``changes`` (the answer to ``changes_since(self.modseq)``) applied.

        Two answers for the same base with the same highest modseq describe the same commits,
        so the result is remembered (weakly) and handed to every view that advances alike."""
        modseq = max(self.modseq, changes.highest_modseq)
        uidnext = max(self.uidnext, changes.uidnext)
        if modseq == self.modseq and uidnext == self.uidnext:
            return self
        known = self.known_successor(modseq)
        if known is not None:
            return known
        if changes.updated or changes.expunged:
            uids, messages = list(self.uids), dict(self.messages)
            fold_changes(uids, messages, changes)
        else:  # only the counters moved: the (never modified) containers can be shared
            uids, messages = self.uids, self.messages
        return self.remember(MailboxState(self.key, modseq, uidnext, uids, messages))

    def known_successor(self, modseq: int) -> MailboxState | None:
        """The remembered successor, if it is the state at ``modseq``."""
        known = self._successor() if self._successor is not None else None
        return known if known is not None and known.modseq == modseq else None

    def remember(self, successor: MailboxState) -> MailboxState:
        self._successor = weakref.ref(successor)
        return successor


def fold_changes(uids: list[int], messages: dict[int, MessageMeta],
                 changes: MailboxChanges) -> None:
    """Apply ``changes`` silently: drop expunged messages, take new metadata, append new UIDs
    (a UID below the highest one that is not known was expunged before we could see it)."""
    gone = {uid for uid in changes.expunged if uid in messages}
    if gone:
        uids[:] = [uid for uid in uids if uid not in gone]
        for uid in gone:
            del messages[uid]
    for meta in changes.updated:
        if meta.uid in messages:
            messages[meta.uid] = meta
        elif not uids or meta.uid > uids[-1]:
            uids.append(meta.uid)
            messages[meta.uid] = meta


class _Registry:
    """The newest shared state of each open mailbox, per store, held weakly."""

    def __init__(self) -> None:
        self._by_store: weakref.WeakKeyDictionary[
            MailboxStore, weakref.WeakValueDictionary[tuple[int, int], MailboxState]
        ] = weakref.WeakKeyDictionary()

    def get(self, store: MailboxStore, key: tuple[int, int]) -> MailboxState | None:
        try:
            states = self._by_store.get(store)
        except TypeError:  # a store that cannot be weakly referenced: no sharing
            return None
        return None if states is None else states.get(key)

    def offer(self, store: MailboxStore, state: MailboxState) -> MailboxState:
        """Register ``state`` unless a newer one is known; returns the one to use."""
        try:
            states = self._by_store.setdefault(store, weakref.WeakValueDictionary())
        except TypeError:
            return state
        current = states.get(state.key)
        if current is not None and current.modseq >= state.modseq:
            return current if current.modseq == state.modseq else state
        states[state.key] = state
        return state


_REGISTRY = _Registry()


class _SharedQuery:
    """One ``store.changes_since`` in flight and the sessions waiting for its answer.

    Each waiter gets a bare future, and the query's one done callback answers them all: a
    thousand sessions woken by one delivery cost a thousand futures, not a thousand shields
    (each a future, two closures and two context copies that live until the answer comes)."""

    __slots__ = ("published", "task", "waiters")

    def __init__(self, published: int, task: asyncio.Future[MailboxChanges]) -> None:
        self.published = published  # published() when the query started
        self.task = task
        self.waiters: list[asyncio.Future[MailboxChanges]] = []

    def join(self) -> asyncio.Future[MailboxChanges]:
        waiter: asyncio.Future[MailboxChanges] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    def answer(self) -> None:
        task = self.task
        if task.cancelled():
            for waiter in self.waiters:
                waiter.cancel()
            return
        error = task.exception()  # retrieved: if every waiter went away, nothing is logged
        for waiter in self.waiters:
            if waiter.done():  # its session went away (cancelled) while waiting
                continue
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(task.result())


# (id(store), mailbox id, modseq) -> the query for it that new askers may still join.
_QUERIES: dict[tuple[int, int, int], _SharedQuery] = {}


def changes_since(store: MailboxStore, mailbox_id: int,
                  modseq: int) -> asyncio.Future[MailboxChanges]:
    """``store.changes_since``, shared by the sessions that ask the same at the same time
    (await the result).

    Joining is allowed only while nothing was published since the query started: then every
    change announced to the caller was committed before the query began and is in its answer.
    A session that goes away while waiting cancels only its own future, never the query.
    """
    key = (id(store), mailbox_id, modseq)
    now = published()
    running = _QUERIES.get(key)
    if running is None or running.published != now:
        running = _SharedQuery(now, asyncio.ensure_future(store.changes_since(mailbox_id,
                                                                              modseq)))
        _QUERIES[key] = running
        running.task.add_done_callback(lambda _: _answer(key, running))
    return running.join()


def _answer(key: tuple[int, int, int], query: _SharedQuery) -> None:
    if _QUERIES.get(key) is query:
        del _QUERIES[key]
    query.answer()


def advance(store: MailboxStore, state: MailboxState, changes: MailboxChanges) -> MailboxState:
    """The shared state after ``state`` with ``changes``: the registry's if it already has
    one of that modseq (views in step with the store at one modseq are equal), else a new one
    that becomes the registry's."""
    known = state.known_successor(max(state.modseq, changes.highest_modseq))
    if known is not None:  # the first view to get here built and registered it
        return known
    after = state.successor(changes)
    registered = _REGISTRY.offer(store, after)
    if registered is not after and registered.modseq == after.modseq:
        return state.remember(registered)
    return after


async def current_state(store: MailboxStore, info: MailboxInfo) -> MailboxState:
    """The mailbox as it is now, as a shared state: from the registry plus what changed since,
    or, when no session has it open, from a full listing."""
    key = (info.id, info.uidvalidity)
    known = _REGISTRY.get(store, key)
    if known is not None:
        return advance(store, known, await changes_since(store, info.id, known.modseq))
    metas = await store.messages(info.id)
    # The listing may already contain changes after info.highest_modseq; changes_since
    # returns those again, and folding them in twice is harmless.
    fresh = await changes_since(store, info.id, info.highest_modseq)
    listed = MailboxState(key, info.highest_modseq, info.uidnext, [m.uid for m in metas],
                          {m.uid: m for m in metas})
    return advance(store, listed, fresh)


# ---------------------------------------------------------------------------------------------
# One session's view


@dataclass(slots=True)
class SelectedMailbox:
    info: MailboxInfo
    readonly: bool
    uids: list[int]
    messages: dict[int, MessageMeta]
    modseq: int
    uidnext: int
    ghosts: set[int] = field(default_factory=set)
    # The shared state whose ``uids`` and ``messages`` this view is using (copy on write);
    # None while the view has its own copies.
    shared: MailboxState | None = field(default=None, repr=False, compare=False)
    # IMAP4rev1 \Recent (imap.recent): the registry this view claims from (None: the client
    # enabled IMAP4rev2 and never sees the flag) and the UIDs that are recent here.
    recent_registry: RecentRegistry | None = field(default=None, repr=False, compare=False)
    recent: set[int] = field(default_factory=set, compare=False)

    @classmethod
    async def open(cls, store: MailboxStore, info: MailboxInfo, readonly: bool,
                   recent_registry: RecentRegistry | None = None) -> SelectedMailbox:
        state = await current_state(store, info)
        view = cls(info, readonly, state.uids, state.messages, state.modseq,
                   max(info.uidnext, state.uidnext), shared=state,
                   recent_registry=recent_registry)
        view.recent = view._recent_among(state.uids)
        return view

    def _recent_among(self, uids: list[int]) -> set[int]:
        """Claim (read-write) or only see (EXAMINE, RFC 3501 §6.3.2) the recent ones."""
        registry = self.recent_registry
        if registry is None or not uids:
            return set()
        if self.readonly:
            return registry.peek(self.info, uids)
        return registry.claim(self.info, uids)

    def _new_recent(self, highest_before: int) -> list[bytes]:
        """After a catch-up: the new messages this session is first to hear of become recent
        here; a RECENT response follows EXISTS when that count grew (RFC 3501 §7.3.2)."""
        registry = self.recent_registry
        if registry is None or not self.uids or self.uids[-1] <= highest_before:
            return []
        if registry.first_unclaimed(self.info) > self.uids[-1]:
            return []  # another session heard of them first: the usual case in a fan-out
        arrived = self.uids[bisect.bisect_right(self.uids, highest_before):]
        claimed = self._recent_among(arrived)
        if not claimed:
            return []
        self.recent.intersection_update(self.messages)  # forget expunged ones
        self.recent |= claimed
        return [rsp.recent(len(self.recent))]

    # -- sharing ------------------------------------------------------------------------------

    def _adopt(self, state: MailboxState) -> None:
        self.shared = state
        self.uids, self.messages = state.uids, state.messages
        self.modseq = state.modseq
        self.uidnext = max(self.uidnext, state.uidnext)

    def _make_private(self) -> None:
        """Copy on write: take own copies before the view changes on its own."""
        if self.shared is not None:
            self.uids, self.messages = list(self.uids), dict(self.messages)
            self.shared = None

    def _share_again(self, store: MailboxStore) -> None:
        """After a sync that left the view exactly the store's state at its modseq: use the
        shared state of that modseq if there is one with the same content, else offer ours."""
        if self.ghosts or self.shared is not None:
            return
        key = (self.info.id, self.info.uidvalidity)
        known = _REGISTRY.get(store, key)
        if known is not None and known.modseq == self.modseq and known.uids == self.uids \
                and known.messages == self.messages:
            self._adopt(known)
            return
        if known is None or known.modseq < self.modseq:
            mine = MailboxState(key, self.modseq, self.uidnext, self.uids, self.messages)
            self._adopt(_REGISTRY.offer(store, mine))

    # -- lookups ------------------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def highest_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def msn_of(self, uid: int) -> int | None:
        return _msn_in(self.uids, uid)

    def uid_of(self, msn: int) -> int:
        return self.uids[msn - 1]

    def meta(self, uid: int) -> MessageMeta:
        return self.messages[uid]

    def is_ghost(self, uid: int) -> bool:
        return uid in self.ghosts

    # -- changes ------------------------------------------------------------------------------

    def apply_own_update(self, metas: tuple[MessageMeta, ...] | list[MessageMeta]) -> None:
        """Record flag changes this session made, so sync() will not echo them back."""
        changed = [meta for meta in metas
                   if meta.uid in self.messages and self.messages[meta.uid] != meta]
        if not changed:
            return
        self._make_private()
        for meta in changed:
            self.messages[meta.uid] = meta

    def _remove(self, uid: int) -> int | None:
        msn = self.msn_of(uid)
        if msn is not None:
            del self.uids[msn - 1]
        self.messages.pop(uid, None)
        self.ghosts.discard(uid)
        self.recent.discard(uid)
        return msn

    def remove_now(self, uids: list[int], options: SyncOptions) -> list[bytes]:
        """Announce and drop expunged messages (a command that may send EXPUNGE)."""
        known = [uid for uid in uids if uid in self.messages]
        if not known:
            return []
        self._make_private()
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
        changes = await changes_since(store, self.info.id, self.modseq)
        state = self.shared
        highest = self.highest_uid
        if state is not None and state.modseq == self.modseq and not self.ghosts and (
                allow_expunge or not any(uid in state.messages for uid in changes.expunged)):
            after = advance(store, state, changes)
            lines = announce(state, after, changes, options, self.recent)
            self._adopt(after)
            return lines + self._new_recent(highest)
        self._make_private()
        lines = self._sync_private(changes, allow_expunge, options)
        self._share_again(store)
        return lines + self._new_recent(highest)

    def _sync_private(self, changes: MailboxChanges, allow_expunge: bool,
                      options: SyncOptions) -> list[bytes]:
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
            if _differs(known, meta, options):
                lines.append(self.flags_line(meta, options))
        if added:
            lines.append(rsp.exists(len(self.uids)))
        self.modseq = max(self.modseq, changes.highest_modseq)
        self.uidnext = max(self.uidnext, changes.uidnext)
        return lines

    def flags_line(self, meta: MessageMeta, options: SyncOptions,
                   include_uid: bool = True) -> bytes:
        return _flags_line(self.uids, meta, options, include_uid, self.recent)


def announce(before: MailboxState, after: MailboxState, changes: MailboxChanges,
             options: SyncOptions, recent: AbstractSet[int] = frozenset()) -> list[bytes]:
    """What a view that was exactly ``before`` tells its client on moving to ``after``: the
    same lines, in the same order, as the private path of :meth:`SelectedMailbox.sync`."""
    lines: list[bytes] = []
    gone = sorted(uid for uid in changes.expunged if uid in before.messages)
    if gone and options.qresync:
        lines.append(rsp.vanished(IntervalSet.from_numbers(gone)))
    elif gone:
        # From the top down, each number is the message's place in ``before`` (§7.5.1).
        lines.extend(rsp.expunge(msn) for uid in reversed(gone)
                     if (msn := _msn_in(before.uids, uid)) is not None)
    added = 0
    highest = before.uids[-1] if before.uids else 0
    for meta in changes.updated:
        known = before.messages.get(meta.uid)
        if known is None:
            added += meta.uid > highest and meta.uid in after.messages
        elif _differs(known, meta, options) and meta.uid in after.messages:
            lines.append(_flags_line(after.uids, meta, options, True, recent))
    if added:
        lines.append(rsp.exists(len(after.uids)))
    return lines


def _differs(known: MessageMeta, meta: MessageMeta, options: SyncOptions) -> bool:
    return known.flags != meta.flags or (options.condstore and known.modseq != meta.modseq)


def _msn_in(uids: Sequence[int], uid: int) -> int | None:
    index = bisect.bisect_left(uids, uid)
    if index < len(uids) and uids[index] == uid:
        return index + 1
    return None


def _flags_line(uids: Sequence[int], meta: MessageMeta, options: SyncOptions,
                include_uid: bool, recent: AbstractSet[int] = frozenset()) -> bytes:
    msn = _msn_in(uids, meta.uid)
    assert msn is not None
    items: list[tuple[str, bytes]] = []
    if include_uid:
        items.append(("UID", str(meta.uid).encode()))
    items.append(("FLAGS", rsp.flag_list(flags_of(meta, recent))))
    if options.condstore:
        items.append(("MODSEQ", f"({meta.modseq})".encode()))
    return rsp.fetch(msn, items)
