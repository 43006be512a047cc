"""NOTIFY MailboxName and SubscriptionChange: unsolicited LIST responses for mailboxes that
other sessions create, rename, delete, subscribe or unsubscribe (RFC 5465 §5.4, §5.5)."""

from __future__ import annotations

import pytest

from tests.e2e.harness import ServerThread
from tests.imapserver.helpers import RawIMAP
from tests.imapserver.mailbox_support import extended_items, listing
from tests.imapserver.notify_support import assert_quiet, logged_in, register_notify, wait_for


@pytest.fixture(autouse=True)
def _notify(monkeypatch: pytest.MonkeyPatch) -> None:
    register_notify(monkeypatch)


def lists_until(client: RawIMAP, name: bytes) -> list[bytes]:
    """Unsolicited lines up to the LIST response for ``name``."""
    return wait_for(client, lambda line: line.startswith(b"* LIST ") and
                    line.split(b'"/" ', 1)[1].split(b" ")[0] == name)


def test_create_rename_delete_by_another_session(server: ServerThread) -> None:
    client = logged_in(server)
    client.ok("NOTIFY SET (personal (MailboxName))")
    other = logged_in(server)
    other.ok("CREATE Projects")
    assert listing(lists_until(client, b"Projects")) == {"Projects": {"\\HasNoChildren"}}
    other.ok("CREATE Projects/Q1")
    seen = lists_until(client, b"Projects/Q1")
    # The parent of a created mailbox is affected too: it has children now.
    assert listing(seen) == {"Projects": {"\\HasChildren"}, "Projects/Q1": {"\\HasNoChildren"}}
    other.ok("RENAME Projects Work")
    lines = lists_until(client, b"Work")
    # RFC 5465 §5.4: OLDNAME, and no separate event for the children that moved along.
    assert listing(lines) == {"Work": {"\\HasChildren"}}
    assert extended_items(lines) == {"Work": b'("OLDNAME" (Projects))'}
    assert_quiet(client)
    other.ok("DELETE Work/Q1")
    lines = lists_until(client, b"Work/Q1")
    assert listing(lines) == {"Work/Q1": {"\\NonExistent"}, "Work": {"\\HasNoChildren"}}


def test_own_changes_are_not_echoed(server: ServerThread) -> None:
    client = logged_in(server)
    client.ok("NOTIFY SET (personal (MailboxName SubscriptionChange))")
    for command in ("CREATE Mine/Deep", "RENAME Mine Ours", "SUBSCRIBE Ours/Deep",
                    "DELETE Ours/Deep"):
        assert listing(client.ok(command)) == {}, command
    assert_quiet(client)


def test_filters_apply_to_names(server: ServerThread) -> None:
    client = logged_in(server)
    client.ok("NOTIFY SET (subtree Lists (MailboxName)) (mailboxes Keep (MailboxName))")
    other = logged_in(server)
    other.ok("CREATE Elsewhere")
    other.ok("CREATE Lists/ietf")
    lines = lists_until(client, b"Lists/ietf")
    assert "Elsewhere" not in listing(lines)
    # A mailbox renamed into a watched name is reported; the old name did not match.
    other.ok("CREATE Old")
    other.ok("RENAME Old Keep")
    assert extended_items(lists_until(client, b"Keep")) == {"Keep": b'("OLDNAME" (Old))'}


def test_subscription_change(server: ServerThread) -> None:
    client = logged_in(server)
    client.ok("NOTIFY SET (personal (SubscriptionChange))")
    other = logged_in(server)
    other.ok("CREATE Reading")
    assert_quiet(client)  # SubscriptionChange only, no MailboxName
    other.ok("SUBSCRIBE Reading")
    assert listing(lists_until(client, b"Reading")) == {
        "Reading": {"\\Subscribed", "\\HasNoChildren"}}
    other.ok("UNSUBSCRIBE Reading")
    assert listing(lists_until(client, b"Reading")) == {"Reading": {"\\HasNoChildren"}}
    # Subscriptions may name mailboxes that do not exist (RFC 9051 §6.3.7).
    other.ok("SUBSCRIBE Nowhere")
    assert listing(lists_until(client, b"Nowhere")) == {
        "Nowhere": {"\\NonExistent", "\\Subscribed"}}


def test_subscribed_filter_sees_subscribe_and_unsubscribe(server: ServerThread) -> None:
    client = logged_in(server)
    client.ok("NOTIFY SET (subscribed (SubscriptionChange))")
    other = logged_in(server)
    other.ok("SUBSCRIBE Archive/2020")
    assert "Archive/2020" in listing(lists_until(client, b"Archive/2020"))
    other.ok("UNSUBSCRIBE Archive/2020")
    assert listing(lists_until(client, b"Archive/2020")) == {"Archive/2020": {"\\NonExistent"}}
