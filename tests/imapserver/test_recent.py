"""IMAP4rev1 \\Recent (RFC 3501 §2.3.2, §6.3.1-2, §7.3.2): one session hears of a message first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailpost.imap.recent import RecentRegistry
from mailpost.store.types import MailboxInfo
from tests.e2e.harness import ServerThread, make_config
from tests.imapserver.helpers import RawIMAP, deliver

ALICE = "alice@example.test"
MESSAGE = b"From: carol@remote.test\r\nSubject: hi\r\n\r\nHi.\r\n"


def client(server: ServerThread) -> RawIMAP:
    connection = RawIMAP(server, show_recent=True)
    connection.login()
    return connection


def recent_count(lines: list[bytes]) -> int:
    [count] = [int(line.split()[1]) for line in lines if line.endswith(b" RECENT")]
    return count


def recent_flags(connection: RawIMAP) -> list[bool]:
    lines = connection.ok("FETCH 1:* (FLAGS)")
    return [b"\\Recent" in line for line in lines if b" FETCH " in line]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path / "var")) as running:
        running.add_user(ALICE)
        yield running


def test_the_first_select_takes_them_and_the_next_sees_none(server: ServerThread) -> None:
    for _ in range(2):
        deliver(server, ALICE, MESSAGE)
    first, second = client(server), client(server)
    assert recent_count(first.ok("SELECT INBOX")) == 2
    assert recent_flags(first) == [True, True]
    assert recent_count(second.ok("SELECT INBOX")) == 0
    assert recent_flags(second) == [False, False]
    assert first.ok("SEARCH RECENT") == [b"* SEARCH 1 2"]
    assert second.ok("SEARCH OLD") == [b"* SEARCH 1 2"]


def test_examine_sees_them_without_taking_them(server: ServerThread) -> None:
    deliver(server, ALICE, MESSAGE)
    looker = client(server)
    assert recent_count(looker.ok("EXAMINE INBOX")) == 1
    assert recent_flags(looker) == [True]
    assert recent_count(client(server).ok("SELECT INBOX")) == 1  # still there to take


def test_new_mail_is_recent_for_the_session_that_hears_of_it(server: ServerThread) -> None:
    watcher = client(server)
    watcher.ok("SELECT INBOX")
    watcher.send(b"i1 IDLE\r\n")
    assert watcher.read_response().startswith(b"+ ")
    deliver(server, ALICE, MESSAGE)
    assert watcher.read_response() == b"* 1 EXISTS"
    assert watcher.read_response() == b"* 1 RECENT"
    watcher.send(b"DONE\r\n")
    assert watcher.read_response().startswith(b"i1 OK")
    assert recent_flags(watcher) == [True]
    latecomer = client(server)
    assert recent_count(latecomer.ok("SELECT INBOX")) == 0


def test_status_counts_what_nobody_has_taken(server: ServerThread) -> None:
    for _ in range(3):
        deliver(server, ALICE, MESSAGE)
    observer = client(server)
    assert observer.ok("STATUS INBOX (RECENT)") == [b"* STATUS INBOX (RECENT 3)"]
    client(server).ok("SELECT INBOX")
    assert observer.ok("STATUS INBOX (RECENT)") == [b"* STATUS INBOX (RECENT 0)"]


def test_imap4rev2_clients_neither_see_nor_take_it(server: ServerThread) -> None:
    deliver(server, ALICE, MESSAGE)
    modern = client(server)
    modern.ok("ENABLE IMAP4rev2")
    lines = modern.ok("SELECT INBOX")
    assert not any(line.endswith(b" RECENT") for line in lines)
    assert recent_flags(modern) == [False]
    assert recent_count(client(server).ok("SELECT INBOX")) == 1


def test_the_marks_survive_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path / "var")
    with ServerThread(config) as running:
        running.add_user(ALICE)
        deliver(running, ALICE, MESSAGE)
        client(running).ok("SELECT INBOX")
    with ServerThread(config) as restarted:
        deliver(restarted, ALICE, MESSAGE)
        assert recent_count(client(restarted).ok("SELECT INBOX")) == 1  # only the new one


def test_the_registry_hands_each_uid_out_once() -> None:
    info = MailboxInfo(7, 1, "INBOX", None, 1, 6, 1, False, messages=5, recent_uid=3)
    registry = RecentRegistry()
    assert registry.peek(info, [1, 2, 3, 4]) == {3, 4}
    assert registry.claim(info, [1, 2, 3, 4]) == {3, 4}
    assert registry.claim(info, [3, 4, 5]) == {5}
    assert registry.claim(info, [5]) == set()
    assert registry.marks() == [(7, 6)]
