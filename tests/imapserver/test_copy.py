"""COPY, UID COPY, MOVE and UID MOVE against the real server (RFC 9051 §6.4.7-§6.4.9,
RFC 6851, RFC 4315 COPYUID, RFC 2180 §4.4 for messages expunged elsewhere)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest

from mailpost.imap import handlers
from mailpost.store.types import MailboxChanges
from tests.e2e.harness import ServerThread
from tests.imapserver.helpers import RawIMAP
from tests.imapserver.test_append import (
    ALICE,
    account_id,
    append,
    imap_client,
    metas,
)

_COPYUID = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]")


def message(n: int) -> bytes:
    return b"Subject: message %d\r\n\r\nbody %d\r\n" % (n, n)


@pytest.fixture
def client(server: ServerThread) -> Iterator[RawIMAP]:
    """Alice, logged in, INBOX selected, holding messages 1..4 (UIDs 1..4)."""
    raw = RawIMAP(server)
    raw.login()
    for n in range(1, 5):
        flags = "(\\Flagged)" if n == 2 else ""
        assert append(raw, "INBOX", message(n), flags).startswith(b"OK ")
    raw.ok("SELECT INBOX")
    yield raw
    raw.close()


def second_session(server: ServerThread, mailbox: str = "INBOX") -> RawIMAP:
    raw = RawIMAP(server)
    raw.login()
    raw.ok(f"SELECT {mailbox}")
    return raw


def uidvalidity(server: ServerThread, mailbox: str) -> int:
    info = server.call(server.store.get_mailbox(account_id(server), mailbox))
    assert info is not None
    return info.uidvalidity


def copyuid(line: bytes) -> tuple[int, bytes, bytes]:
    match = _COPYUID.search(line)
    assert match is not None, line
    return int(match.group(1)), match.group(2), match.group(3)


# -- COPY ----------------------------------------------------------------------------------------


def test_copy_answers_copyuid_and_keeps_flags_date_and_source(client: RawIMAP,
                                                             server: ServerThread) -> None:
    untagged, tagged = client.command("COPY 2:3 Archive")
    assert untagged == []
    assert tagged.split(b" ")[1] == b"OK"
    assert copyuid(tagged) == (uidvalidity(server, "Archive"), b"2:3", b"1:2")
    assert server.inbox(ALICE, "Archive") == [message(2), message(3)]
    source, copies = metas(server)[1:3], metas(server, "Archive")
    assert [m.flags for m in copies] == [m.flags for m in source]
    assert [m.internal_date for m in copies] == [m.internal_date for m in source]
    assert len(server.inbox(ALICE)) == 4  # COPY leaves the source alone


def test_imaplib_copy(server: ServerThread, client: RawIMAP) -> None:
    conn = imap_client(server)
    try:
        conn.select("INBOX")
        typ, data = conn.copy("1,4", "Trash")
    finally:
        conn.logout()
    assert typ == "OK"
    assert copyuid(data[0])[1:] == (b"1,4", b"1:2")
    assert server.inbox(ALICE, "Trash") == [message(1), message(4)]


def test_uid_copy_of_missing_uids_copies_nothing_without_copyuid(client: RawIMAP,
                                                                  server: ServerThread) -> None:
    # RFC 9051 §6.3.12 example A005: "OK No matching messages, so nothing copied".
    untagged, tagged = client.command("UID COPY 5:9 Trash")
    assert untagged == []
    assert tagged.split(b" ")[1] == b"OK" and b"COPYUID" not in tagged
    assert server.inbox(ALICE, "Trash") == []


def test_uid_copy_with_star_copies_the_highest(client: RawIMAP, server: ServerThread) -> None:
    _, tagged = client.command("UID COPY 3:* Trash")
    assert copyuid(tagged)[1:] == (b"3:4", b"1:2")


def test_copy_to_a_missing_mailbox_is_trycreate(client: RawIMAP, server: ServerThread) -> None:
    _, tagged = client.command("COPY 1 Nowhere")
    assert tagged.split(b" ", 1)[1].startswith(b"NO [TRYCREATE]"), tagged
    assert server.call(server.store.get_mailbox(account_id(server), "Nowhere")) is None


@pytest.mark.parametrize("numbers", ["5", "0", "1:5", "4294967296"])
def test_copy_beyond_the_mailbox_is_bad(client: RawIMAP, server: ServerThread,
                                        numbers: str) -> None:
    _, tagged = client.command(f"COPY {numbers} Trash")
    assert tagged.split(b" ")[1] == b"BAD", tagged
    assert server.inbox(ALICE, "Trash") == []


def test_copy_with_an_empty_saved_result_copies_nothing(client: RawIMAP,
                                                        server: ServerThread) -> None:
    _, tagged = client.command("COPY $ Trash")
    assert tagged.split(b" ")[1] == b"OK" and b"COPYUID" not in tagged
    assert server.inbox(ALICE, "Trash") == []


def test_copy_into_the_selected_mailbox_announces_exists(client: RawIMAP,
                                                         server: ServerThread) -> None:
    untagged, tagged = client.command("COPY 1 INBOX")
    assert untagged == [b"* 5 EXISTS"]
    assert copyuid(tagged)[1:] == (b"1", b"5")


def test_copy_from_an_examined_mailbox_is_allowed(client: RawIMAP, server: ServerThread) -> None:
    client.ok("EXAMINE INBOX")
    _, tagged = client.command("COPY 1 Trash")
    assert copyuid(tagged)[1:] == (b"1", b"1")


def test_copy_over_quota_copies_nothing(client: RawIMAP, server: ServerThread) -> None:
    server.call(server.store.set_quota(ALICE, None, 5))  # 4 stored, room for one more
    _, tagged = client.command("COPY 1:2 Trash")
    assert tagged.split(b" ", 1)[1].startswith(b"NO [OVERQUOTA]"), tagged
    assert server.inbox(ALICE, "Trash") == []
    assert copyuid(client.command("COPY 1 Trash")[1])[1:] == (b"1", b"1")


def test_copy_before_select_is_bad(server: ServerThread) -> None:
    raw = RawIMAP(server)
    try:
        raw.login()
        _, tagged = raw.command("COPY 1 Trash")
        assert tagged.split(b" ")[1] == b"BAD"
    finally:
        raw.close()


# -- MOVE ----------------------------------------------------------------------------------------


def test_move_sends_copyuid_then_expunges_then_ok(client: RawIMAP, server: ServerThread) -> None:
    untagged, tagged = client.command("MOVE 2:3 Archive")
    # RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs; each EXPUNGE number is
    # valid when sent (highest first, so no renumbering in between).
    assert copyuid(untagged[0])[1:] == (b"2:3", b"1:2")
    assert untagged[0].startswith(b"* OK [COPYUID ")
    assert untagged[1:] == [b"* 3 EXPUNGE", b"* 2 EXPUNGE"]
    assert tagged.split(b" ")[1] == b"OK" and b"COPYUID" not in tagged
    assert server.inbox(ALICE) == [message(1), message(4)]
    assert server.inbox(ALICE, "Archive") == [message(2), message(3)]
    assert metas(server, "Archive")[0].flags == frozenset({"\\Flagged"})  # no \Deleted
    assert client.ok("NOOP") == []  # nothing announced twice


def test_uid_move_through_imaplib(server: ServerThread, client: RawIMAP) -> None:
    conn = imap_client(server)
    try:
        conn.select("INBOX")
        typ, data = conn.uid("MOVE", "1,3", "Trash")
        untagged_ok = conn.response("OK")
    finally:
        conn.logout()
    assert typ == "OK"
    assert server.inbox(ALICE, "Trash") == [message(1), message(3)]
    assert server.inbox(ALICE) == [message(2), message(4)]
    assert any(b"COPYUID" in line for line in untagged_ok[1] if line), (data, untagged_ok)


def test_move_is_seen_by_other_sessions_at_noop(client: RawIMAP, server: ServerThread) -> None:
    watcher = second_session(server)
    target = second_session(server, "Archive")
    try:
        client.ok("MOVE 1 Archive")
        assert watcher.ok("NOOP") == [b"* 1 EXPUNGE"]
        assert target.ok("NOOP") == [b"* 1 EXISTS"]
    finally:
        watcher.close()
        target.close()


def test_move_within_the_selected_mailbox(client: RawIMAP, server: ServerThread) -> None:
    # RFC 6851 §3.3: allowed whenever COPY to the selected mailbox is.
    untagged, tagged = client.command("MOVE 1 INBOX")
    assert copyuid(untagged[0])[1:] == (b"1", b"5")
    assert untagged[1:] == [b"* 1 EXPUNGE", b"* 4 EXISTS"]
    assert tagged.split(b" ")[1] == b"OK"
    assert [m.uid for m in metas(server)] == [2, 3, 4, 5]
    assert server.inbox(ALICE)[-1] == message(1)


def test_move_from_an_examined_mailbox_is_read_only(client: RawIMAP,
                                                    server: ServerThread) -> None:
    client.ok("EXAMINE INBOX")
    untagged, tagged = client.command("MOVE 1 Trash")
    assert untagged == []
    assert tagged.split(b" ", 1)[1].startswith(b"NO [READ-ONLY]"), tagged
    assert server.inbox(ALICE, "Trash") == []
    assert len(server.inbox(ALICE)) == 4


def test_move_ignores_the_quota(client: RawIMAP, server: ServerThread) -> None:
    server.call(server.store.set_quota(ALICE, None, 4))  # full: COPY fails, MOVE does not
    assert client.command("COPY 1 Trash")[1].split(b" ", 1)[1].startswith(b"NO [OVERQUOTA]")
    untagged, tagged = client.command("MOVE 1 Trash")
    assert tagged.split(b" ")[1] == b"OK", tagged
    assert copyuid(untagged[0])[1:] == (b"1", b"1")
    assert server.inbox(ALICE, "Trash") == [message(1)]


def test_move_to_a_missing_mailbox_is_trycreate(client: RawIMAP, server: ServerThread) -> None:
    untagged, tagged = client.command("UID MOVE 1 Nowhere")
    assert untagged == []
    assert tagged.split(b" ", 1)[1].startswith(b"NO [TRYCREATE]"), tagged
    assert len(server.inbox(ALICE)) == 4


def test_move_with_condstore_reports_highestmodseq(client: RawIMAP, server: ServerThread) -> None:
    client.ok("SELECT INBOX (CONDSTORE)")
    _, tagged = client.command("MOVE 4 Trash")
    match = re.search(rb"\[HIGHESTMODSEQ (\d+)\]", tagged)
    assert match is not None, tagged
    info = server.call(server.store.get_mailbox(account_id(server), "INBOX"))
    assert info is not None and int(match.group(1)) == info.highest_modseq


def test_move_under_qresync_sends_vanished(client: RawIMAP, server: ServerThread,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # RFC 6851 §4.4: VANISHED instead of EXPUNGE once QRESYNC is enabled. QRESYNC is offered
    # here the way the lead will offer it, so that ENABLE accepts it.
    monkeypatch.setattr(handlers, "POST_LOGIN_CAPABILITIES",
                        [*handlers.POST_LOGIN_CAPABILITIES, "CONDSTORE", "QRESYNC"])
    client.ok("ENABLE QRESYNC")
    client.ok("SELECT INBOX")
    untagged, tagged = client.command("UID MOVE 2:3 Trash")
    assert copyuid(untagged[0])[1:] == (b"2:3", b"1:2")
    assert untagged[1:] == [b"* VANISHED 2:3"]
    assert b"[HIGHESTMODSEQ " in tagged


# -- messages expunged by another session (RFC 2180 §4.4) ----------------------------------------


def _expunge_elsewhere(server: ServerThread, uid: int) -> None:
    other = second_session(server)
    try:
        other.ok(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
        other.ok("EXPUNGE")
    finally:
        other.close()


def test_copy_naming_a_message_expunged_elsewhere_fails_whole(client: RawIMAP,
                                                              server: ServerThread) -> None:
    _expunge_elsewhere(server, 2)
    untagged, tagged = client.command("COPY 1:3 Trash")
    assert tagged.split(b" ", 1)[1].startswith(b"NO [EXPUNGEISSUED]"), tagged
    assert untagged == [b"* 2 EXPUNGE"]  # now the client knows, and can retry
    assert server.inbox(ALICE, "Trash") == []
    _, tagged = client.command("COPY 1:2 Trash")
    assert copyuid(tagged)[1:] == (b"1,3", b"1:2")


def test_move_naming_a_message_expunged_elsewhere_fails_whole(client: RawIMAP,
                                                              server: ServerThread) -> None:
    _expunge_elsewhere(server, 3)
    untagged, tagged = client.command("MOVE 3:4 Trash")
    assert tagged.split(b" ", 1)[1].startswith(b"NO [EXPUNGEISSUED]"), tagged
    assert untagged == [b"* 3 EXPUNGE"]
    assert server.inbox(ALICE, "Trash") == []
    assert len(server.inbox(ALICE)) == 3


def test_uid_copy_skips_a_uid_expunged_elsewhere(client: RawIMAP, server: ServerThread) -> None:
    _expunge_elsewhere(server, 2)
    untagged, tagged = client.command("UID COPY 1:3 Trash")
    assert copyuid(tagged)[1:] == (b"1,3", b"1:2")
    assert untagged == [b"* 2 EXPUNGE"]
    assert server.inbox(ALICE, "Trash") == [message(1), message(3)]


def test_uid_move_skips_a_uid_expunged_elsewhere(client: RawIMAP, server: ServerThread) -> None:
    _expunge_elsewhere(server, 1)
    untagged, tagged = client.command("UID MOVE 1:2 Trash")
    assert copyuid(untagged[0])[1:] == (b"2", b"1")
    # Our own move (message 2) and the other session's expunge (message 1), each numbered
    # against the view at the moment it is sent.
    assert untagged[1:] == [b"* 2 EXPUNGE", b"* 1 EXPUNGE"]
    assert tagged.split(b" ")[1] == b"OK", tagged
    assert server.inbox(ALICE, "Trash") == [message(2)]
    assert server.inbox(ALICE) == [message(3), message(4)]


def _hide_expunges_from_the_first_check(server: ServerThread,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate an expunge that commits between the EXPUNGEISSUED check and the copy."""
    real = server.store.changes_since
    calls: list[int] = []

    async def first_call_blind(mailbox_id: int, modseq: int) -> MailboxChanges:
        changes = await real(mailbox_id, modseq)
        calls.append(1)
        return replace(changes, expunged=()) if len(calls) == 1 else changes

    monkeypatch.setattr(server.store, "changes_since", first_call_blind)


def test_copy_losing_the_race_with_an_expunge_is_taken_back(
        client: RawIMAP, server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    _expunge_elsewhere(server, 2)
    _hide_expunges_from_the_first_check(server, monkeypatch)
    untagged, tagged = client.command("COPY 1:3 Trash")
    assert tagged.split(b" ", 1)[1].startswith(b"NO [EXPUNGEISSUED]"), tagged
    assert untagged == [b"* 2 EXPUNGE"]
    assert server.inbox(ALICE, "Trash") == []  # the two copies made were expunged again


def test_move_losing_the_race_moves_the_others_and_says_no(
        client: RawIMAP, server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    _expunge_elsewhere(server, 2)
    _hide_expunges_from_the_first_check(server, monkeypatch)
    untagged, tagged = client.command("MOVE 1:3 Trash")
    assert copyuid(untagged[0])[1:] == (b"1,3", b"1:2")
    assert untagged[1:] == [b"* 3 EXPUNGE", b"* 1 EXPUNGE", b"* 1 EXPUNGE"]
    assert tagged.split(b" ", 1)[1].startswith(b"NO [EXPUNGEISSUED]"), tagged
    assert server.inbox(ALICE, "Trash") == [message(1), message(3)]
    assert server.inbox(ALICE) == [message(4)]  # each message moved or unaffected
