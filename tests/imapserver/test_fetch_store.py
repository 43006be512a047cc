"""STORE and UID STORE end to end (RFC 9051 §6.4.6; RFC 7162 §3.1.3 UNCHANGEDSINCE, MODIFIED,
.SILENT under CONDSTORE), and how other sessions learn of the change."""

from __future__ import annotations

import re

import pytest

from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context
from tests.imapserver.fetch_support import (
    ALICE,
    deliver_many,
    fetch_items,
    fetches,
    selected,
    tagged_status,
)


@pytest.fixture
def three(server: ServerThread) -> ServerThread:
    deliver_many(server, 3)
    return server


def flags(lines: list[bytes]) -> dict[int, bytes]:
    return {msn: items["FLAGS"] for msn, items in fetches(lines).items() if "FLAGS" in items}


def test_add_remove_replace(three: ServerThread) -> None:
    client = selected(three)
    assert flags(client.ok("STORE 1:2 +FLAGS (\\Flagged $Work)")) == {
        1: b"($Work \\Flagged)", 2: b"($Work \\Flagged)"}
    assert flags(client.ok("STORE 1 -FLAGS (\\Flagged)")) == {1: b"($Work)"}
    assert flags(client.ok("STORE 2 FLAGS (\\Seen \\Answered)")) == {
        2: b"(\\Answered \\Seen)"}
    assert flags(client.ok("STORE 3 FLAGS ()")) == {3: b"()"}
    assert flags(client.ok("FETCH 1:3 FLAGS")) == {
        1: b"($Work)", 2: b"(\\Answered \\Seen)", 3: b"()"}


def test_store_reports_every_message_of_the_set(three: ServerThread) -> None:
    client = selected(three)
    client.ok("STORE 1 +FLAGS (\\Deleted)")
    # "The new value of the flags is returned as if a FETCH of those flags was done":
    # message 1 is unchanged by this STORE, yet its value is reported too.
    assert flags(client.ok("STORE 1:2 +FLAGS (\\Deleted)")) == {
        1: b"(\\Deleted)", 2: b"(\\Deleted)"}


def test_silent_sends_nothing_without_condstore(three: ServerThread) -> None:
    client = selected(three)
    assert client.ok("STORE 1:3 +FLAGS.SILENT (\\Seen)") == []
    assert client.ok("NOOP") == []
    assert set(flags(client.ok("FETCH 1:3 FLAGS")).values()) == {b"(\\Seen)"}


def test_silent_under_condstore_sends_modseq_of_changed_messages(three: ServerThread) -> None:
    client = selected(three, "INBOX", "ENABLE CONDSTORE")
    client.ok("STORE 2 +FLAGS (\\Seen)")
    got = fetches(client.ok("STORE 1:3 +FLAGS.SILENT (\\Seen)"))
    # RFC 7162 §3.1.3 and Example 14: MODSEQ, no FLAGS, only where something changed.
    assert sorted(got) == [1, 3]
    assert all(set(items) == {"MODSEQ"} for items in got.values())
    uid_got = fetches(client.ok("UID STORE 1:3 -FLAGS.SILENT (\\Seen)"))
    assert all(set(items) == {"UID", "MODSEQ"} for items in uid_got.values())
    assert sorted(uid_got) == [1, 2, 3]


def test_uid_store_includes_uid_and_skips_missing(three: ServerThread) -> None:
    client = selected(three)
    lines = client.ok("UID STORE 2,7:9 +FLAGS (\\Answered)")
    (line,) = lines
    assert fetch_items(line) == (2, {"UID": b"2", "FLAGS": b"(\\Answered)"})


def test_recent_is_ignored_and_unknown_system_flag_is_bad(three: ServerThread) -> None:
    client = selected(three)
    assert flags(client.ok("STORE 1 +FLAGS (\\Recent \\Seen)")) == {1: b"(\\Seen)"}
    _, tagged = client.command("STORE 1 +FLAGS (\\Bogus)")
    assert tagged_status(tagged) == b"BAD"
    _, tagged = client.command("STORE 4 +FLAGS (\\Seen)")
    assert tagged_status(tagged) == b"BAD"  # beyond EXISTS (catalogue I6)


def test_unchanged_since_success_and_modified(three: ServerThread) -> None:
    client = selected(three)
    lines = client.ok("FETCH 1:3 (MODSEQ)")
    modseqs = {msn: int(items["MODSEQ"].strip(b"()")) for msn, items in fetches(lines).items()}
    # The first CONDSTORE enabling command reported HIGHESTMODSEQ (RFC 7162 §3.1).
    assert any(b"[HIGHESTMODSEQ" in line for line in lines)
    top = max(modseqs.values())
    got = fetches(client.ok(f"STORE 2 (UNCHANGEDSINCE {top}) +FLAGS.SILENT (\\Deleted)"))
    assert set(got[2]) == {"MODSEQ"} and int(got[2]["MODSEQ"].strip(b"()")) > top
    # Message 2 changed after `top`: the conditional STORE fails for it only.
    lines, tagged = client.command(
        f"STORE 1:3 (UNCHANGEDSINCE {top}) +FLAGS.SILENT (\\Flagged)")
    assert tagged.endswith(b"OK [MODIFIED 2] Conditional STORE failed")
    got = fetches(lines)
    assert set(got[1]) == {"MODSEQ"} and set(got[3]) == {"MODSEQ"}
    # The failed one gets its current state, as RFC 7162 §3.1.3 recommends.
    assert got[2]["FLAGS"] == b"(\\Deleted)"
    _, tagged = client.command(f"UID STORE 1:3 (UNCHANGEDSINCE {top}) -FLAGS (\\Deleted)")
    assert b"OK [MODIFIED 1:3]" in tagged
    # RFC 7162 Example 8: UNCHANGEDSINCE 0 always fails.
    _, tagged = client.command("STORE 3 (UNCHANGEDSINCE 0) +FLAGS.SILENT ($MDNSent)")
    assert b"OK [MODIFIED 3]" in tagged
    assert b"$MDNSent" not in flags(client.ok("FETCH 3 FLAGS"))[3]


def test_other_session_sees_the_change_the_storer_does_not(three: ServerThread) -> None:
    storer, watcher = selected(three), selected(three)
    assert flags(storer.ok("STORE 1 +FLAGS (\\Flagged)")) == {1: b"(\\Flagged)"}
    assert storer.ok("NOOP") == []  # never echoed back to the storing session
    (line,) = watcher.ok("NOOP")
    # Unsolicited FETCH responses carry UID (RFC 9051 §7.5.2).
    assert fetch_items(line) == (1, {"UID": b"1", "FLAGS": b"(\\Flagged)"})
    assert watcher.ok("NOOP") == []


def test_other_session_store_carries_modseq_under_condstore(three: ServerThread) -> None:
    storer, watcher = selected(three), selected(three, "INBOX", "ENABLE CONDSTORE")
    storer.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
    (line,) = watcher.ok("NOOP")
    msn, items = fetch_items(line)
    assert msn == 2 and set(items) == {"UID", "FLAGS", "MODSEQ"}


def test_imaplib_store(three: ServerThread) -> None:
    import imaplib
    client = imaplib.IMAP4_SSL("127.0.0.1", three.port("imaps"),
                               ssl_context=client_tls_context())
    try:
        client.login(ALICE, PASSWORD)
        client.select("INBOX")
        status, data = client.store("1:2", "+FLAGS", "(\\Flagged)")
        assert status == "OK" and len(data) == 2
        status, data = client.uid("STORE", "3", "+FLAGS.SILENT", "(\\Seen)")
        assert status == "OK"
        status, data = client.fetch("1:3", "(FLAGS)")
        text = b" ".join(item for item in data if isinstance(item, bytes))
        # This session selected first, so the messages are \Recent for it (RFC 3501).
        assert re.findall(rb"FLAGS \(([^)]*)\)", text) == [
            b"\\Flagged \\Recent", b"\\Flagged \\Recent", b"\\Seen \\Recent"]
    finally:
        client.logout()
