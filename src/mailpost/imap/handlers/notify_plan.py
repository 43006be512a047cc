"""NOTIFY SET turned into a plan: which events the client wants for which mailboxes
(RFC 5465 §3.1, §5, §6).

Theory of operation
-------------------
The parser hands over the event groups as written (``cmd.NotifyGroup``); :func:`plan_notify`
checks the rules the grammar cannot express and returns a :class:`NotifyPlan`, or raises
:class:`NotifyRejected` carrying the tagged answer:

* ``BAD`` (RFC 5465 §5): MessageNew without MessageExpunge or the reverse; FlagChange or
  AnnotationChange without both of them; a mailbox event (MailboxName, SubscriptionChange,
  ...) with SELECTED or SELECTED-DELAYED, which "only apply to <message-event>s" (§6.1); a
  FETCH attribute list anywhere but on SELECTED/SELECTED-DELAYED (§8, ``message-event``).
* ``NO [BADEVENT (...)]`` (§3.1): an event this server does not implement. The code "MUST
  list names of all events supported by the server", so it lists :data:`SUPPORTED_EVENTS`,
  not the offending names. AnnotationChange and the METADATA events are unsupported because
  mailpost has neither ANNOTATE nor METADATA; unknown names (``event-ext``) likewise.
* ``NO [NOTIFICATIONOVERFLOW]`` (§3.1: "NOTIFY too complex or expensive") when the groups
  name more than :data:`MAX_FILTER_NAMES` mailboxes.

The plan is pure data. Message events of the selected mailbox come only from the SELECTED
group, "even if the selected mailbox also appears by name" elsewhere (§3.1); every other
group is a :class:`MailboxFilter` that is evaluated *when an event happens*, against the
mailbox's name at that moment and the current subscription list (§6.4: "If the subscription
list changes, the server MUST reevaluate the list"). That is how a ``subtree`` or
``mailboxes`` name that does not exist yet starts to match once it is created, and why
nothing is expanded at NOTIFY time. ``inboxes`` is INBOX: it is the only mailbox that SMTP
delivery fills (§6.3 lets a server that cannot tell treat it as ``personal``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass

from mailpost.imap import commands as cmd
from mailpost.imap.fetchatt import FetchAttribute
from mailpost.imap.responses import Tagged
from mailpost.store.types import HIERARCHY_DELIMITER

INBOX = "INBOX"
MESSAGE_NEW = "MessageNew"
MESSAGE_EXPUNGE = "MessageExpunge"
FLAG_CHANGE = "FlagChange"
ANNOTATION_CHANGE = "AnnotationChange"
MAILBOX_NAME = "MailboxName"
SUBSCRIPTION_CHANGE = "SubscriptionChange"

SUPPORTED_EVENTS = (MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE, MAILBOX_NAME, SUBSCRIPTION_CHANGE)
MESSAGE_EVENTS = frozenset({MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE, ANNOTATION_CHANGE})
# Known events that are not message events: not allowed with SELECTED (RFC 5465 §6.1).
MAILBOX_EVENTS = frozenset({MAILBOX_NAME, SUBSCRIPTION_CHANGE, "MailboxMetadataChange",
                            "ServerMetadataChange"})
SELECTED_FILTERS = frozenset({"SELECTED", "SELECTED-DELAYED"})
# More names than this in one NOTIFY is refused as too expensive (RFC 5465 §3.1).
MAX_FILTER_NAMES = 100


class NotifyRejected(Exception):
    """A NOTIFY SET that cannot be honoured; :meth:`response` is its tagged answer."""

    def __init__(self, status: str, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code

    def response(self, tag: str) -> Tagged:
        return Tagged(tag, self.status, self.text, self.code)


def canonical_name(name: str) -> str:
    """A filter name spelled the way the store spells mailbox names: NFC, and a first
    component that is INBOX in any case as ``INBOX`` (RFC 9051 §5.1)."""
    name = unicodedata.normalize("NFC", name).removesuffix(HIERARCHY_DELIMITER)
    first, sep, rest = name.partition(HIERARCHY_DELIMITER)
    return (INBOX if first.upper() == INBOX else first) + sep + rest


def is_within(name: str, root: str) -> bool:
    """``name`` is ``root`` or below it (RFC 5465 §6.5 subtree)."""
    return name == root or name.startswith(root + HIERARCHY_DELIMITER)


@dataclass(frozen=True, slots=True)
class MailboxFilter:
    """One non-selected event group: ``kind`` is INBOXES, PERSONAL, SUBSCRIBED, SUBTREE or
    MAILBOXES (RFC 5465 §6.2-6.6); ``names`` canonical, for the last two."""

    kind: str
    events: frozenset[str]
    names: tuple[str, ...] = ()

    def matches(self, name: str, subscribed: Container[str]) -> bool:
        if self.kind == "PERSONAL":
            return True
        if self.kind == "INBOXES":
            return name == INBOX
        if self.kind == "SUBSCRIBED":
            return name in subscribed
        if self.kind == "SUBTREE":
            return any(is_within(name, root) for root in self.names)
        # MAILBOXES: exact names, "The server MUST NOT do a wildcard expansion" (§6.6).
        return name in self.names


@dataclass(frozen=True, slots=True)
class NotifyPlan:
    """What one successful NOTIFY SET asked for."""

    selected_events: frozenset[str] = frozenset()
    fetch_attributes: tuple[FetchAttribute, ...] = ()
    delayed: bool = False
    filters: tuple[MailboxFilter, ...] = ()

    def events_for(self, name: str, subscribed: Container[str]) -> frozenset[str]:
        """The events wanted for the non-selected mailbox ``name`` (union of its groups)."""
        events: set[str] = set()
        for mailbox_filter in self.filters:
            if mailbox_filter.matches(name, subscribed):
                events |= mailbox_filter.events
        return frozenset(events)

    @property
    def watches_selected(self) -> bool:
        return bool(self.selected_events)

    @property
    def immediate_expunge(self) -> bool:
        """SELECTED (not -DELAYED) with MessageExpunge: EXPUNGE may go out at any time, the
        client has given up message numbers (RFC 5465 §5.3, §6.1.1)."""
        return not self.delayed and MESSAGE_EXPUNGE in self.selected_events

    @property
    def shows_flags(self) -> bool:
        return FLAG_CHANGE in self.selected_events


def plan_notify(groups: Sequence[cmd.NotifyGroup]) -> NotifyPlan:
    """Check ``NOTIFY SET`` groups (see the module docstring) and build the plan.

    Raises:
        NotifyRejected: the command's BAD or NO answer.
    """
    for group in groups:
        _check_group(group)
    _check_supported(groups)
    _check_size(groups)
    selected = next((g for g in groups if g.filter in SELECTED_FILTERS), None)
    filters = tuple(_mailbox_filter(g) for g in groups
                    if g.filter not in SELECTED_FILTERS and g.events)
    if selected is None or not selected.events:
        return NotifyPlan(filters=filters)
    attributes = next((e.fetch_attributes for e in selected.events if e.name == MESSAGE_NEW), ())
    return NotifyPlan(frozenset(e.name for e in selected.events), attributes,
                      selected.filter == "SELECTED-DELAYED", filters)


def _check_group(group: cmd.NotifyGroup) -> None:
    events = group.events or ()
    names = {event.name for event in events}
    if group.filter in SELECTED_FILTERS:
        if names & MAILBOX_EVENTS:
            raise NotifyRejected("BAD", "Only message events may be given for the selected "
                                        "mailbox (RFC 5465 6.1)")
    elif any(event.fetch_attributes for event in events):
        raise NotifyRejected("BAD", "FETCH attributes are only allowed for the selected "
                                    "mailbox (RFC 5465 8)")
    _check_message_events(names)


def _check_message_events(names: set[str]) -> None:
    """RFC 5465 §5: MessageNew and MessageExpunge together; FlagChange and AnnotationChange
    only with both."""
    new, expunge = MESSAGE_NEW in names, MESSAGE_EXPUNGE in names
    if new != expunge:
        raise NotifyRejected("BAD", "MessageNew and MessageExpunge must be given together")
    if names & {FLAG_CHANGE, ANNOTATION_CHANGE} and not new:
        raise NotifyRejected("BAD", "FlagChange and AnnotationChange need MessageNew and "
                                    "MessageExpunge")


def _check_supported(groups: Iterable[cmd.NotifyGroup]) -> None:
    """RFC 5465 §3.1: an unsupported event is a tagged NO with BADEVENT."""
    for group in groups:
        for event in group.events or ():
            if event.name not in SUPPORTED_EVENTS:
                raise NotifyRejected("NO", "Unsupported NOTIFY event",
                                     "BADEVENT (" + " ".join(SUPPORTED_EVENTS) + ")")


def _check_size(groups: Iterable[cmd.NotifyGroup]) -> None:
    if sum(len(group.mailboxes) for group in groups) > MAX_FILTER_NAMES:
        raise NotifyRejected("NO", f"At most {MAX_FILTER_NAMES} mailbox names per NOTIFY",
                             "NOTIFICATIONOVERFLOW")


def _mailbox_filter(group: cmd.NotifyGroup) -> MailboxFilter:
    events = frozenset(event.name for event in group.events or ())
    return MailboxFilter(group.filter, events,
                         tuple(dict.fromkeys(canonical_name(n) for n in group.mailboxes)))
