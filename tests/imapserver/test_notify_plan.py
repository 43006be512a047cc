"""NOTIFY: the rules of RFC 5465 §3.1, §5, §6 that are checked before anything is registered,
the pure parts of the non-selected notifications, and the command's answers on the wire."""

from __future__ import annotations

import pytest

from mailpost.imap.commands import Notify, NotifyEvent, NotifyGroup
from mailpost.imap.fetchatt import FetchItem
from mailpost.imap.handlers.notify_mailboxes import NameEvent, Names, name_events, status_items
from mailpost.imap.handlers.notify_plan import (
    SUPPORTED_EVENTS,
    MailboxFilter,
    NotifyRejected,
    canonical_name,
    plan_notify,
)
from mailpost.imap.parser import ParseContext, parse_command
from mailpost.store.types import MailboxInfo
from tests.e2e.harness import ServerThread
from tests.imapserver.notify_support import logged_in, register_notify

NEW_EXPUNGE = ("MessageNew", "MessageExpunge")


def group(kind: str, *events: str, names: tuple[str, ...] = ()) -> NotifyGroup:
    return NotifyGroup(kind, names, tuple(NotifyEvent(name) for name in events))


def rejection(*groups: NotifyGroup) -> NotifyRejected:
    with pytest.raises(NotifyRejected) as caught:
        plan_notify(groups)
    return caught.value


# --- plan_notify -----------------------------------------------------------------------------


def test_plan_separates_selected_from_other_groups() -> None:
    attributes = (FetchItem("UID"),)
    selected = NotifyGroup("SELECTED-DELAYED", (), (
        NotifyEvent("MessageNew", attributes), NotifyEvent("MessageExpunge"),
        NotifyEvent("FlagChange")))
    plan = plan_notify([selected, group("SUBTREE", "MessageNew", "MessageExpunge",
                                        names=("lists", "inbox/x"))])
    assert plan.selected_events == {"MessageNew", "MessageExpunge", "FlagChange"}
    assert plan.fetch_attributes == attributes
    assert plan.delayed and not plan.immediate_expunge and plan.shows_flags
    assert plan.filters == (MailboxFilter("SUBTREE", frozenset(NEW_EXPUNGE),
                                          ("lists", "INBOX/x")),)


def test_selected_none_and_absent_selected_mean_no_message_events() -> None:
    for groups in ([group("PERSONAL", "MailboxName")],
                   [NotifyGroup("SELECTED", (), None), group("PERSONAL", "MailboxName")]):
        plan = plan_notify(groups)
        assert not plan.watches_selected and not plan.immediate_expunge
    assert plan_notify([group("SELECTED", *NEW_EXPUNGE)]).immediate_expunge


@pytest.mark.parametrize("events", [
    ("MessageNew",), ("MessageExpunge",), ("FlagChange",), ("MessageNew", "FlagChange"),
    ("AnnotationChange",),
])
def test_message_events_must_come_in_pairs(events: tuple[str, ...]) -> None:
    # RFC 5465 §5: "the server MUST respond with the tagged BAD response".
    for kind in ("SELECTED", "PERSONAL"):
        assert rejection(group(kind, *events)).status == "BAD"


def test_selected_takes_only_message_events() -> None:
    failure = rejection(group("SELECTED", *NEW_EXPUNGE, "MailboxName"))
    assert failure.status == "BAD"


def test_fetch_attributes_only_for_selected() -> None:
    personal = NotifyGroup("PERSONAL", (), (NotifyEvent("MessageNew", (FetchItem("UID"),)),
                                            NotifyEvent("MessageExpunge")))
    assert rejection(personal).status == "BAD"


@pytest.mark.parametrize("event", ["AnnotationChange", "MailboxMetadataChange",
                                   "ServerMetadataChange", "X-Unknown"])
def test_unsupported_events_are_no_badevent_listing_the_supported_ones(event: str) -> None:
    extra = NEW_EXPUNGE if event == "AnnotationChange" else ()
    failure = rejection(group("PERSONAL", *extra, event))
    assert failure.status == "NO"
    # RFC 5465 §3.1: BADEVENT "MUST list names of all events supported by the server".
    assert failure.code == "BADEVENT (" + " ".join(SUPPORTED_EVENTS) + ")"
    assert event not in (failure.code or "")


def test_too_many_names_is_notificationoverflow() -> None:
    names = tuple(f"box{index}" for index in range(101))
    failure = rejection(group("MAILBOXES", "MailboxName", names=names))
    assert (failure.status, failure.code) == ("NO", "NOTIFICATIONOVERFLOW")


def test_events_for_unions_the_matching_groups() -> None:
    plan = plan_notify([group("INBOXES", *NEW_EXPUNGE), group("SUBSCRIBED", "MailboxName"),
                        group("SUBTREE", "SubscriptionChange", names=("Lists",)),
                        group("MAILBOXES", "FlagChange", *NEW_EXPUNGE, names=("a*",))])
    subscribed = {"Lists/x"}
    assert plan.events_for("INBOX", subscribed) == set(NEW_EXPUNGE)
    assert plan.events_for("Lists/x", subscribed) == {"MailboxName", "SubscriptionChange"}
    assert plan.events_for("Lists", subscribed) == {"SubscriptionChange"}
    assert plan.events_for("Listsx", subscribed) == frozenset()
    # MAILBOXES names are never wildcards (RFC 5465 §6.6).
    assert plan.events_for("abc", subscribed) == frozenset()
    assert plan.events_for("a*", subscribed) == {"FlagChange", *NEW_EXPUNGE}


def test_canonical_name() -> None:
    assert canonical_name("inbox") == "INBOX"
    assert canonical_name("Inbox/Work/") == "INBOX/Work"
    assert canonical_name("Inboxes") == "Inboxes"
    assert canonical_name("Cafe\u0301") == "Caf\u00e9"  # NFC, as the store spells names


def test_parser_output_feeds_the_planner() -> None:
    raw = (b"a NOTIFY SET STATUS (selected (MessageNew (uid body.peek[header.fields (from)])"
           b" messageexpunge)) (subtree (Lists Other) (MessageNew MessageExpunge))")
    command = parse_command([raw], [], ParseContext())
    assert isinstance(command, Notify) and command.status and command.groups is not None
    plan = plan_notify(command.groups)
    assert plan.immediate_expunge and len(plan.fetch_attributes) == 2
    assert plan.filters[0].names == ("Lists", "Other")


# --- non-selected notifications, pure parts ------------------------------------------------


def info(mailbox_id: int, name: str, special_use: str | None = None) -> MailboxInfo:
    return MailboxInfo(mailbox_id, 1, name, special_use, 7, 1, 1, False)


def test_name_events_create_delete_and_parents() -> None:
    before = {1: "INBOX", 2: "a", 3: "a/b"}
    after = {1: "INBOX", 2: "a", 4: "a/c", 5: "x/y"}
    assert name_events(before, after) == [
        NameEvent("a"), NameEvent("a/b"), NameEvent("a/c"), NameEvent("x"), NameEvent("x/y")]


def test_name_events_rename_reports_the_top_only() -> None:
    before = {2: "a", 3: "a/b", 4: "a/b/c", 5: "z"}
    after = {2: "q", 3: "q/b", 4: "q/b/c", 5: "z2"}
    assert name_events(before, after) == [NameEvent("q", "a"), NameEvent("z2", "z")]
    assert name_events({3: "a/b"}, {3: "q/b"}) == [NameEvent("q/b", "a/b")]


def test_list_attributes_are_accurate() -> None:
    names = Names.of([info(1, "INBOX"), info(2, "Sent", "\\Sent"), info(3, "a/b")],
                     frozenset({"Sent", "gone"}))
    assert names.attributes("Sent") == ("\\Sent", "\\Subscribed", "\\HasNoChildren")
    assert names.attributes("a") == ("\\NonExistent", "\\HasChildren")
    assert names.attributes("gone") == ("\\NonExistent", "\\Subscribed")
    assert names.list_line(NameEvent("a/b", "old/b"), utf8=False) == (
        b'* LIST (\\HasNoChildren) "/" a/b ("OLDNAME" (old/b))\r\n')


def test_status_items_follow_the_events() -> None:
    assert status_items(frozenset(NEW_EXPUNGE), False) == ("MESSAGES", "UIDNEXT", "UIDVALIDITY")
    assert status_items(frozenset({"FlagChange", *NEW_EXPUNGE}), True) == (
        "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")
    assert status_items(frozenset({"MailboxName"}), True) == ()


# --- on the wire -----------------------------------------------------------------------------


def test_notify_answers_on_the_wire(server: ServerThread,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    register_notify(monkeypatch)
    client = logged_in(server)
    assert b" NOTIFY" in client.ok("CAPABILITY")[0]
    _, tagged = client.command("NOTIFY SET (personal (MessageNew))")
    assert b" BAD " in tagged
    _, tagged = client.command("NOTIFY SET (selected (MessageNew MessageExpunge MailboxName))")
    assert b" BAD " in tagged
    _, tagged = client.command("NOTIFY SET (inboxes (MessageNew MessageExpunge "
                               "AnnotationChange))")
    assert tagged.endswith(b" NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName "
                           b"SubscriptionChange)] Unsupported NOTIFY event")
    _, tagged = client.command("NOTIFY SET (inbox (MessageNew MessageExpunge))")
    assert b" BAD " in tagged  # unknown filter: a syntax error
    assert client.ok("NOTIFY SET (personal (MailboxName)) (selected NONE)") == []
    assert client.ok("NOTIFY NONE") == []
