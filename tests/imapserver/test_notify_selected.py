"""NOTIFY for the selected mailbox: MessageNew with FETCH attributes, FlagChange and
MessageExpunge from other sessions, SELECTED versus SELECTED-DELAYED, and what is withheld
when no message event is asked for (RFC 5465 §5.1-§5.3, §6.1)."""

from __future__ import annotations

import pytest

from tests.e2e.harness import ServerThread
from tests.imapserver.fetch_support import fetch_items
from tests.imapserver.helpers import RawIMAP
from tests.imapserver.mailbox_support import message
from tests.imapserver.notify_support import (
    assert_quiet,
    logged_in,
    register_notify,
    store_deliver,
    wait_for,
)

HEADERS = "BODY.PEEK[HEADER.FIELDS (From Subject)]"


@pytest.fixture(autouse=True)
def _notify(monkeypatch: pytest.MonkeyPatch) -> None:
    register_notify(monkeypatch)


def selected(server: ServerThread, notify: str, mailbox: str = "INBOX") -> RawIMAP:
    client = logged_in(server)
    client.ok(f"SELECT {mailbox}")
    client.ok(f"NOTIFY SET {notify}")
    return client


def other_session(server: ServerThread, mailbox: str = "INBOX") -> RawIMAP:
    client = logged_in(server)
    client.ok(f"SELECT {mailbox}")
    return client


def test_message_new_sends_exists_then_the_requested_fetch(server: ServerThread) -> None:
    store_deliver(server, "INBOX", subject="old")
    client = selected(server, f"(selected (MessageNew (UID {HEADERS}) MessageExpunge))")
    store_deliver(server, "INBOX", count=2, subject="news")
    lines = wait_for(client, lambda line: line.startswith(b"* 3 FETCH"))
    assert lines[0] == b"* 3 EXISTS"  # RFC 5465 §5.2: EXISTS first, then FETCH
    for number, line in zip((2, 3), lines[1:], strict=True):
        msn, items = fetch_items(line)
        assert (msn, items["UID"]) == (number, str(number).encode())
        assert items["BODY[HEADER.FIELDS (From Subject)]"] == (
            b"From: c@remote.test\r\nSubject: news\r\n\r\n")
    # The notification is not a read: \Seen stays unset.
    assert b"\\Seen" not in client.ok("FETCH 2:3 FLAGS")[0]


def test_own_append_gets_exists_but_no_fetch(server: ServerThread) -> None:
    client = selected(server, f"(selected (MessageNew (UID {HEADERS}) MessageExpunge))")
    body = message("mine")
    client.send(b"a1 APPEND INBOX {%d+}\r\n%s\r\n" % (len(body), body))
    untagged, tagged = client.until_tagged("a1")
    assert tagged.startswith(b"a1 OK")
    assert untagged == [b"* 1 EXISTS"]  # RFC 5465 §5.2: no FETCH for the client's own APPEND
    assert_quiet(client)


def test_flag_change_by_another_session(server: ServerThread) -> None:
    store_deliver(server, "INBOX", count=2)
    client = selected(server, "(selected (MessageNew MessageExpunge FlagChange))")
    other = other_session(server)
    other.ok("STORE 2 +FLAGS.SILENT ($Junk)")
    lines = wait_for(client, lambda line: b"FETCH" in line)
    msn, items = fetch_items(lines[-1])
    # RFC 5465 §5.1: the unsolicited FETCH "MUST include UID and FLAGS".
    assert (msn, items["UID"], items["FLAGS"]) == (2, b"2", b"($Junk)")


def test_flag_change_not_requested_is_not_sent_even_at_commands(server: ServerThread) -> None:
    store_deliver(server, "INBOX", count=2)
    client = selected(server, "(selected (MessageNew MessageExpunge))")
    other = other_session(server)
    other.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    store_deliver(server, "INBOX")
    assert wait_for(client, lambda line: True) == [b"* 3 EXISTS"]
    assert client.ok("NOOP") == []
    # The view knows the new flags: asking gives the truth.
    assert b"\\Flagged" in client.ok("FETCH 1 FLAGS")[0]


def test_selected_expunge_is_pushed_at_once(server: ServerThread) -> None:
    store_deliver(server, "INBOX", count=3)
    client = selected(server, "(selected (MessageNew MessageExpunge))")
    other = other_session(server)
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    # SELECTED with MessageExpunge: no command needed (RFC 5465 §5.3, §6.1.1).
    assert wait_for(client, lambda line: True) == [b"* 2 EXPUNGE"]


def test_selected_delayed_waits_for_a_command_that_allows_expunge(server: ServerThread) -> None:
    store_deliver(server, "INBOX", count=3)
    client = selected(server, "(selected-delayed (MessageNew MessageExpunge))")
    other = other_session(server)
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    store_deliver(server, "INBOX")
    # New mail may go out at once; the expunge waits (RFC 5465 §6.1.2).
    assert wait_for(client, lambda line: True) == [b"* 4 EXISTS"]
    assert_quiet(client)
    assert b"* 2 EXPUNGE" not in client.ok("FETCH 1:4 UID")  # no EXPUNGE during FETCH
    assert client.ok("NOOP") == [b"* 2 EXPUNGE"]


def test_without_selected_events_only_commands_report_the_mailbox(
        server: ServerThread) -> None:
    client = selected(server, "(personal (MailboxName))")
    store_deliver(server, "INBOX")
    assert_quiet(client)
    # EXISTS still comes with the next command: message numbers must stay in step.
    assert client.ok("NOOP") == [b"* 1 EXISTS"]


def test_idle_sends_the_same_events(server: ServerThread) -> None:
    store_deliver(server, "INBOX", count=2)
    client = selected(server, "(selected (MessageNew (UID) MessageExpunge))")
    client.send(b"i1 IDLE\r\n")
    assert client.read_response().startswith(b"+ ")
    store_deliver(server, "INBOX")
    assert wait_for(client, lambda line: b"FETCH" in line) == [b"* 3 EXISTS",
                                                                b"* 3 FETCH (UID 3)"]
    other = other_session(server)
    other.ok("STORE 1 +FLAGS.SILENT (\\Seen)")  # FlagChange not asked for: nothing
    other.ok("STORE 3 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    assert wait_for(client, lambda line: True) == [b"* 3 EXPUNGE"]
    client.send(b"DONE\r\n")
    assert client.read_response().startswith(b"i1 OK")


def test_qresync_expunge_is_vanished(server: ServerThread) -> None:
    store_deliver(server, "INBOX", count=3)
    client = logged_in(server)
    client.ok("ENABLE QRESYNC")
    client.ok("SELECT INBOX")
    client.ok(f"NOTIFY SET (selected (MessageNew ({HEADERS}) MessageExpunge))")
    other = other_session(server)
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    assert wait_for(client, lambda line: True) == [b"* VANISHED 2"]  # RFC 5465 §5.3
    store_deliver(server, "INBOX", subject="late")
    lines = wait_for(client, lambda line: b"FETCH" in line)
    assert lines[0] == b"* 3 EXISTS"
    msn, items = fetch_items(lines[1])
    # Under QRESYNC the unsolicited FETCH carries the UID even if not asked (RFC 7162 §3.2.4).
    assert (msn, items["UID"]) == (3, b"4")
