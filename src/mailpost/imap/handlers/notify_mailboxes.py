"""NOTIFY for the mailboxes that are not selected: STATUS, and LIST for names and
subscriptions (RFC 5465 §5.1-§5.5).

Theory of operation
-------------------
A session under NOTIFY keeps a :class:`MailboxWatch`: the account's mailboxes as it last knew
them (id → name), the STATUS values it last told the client (or found when NOTIFY was set),
and the subscription list. A batch of bus changes is turned into responses by comparing that
knowledge with the store, never by trusting the change itself: the bus is a doorbell (see
:mod:`mailpost.bus`), so a coalesced, reordered or (across processes) lost notification
changes nothing in what the client is finally told.

* **Message changes** (new, expunged, flags) in a mailbox other than the selected one: the
  events wanted for the mailbox's *current* name decide whether the kind of change matters
  (MessageNew, MessageExpunge, FlagChange). If it does, the mailbox's row is read once per
  batch and ``* STATUS`` is sent when one of the items :func:`status_items` chose differs
  from what the client was last told. The items follow RFC 5465 §5.1-§5.3 and §3.1:
  MESSAGES, UIDNEXT and UIDVALIDITY for new and expunged messages, UNSEEN for flag changes
  (§5.1 allows it, and it is the only flag information a client without CONDSTORE can get),
  and HIGHESTMODSEQ once CONDSTORE is on. Only mailboxes a change touched are read: there is
  no polling.
* **MailboxName** (§5.4): when a batch holds mailbox changes, the account's mailbox list is
  read once and compared with the known one. An id that appeared is a creation, one that
  disappeared a deletion (``\\NonExistent``), one whose name changed a rename (extended LIST
  with ``OLDNAME``). The children of a renamed mailbox follow it silently ("No additional
  MailboxName events are sent for children"). Created and deleted names also affect their
  direct parent, whose ``\\HasChildren`` may have changed. INBOX is never renamed here: the
  IMAP layer's RENAME INBOX creates a new mailbox, so the client sees exactly that.
* **SubscriptionChange** (§5.5): the subscription list is read again, and each name a
  change named gets one LIST, ``\\Subscribed`` if and only if it is subscribed now. This
  one is event-driven rather than a difference: another batch may already have read the
  new list (mailbox changes reload it too), and the client must still hear of the change.
  For the ``subscribed`` filter the name counts as subscribed, since it was before or after
  the change. A rename moves subscriptions with the mailbox: that is reported by the
  rename's LIST (which carries ``\\Subscribed``), not as a separate event.

Every LIST carries accurate attributes (§5.5): ``\\NonExistent`` for a name that is not a
mailbox, the special-use attribute, ``\\Subscribed``, and ``\\HasChildren`` or
``\\HasNoChildren``. Changes this session made itself are not echoed (§5: the server
"SHOULD omit notifying the client if the event is caused by this client"): the session
notes the names its own commands touch (:class:`OwnActions`) and the batch skips them,
updating only what the watch knows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mailpost.bus import Change, ChangeKind
from mailpost.imap import responses as rsp
from mailpost.imap.handlers.mailbox_names import DELIMITER, superiors
from mailpost.imap.handlers.notify_plan import (
    FLAG_CHANGE,
    MAILBOX_NAME,
    MESSAGE_EXPUNGE,
    MESSAGE_NEW,
    SUBSCRIPTION_CHANGE,
    NotifyPlan,
    is_within,
)
from mailpost.store.interface import MailboxStore
from mailpost.store.types import MailboxInfo

StatusValues = dict[str, int]

# Which event makes which kind of message change worth a STATUS.
_EVENT_OF_KIND = {
    ChangeKind.MESSAGE_NEW: MESSAGE_NEW,
    ChangeKind.EXPUNGE: MESSAGE_EXPUNGE,
    ChangeKind.FLAGS: FLAG_CHANGE,
}
NONEXISTENT = "\\NonExistent"


def status_items(events: frozenset[str], condstore: bool) -> tuple[str, ...]:
    """The STATUS items that report ``events`` (RFC 5465 §3.1, §5.1-§5.3)."""
    items: list[str] = []
    if events & {MESSAGE_NEW, MESSAGE_EXPUNGE}:
        items += ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
    if FLAG_CHANGE in events:
        items += [item for item in ("UIDVALIDITY", "UNSEEN") if item not in items]
    if items and condstore:
        items.append("HIGHESTMODSEQ")
    return tuple(items)


def status_values(info: MailboxInfo) -> StatusValues:
    return {"MESSAGES": info.messages, "UIDNEXT": info.uidnext,
            "UIDVALIDITY": info.uidvalidity, "UNSEEN": info.unseen,
            "HIGHESTMODSEQ": info.highest_modseq}


@dataclass
class OwnActions:
    """What this session's own commands changed since the last batch (not to be echoed)."""

    names: set[str] = field(default_factory=set)  # MailboxName / SubscriptionChange
    subtrees: set[str] = field(default_factory=set)  # renamed: everything below, too
    targets: set[str] = field(default_factory=set)  # mailboxes it appended or copied to

    def covers(self, name: str) -> bool:
        return name in self.names or any(is_within(name, root) for root in self.subtrees)

    def clear(self) -> None:
        self.names.clear()
        self.subtrees.clear()
        self.targets.clear()


@dataclass
class MailboxWatch:
    """A NOTIFY session's knowledge of its account's mailboxes (see the module docstring)."""

    names: dict[int, str]
    told: dict[int, StatusValues]
    subscriptions: frozenset[str]

    @classmethod
    def of(cls, listing: Sequence[MailboxInfo], subscriptions: Iterable[str]) -> MailboxWatch:
        return cls({info.id: info.name for info in listing},
                   {info.id: status_values(info) for info in listing},
                   frozenset(subscriptions))


@dataclass(frozen=True, slots=True)
class NameEvent:
    """A MailboxName event for ``name``; ``old_name`` for a rename (RFC 5465 §5.4)."""

    name: str
    old_name: str | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """What rendering one batch needs from the session."""

    store: MailboxStore
    account_id: int
    plan: NotifyPlan
    selected_id: int | None
    condstore: bool
    utf8: bool


# --- pure parts ------------------------------------------------------------------------------


def parent_of(name: str) -> str | None:
    return next(superiors(name), None)


def name_events(before: Mapping[int, str], after: Mapping[int, str]) -> list[NameEvent]:
    """MailboxName events between two id → name maps (see the module docstring)."""
    renames = {before[i]: after[i] for i in before.keys() & after.keys() if before[i] != after[i]}
    events: dict[str, NameEvent] = {}
    for old, new in renames.items():
        if not _follows_parent(old, new, renames):
            events[new] = NameEvent(new, old)
    changed = [before[i] for i in before.keys() - after.keys()]
    changed += [after[i] for i in after.keys() - before.keys()]
    for name in changed:
        events.setdefault(name, NameEvent(name))
    for name in changed:
        parent = parent_of(name)
        if parent is not None:
            events.setdefault(parent, NameEvent(parent))
    return sorted(events.values(), key=lambda event: event.name)


def _follows_parent(old: str, new: str, renames: Mapping[str, str]) -> bool:
    """A rename that is only the consequence of renaming a superior (RFC 5465 §5.4)."""
    for parent in superiors(old):
        moved = renames.get(parent)
        if moved is not None and new == moved + old[len(parent):]:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Names:
    """The account's names as one batch sees them, for LIST attributes."""

    existing: Mapping[str, MailboxInfo]
    subscriptions: frozenset[str]
    with_children: frozenset[str]  # names with at least one existing mailbox below

    @classmethod
    def of(cls, listing: Iterable[MailboxInfo], subscriptions: frozenset[str]) -> Names:
        existing = {info.name: info for info in listing}
        parents = frozenset(parent for name in existing for parent in superiors(name))
        return cls(existing, subscriptions, parents)

    def attributes(self, name: str) -> tuple[str, ...]:
        """Accurate LIST attributes of ``name`` (RFC 5465 §5.4, §5.5; RFC 5258 §3)."""
        attributes: list[str] = []
        info = self.existing.get(name)
        if info is None:
            attributes.append(NONEXISTENT)
        elif info.special_use:
            attributes.extend(info.special_use.split())
        if name in self.subscriptions:
            attributes.append("\\Subscribed")
        # A name that is gone and has nothing below it says only \NonExistent, as in the
        # RFC 5465 §5.4 example.
        if name in self.with_children:
            attributes.append("\\HasChildren")
        elif info is not None:
            attributes.append("\\HasNoChildren")
        return tuple(attributes)

    def list_line(self, event: NameEvent, utf8: bool) -> bytes:
        extended: tuple[tuple[str, bytes], ...] = ()
        if event.old_name is not None:
            old = rsp.mailbox_name(event.old_name, utf8=utf8)
            extended = (("OLDNAME", rsp.paren_list([old])),)
        return rsp.list_response(self.attributes(event.name), DELIMITER, event.name,
                                 utf8=utf8, extended=extended)


# --- one batch -------------------------------------------------------------------------------


async def mailbox_notifications(ctx: Context, watch: MailboxWatch, changes: Sequence[Change],
                                own: OwnActions) -> list[bytes]:
    """The untagged responses for the non-selected part of a batch; updates ``watch``."""
    kinds = {change.kind for change in changes}
    lines: list[bytes] = []
    listing: dict[int, MailboxInfo] | None = None
    if kinds & {ChangeKind.MAILBOX, ChangeKind.SUBSCRIPTION}:
        listing = {info.id: info for info in await ctx.store.list_mailboxes(ctx.account_id)}
        names = Names.of(listing.values(),
                         frozenset(await ctx.store.subscriptions(ctx.account_id)))
        if ChangeKind.MAILBOX in kinds:
            lines += _name_lines(ctx, watch, listing, names, own)
        watch.subscriptions = names.subscriptions
        named = {c.mailbox_name for c in changes
                 if c.kind is ChangeKind.SUBSCRIPTION and c.mailbox_name is not None}
        named = {name for name in named if not own.covers(name)}
        lines += _subscription_lines(ctx, named, names)
    lines += await _status_lines(ctx, watch, changes, listing, own)
    return lines


def _name_lines(ctx: Context, watch: MailboxWatch, listing: Mapping[int, MailboxInfo],
                names: Names, own: OwnActions) -> list[bytes]:
    after = {mailbox_id: info.name for mailbox_id, info in listing.items()}
    events = name_events(watch.names, after)
    for gone in watch.names.keys() - after.keys():
        watch.told.pop(gone, None)
    for mailbox_id in after.keys() - watch.names.keys():
        watch.told[mailbox_id] = status_values(listing[mailbox_id])
    watch.names = after
    lines = []
    for event in events:
        if own.covers(event.name):
            continue
        wanted = ctx.plan.events_for(event.name, names.subscriptions)
        if event.old_name is not None:
            wanted |= ctx.plan.events_for(event.old_name, watch.subscriptions)
        if MAILBOX_NAME in wanted:
            lines.append(names.list_line(event, ctx.utf8))
    return lines


def _subscription_lines(ctx: Context, named: set[str], names: Names) -> list[bytes]:
    lines = []
    for name in sorted(named):
        # The name was subscribed before or after the change, so SUBSCRIBED matches it.
        wanted = ctx.plan.events_for(name, {name})
        if SUBSCRIPTION_CHANGE in wanted:
            lines.append(names.list_line(NameEvent(name), ctx.utf8))
    return lines


async def _status_lines(ctx: Context, watch: MailboxWatch, changes: Sequence[Change],
                        listing: Mapping[int, MailboxInfo] | None,
                        own: OwnActions) -> list[bytes]:
    touched: dict[int, set[str]] = {}
    for change in changes:
        event = _EVENT_OF_KIND.get(change.kind)
        if event is not None and change.mailbox_id is not None \
                and change.mailbox_id != ctx.selected_id:
            touched.setdefault(change.mailbox_id, set()).add(event)
    lines = []
    for mailbox_id, happened in touched.items():
        line = await _status_line(ctx, watch, mailbox_id, happened, listing, own)
        if line is not None:
            lines.append(line)
    return lines


async def _status_line(ctx: Context, watch: MailboxWatch, mailbox_id: int, happened: set[str],
                       listing: Mapping[int, MailboxInfo] | None,
                       own: OwnActions) -> bytes | None:
    name = watch.names.get(mailbox_id)
    if name is None:
        return None  # created and gone again, or not listed yet: MailboxName covers it
    events = ctx.plan.events_for(name, watch.subscriptions)
    if not events & happened:
        return None
    info = listing.get(mailbox_id) if listing is not None else \
        await ctx.store.get_mailbox(ctx.account_id, name)
    if info is None or info.id != mailbox_id:
        return None  # renamed or deleted meanwhile; the mailbox batch that follows says so
    values = status_values(info)
    told = watch.told.get(mailbox_id, {})
    watch.told[mailbox_id] = values
    items = status_items(events, ctx.condstore)
    if name in own.targets or all(told.get(item) == values[item] for item in items):
        return None
    return rsp.status_response(name, [(item, values[item]) for item in items], utf8=ctx.utf8)


def initial_status(ctx: Context, watch: MailboxWatch,
                   listing: Sequence[MailboxInfo]) -> list[bytes]:
    """``NOTIFY SET STATUS``: one STATUS per watched non-selected mailbox (RFC 5465 §3.1)."""
    lines = []
    for info in listing:
        if info.id == ctx.selected_id:
            continue
        items = status_items(ctx.plan.events_for(info.name, watch.subscriptions), ctx.condstore)
        if items:
            values = status_values(info)
            lines.append(rsp.status_response(info.name, [(i, values[i]) for i in items],
                                             utf8=ctx.utf8))
    return lines
