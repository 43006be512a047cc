"""NOTIFY for mailboxes that are not selected: STATUS responses pushed with no command in
progress and in IDLE, the mailbox filters, and NOTIFY NONE (RFC 5465 §3.1, §5.1-§5.3, §6)."""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness import ServerThread
from tests.imapserver.helpers import RawIMAP, deliver
from tests.imapserver.mailbox_support import account_id, message, statuses
from tests.imapserver.notify_support import (
    ALICE,
    assert_quiet,
    logged_in,
    register_notify,
    store_deliver,
    wait_for,
)

NEW_EXPUNGE = "(MessageNew MessageExpunge)"


@pytest.fixture(autouse=True)
def _notify(monkeypatch: pytest.MonkeyPatch) -> None:
    register_notify(monkeypatch)


def uidvalidity(server: ServerThread, name: str) -> str:
    mailbox = server.call(server.store.get_mailbox(account_id(server), name))
    assert mailbox is not None
    return str(mailbox.uidvalidity)


def next_status(client: RawIMAP) -> tuple[str, dict[str, str]]:
    """The next unsolicited line, which must be a STATUS response."""
    lines = wait_for(client, lambda line: True)
    parsed = statuses(lines)
    assert len(parsed) == 1, lines
    return next(iter(parsed.items()))


def test_set_status_reports_each_watched_mailbox_but_the_selected(
        server: ServerThread) -> None:
    store_deliver(server, "Junk", 2)
    client = logged_in(server)
    client.ok("SELECT INBOX")
    lines = client.ok(f"NOTIFY SET STATUS (selected {NEW_EXPUNGE}) (personal {NEW_EXPUNGE})")
    found = statuses(lines)
    # RFC 5465 §3.1: MESSAGES, UIDNEXT and UIDVALIDITY for MessageNew; not for the selected.
    assert set(found) == {"Sent", "Drafts", "Trash", "Junk", "Archive"}
    assert found["Junk"]["MESSAGES"] == "2" and found["Junk"]["UIDNEXT"] == "3"
    assert all(set(items) == {"MESSAGES", "UIDNEXT", "UIDVALIDITY"} for items in found.values())
    assert statuses(client.ok(f"NOTIFY SET (personal {NEW_EXPUNGE})")) == {}


def test_smtp_delivery_reaches_a_session_between_commands_at_once(
        server: ServerThread) -> None:
    client = logged_in(server)
    client.ok(f"NOTIFY SET (inboxes {NEW_EXPUNGE})")
    started = time.monotonic()
    deliver(server, ALICE, message("first"))
    name, items = next_status(client)  # no command sent: RFC 5465 §3.1 "at any time"
    elapsed = time.monotonic() - started
    assert (name, items["MESSAGES"], items["UIDNEXT"]) == ("INBOX", "1", "2")
    assert elapsed < 1.0, f"notification took {elapsed:.3f}s"
    assert client.ok("NOOP") == []  # already told: nothing repeated at the next command


def test_status_in_idle_and_expunge_elsewhere(server: ServerThread) -> None:
    store_deliver(server, "Archive", 2)
    client = logged_in(server)
    client.ok("SELECT INBOX")
    client.ok(f"NOTIFY SET (mailboxes Archive {NEW_EXPUNGE})")
    client.send(b"i1 IDLE\r\n")
    assert client.read_response().startswith(b"+ ")
    store_deliver(server, "Archive")
    assert next_status(client) == ("Archive", {"MESSAGES": "3", "UIDNEXT": "4",
                                               "UIDVALIDITY": uidvalidity(server, "Archive")})
    other = logged_in(server)
    other.ok("SELECT Archive")
    other.ok("STORE 1:2 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    name, items = next_status(client)
    assert (name, items["MESSAGES"], items["UIDNEXT"]) == ("Archive", "1", "4")
    client.send(b"DONE\r\n")
    assert client.read_response().startswith(b"i1 OK")


def test_filters_inboxes_subtree_mailboxes(server: ServerThread) -> None:
    client = logged_in(server)
    client.ok(f"NOTIFY SET (inboxes {NEW_EXPUNGE}) (subtree Lists {NEW_EXPUNGE})"
              f" (mailboxes (Work/Today) {NEW_EXPUNGE})")
    store_deliver(server, "Junk")
    assert_quiet(client)
    other = logged_in(server)
    # Names that did not exist at NOTIFY time are matched when the event happens.
    for name in ("Lists/ietf", "Work/Today", "Work/Today/Later", "Listsx"):
        other.ok(f"CREATE {name}")
    for name in ("Work/Today/Later", "Listsx", "Work"):
        store_deliver(server, name)
    assert_quiet(client)
    store_deliver(server, "Lists/ietf")
    assert next_status(client)[0] == "Lists/ietf"
    store_deliver(server, "Work/Today")
    assert next_status(client)[0] == "Work/Today"
    store_deliver(server, "INBOX")
    assert next_status(client)[0] == "INBOX"


def test_subscribed_filter_follows_the_subscription_list(server: ServerThread) -> None:
    other = logged_in(server)
    other.ok("CREATE Later")
    client = logged_in(server)
    client.ok(f"NOTIFY SET (subscribed {NEW_EXPUNGE})")
    store_deliver(server, "Later")
    assert_quiet(client)
    other.ok("SUBSCRIBE Later")  # RFC 5465 §6.4: the list is re-evaluated
    store_deliver(server, "Later")
    name, items = next_status(client)
    assert (name, items["MESSAGES"]) == ("Later", "2")
    other.ok("UNSUBSCRIBE Later")
    store_deliver(server, "Later")
    assert_quiet(client)


def test_flag_changes_elsewhere_report_unseen_and_highestmodseq(server: ServerThread) -> None:
    store_deliver(server, "Junk", 2)
    client = logged_in(server)
    client.ok("NOTIFY SET (personal (MessageNew MessageExpunge FlagChange))")
    other = logged_in(server)
    other.ok("SELECT Junk")
    other.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
    assert next_status(client) == ("Junk", {"MESSAGES": "2", "UIDNEXT": "3", "UIDVALIDITY":
                                            uidvalidity(server, "Junk"), "UNSEEN": "1"})
    # Without CONDSTORE a change that moves no counter is not worth a STATUS (§5.1).
    other.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    assert_quiet(client)
    client.ok("ENABLE CONDSTORE")
    other.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
    name, items = next_status(client)
    assert name == "Junk" and int(items["HIGHESTMODSEQ"]) > 1 and items["UNSEEN"] == "1"


def test_own_copy_is_not_echoed_but_others_are(server: ServerThread) -> None:
    store_deliver(server, "INBOX", 2)
    client = logged_in(server)
    client.ok("SELECT INBOX")
    client.ok(f"NOTIFY SET (personal {NEW_EXPUNGE})")
    untagged = client.ok("COPY 1 Trash")
    assert statuses(untagged) == {}  # RFC 5465 §5: not for changes this client made
    assert_quiet(client)
    other = logged_in(server)
    other.ok("SELECT INBOX")
    other.ok("COPY 2 Trash")
    name, items = next_status(client)
    assert (name, items["MESSAGES"]) == ("Trash", "2")


def test_notify_none_stops_everything(server: ServerThread) -> None:
    client = logged_in(server)
    client.ok("SELECT INBOX")
    client.ok(f"NOTIFY SET (selected {NEW_EXPUNGE}) (personal {NEW_EXPUNGE})")
    store_deliver(server, "Junk")
    assert next_status(client)[0] == "Junk"
    client.ok("NOTIFY NONE")
    store_deliver(server, "Junk")
    store_deliver(server, "INBOX")
    assert_quiet(client)
    # Plain IMAP remains: the selected mailbox is reported at the next command.
    assert client.ok("NOOP") == [b"* 1 EXISTS"]
    store_deliver(server, "Junk")
    client.send(b"i1 IDLE\r\n")
    assert client.read_response().startswith(b"+ ")
    store_deliver(server, "Archive")
    assert_quiet(client)
    client.send(b"DONE\r\n")
    assert client.read_response().startswith(b"i1 OK")
