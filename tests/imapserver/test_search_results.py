"""Result shapes: ESEARCH (RFC 4731), SEARCHRES (RFC 5182), the IMAP4rev2 form (RFC 9051
§6.4.4), MODSEQ (RFC 7162 §3.1.5, RFC 4731 §3.2) and the EXPUNGE rule (RFC 9051 §7.5.1)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from mailpost.imap.commands import Search
from mailpost.imap.handlers.search import saved_uids
from mailpost.imap.handlers.search import search as search_handler
from mailpost.imap.responses import Tagged
from mailpost.imap.search import AllKey, TextKey
from mailpost.imap.selected import SelectedMailbox, SyncOptions
from mailpost.store.errors import StoreUnavailable
from mailpost.store.types import FlagMode, MailboxInfo, MessageMeta
from tests.e2e.harness import ServerThread
from tests.imapserver.helpers import RawIMAP
from tests.imapserver.search_support import (
    client,
    esearch_line,
    expunge,
    mailbox_id,
    message,
    numbers,
    put,
    running_server,
    search,
)

# Ten messages; 2, 3, 4, 9 and 10 are flagged; 5 and 6 seen.
FLAGGED = {2, 3, 4, 9, 10}
SEEN = {5, 6}


def _specs() -> list[tuple[bytes, tuple[str, ...], None]]:
    specs: list[tuple[bytes, tuple[str, ...], None]] = []
    for n in range(1, 11):
        flags: tuple[str, ...] = ("\\Flagged",) if n in FLAGGED else ("\\Seen",) if n in SEEN else ()
        specs.append((message(f"Subject: message {n}", f"From: sender{n}@example.test",
                              body=f"text number {n}\r\n"), flags, None))
    return specs


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with running_server(tmp_path / "var") as running:
        put(running, _specs())
        yield running


@pytest.fixture
def imap(server: ServerThread) -> Iterator[RawIMAP]:
    connection = client(server)
    yield connection
    connection.close()


# --- ESEARCH -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("command", "expected"), [
    ("SEARCH RETURN (MIN COUNT) FLAGGED", b'* ESEARCH (TAG "t3") MIN 2 COUNT 5'),
    ("SEARCH RETURN () FLAGGED", b'* ESEARCH (TAG "t3") ALL 2:4,9:10'),
    ("SEARCH RETURN (ALL) FLAGGED", b'* ESEARCH (TAG "t3") ALL 2:4,9:10'),
    ("SEARCH RETURN (MAX) FLAGGED", b'* ESEARCH (TAG "t3") MAX 10'),
    ("SEARCH RETURN (MIN MAX ALL COUNT) FLAGGED",
     b'* ESEARCH (TAG "t3") MIN 2 MAX 10 ALL 2:4,9:10 COUNT 5'),
    ("SEARCH RETURN (COUNT) DELETED", b'* ESEARCH (TAG "t3") COUNT 0'),
    # No match: MIN, MAX and ALL are left out, but the response is still sent.
    ("SEARCH RETURN (MIN MAX ALL) DELETED", b'* ESEARCH (TAG "t3")'),
    ("UID SEARCH RETURN (MIN MAX) 3:6", b'* ESEARCH (TAG "t3") UID MIN 3 MAX 6'),
    ("UID SEARCH RETURN (MIN MAX) UID 1:5000", b'* ESEARCH (TAG "t3") UID MIN 1 MAX 10'),
    ("UID SEARCH RETURN (ALL) SEEN", b'* ESEARCH (TAG "t3") UID ALL 5:6'),
])
def test_esearch_return_options(imap: RawIMAP, command: str, expected: bytes) -> None:
    untagged, tagged = imap.command(command)
    assert b" OK " in tagged
    assert untagged == [expected]


def test_unknown_return_option_is_bad(imap: RawIMAP) -> None:
    _, tagged = imap.command("SEARCH RETURN (PARTIAL) ALL")
    assert b" BAD " in tagged


def test_esearch_after_expunge_numbers_still_compact(server: ServerThread,
                                                     imap: RawIMAP) -> None:
    """ALL is a sequence set of message numbers, not UIDs, unless UID SEARCH."""
    expunge(server, [1])
    imap.ok("NOOP")
    assert esearch_line(imap.command("SEARCH RETURN (ALL) FLAGGED")[0]).endswith(
        b"ALL 1:3,8:9")
    assert esearch_line(imap.command("UID SEARCH RETURN (ALL) FLAGGED")[0]).endswith(
        b"UID ALL 2:4,9:10")


# --- IMAP4rev2 ---------------------------------------------------------------------------------


def test_imap4rev2_client_gets_esearch(imap: RawIMAP) -> None:
    """RFC 9051 §6.4.4: with no result option ALL is assumed, answered by ESEARCH."""
    imap.ok("ENABLE IMAP4rev2")
    untagged, _ = imap.command("SEARCH FLAGGED")
    assert untagged == [b'* ESEARCH (TAG "t4") ALL 2:4,9:10']
    untagged, _ = imap.command("UID SEARCH SEEN")
    assert untagged == [b'* ESEARCH (TAG "t5") UID ALL 5:6']
    untagged, _ = imap.command("SEARCH DELETED")
    assert untagged == [b'* ESEARCH (TAG "t6")']


def test_imap4rev1_client_gets_search(imap: RawIMAP) -> None:
    assert imap.command("SEARCH FLAGGED")[0] == [b"* SEARCH 2 3 4 9 10"]
    assert imap.command("SEARCH DELETED")[0] == [b"* SEARCH"]


# --- SEARCHRES ---------------------------------------------------------------------------------


def test_save_sends_nothing_and_dollar_reuses_the_result(imap: RawIMAP) -> None:
    untagged, tagged = imap.command("SEARCH RETURN (SAVE) FLAGGED")
    assert untagged == [] and b" OK " in tagged
    assert search(imap, "$") == [2, 3, 4, 9, 10]
    assert search(imap, "$ 1:3") == [2, 3]
    assert search(imap, "OR $ 5") == [2, 3, 4, 5, 9, 10]
    untagged, _ = imap.command("UID SEARCH UID $")
    assert numbers(untagged) == [2, 3, 4, 9, 10]


def test_uid_search_save_used_as_sequence_numbers(server: ServerThread,
                                                  imap: RawIMAP) -> None:
    """RFC 5182 §2.1: "$" follows the numbering of the command that uses it."""
    expunge(server, [1])
    imap.ok("NOOP")  # message 2 is now sequence number 1
    imap.ok("UID SEARCH RETURN (SAVE) FLAGGED")
    assert search(imap, "$") == [1, 2, 3, 8, 9]
    assert numbers(imap.command("UID SEARCH $")[0]) == [2, 3, 4, 9, 10]


@pytest.mark.parametrize(("options", "saved"), [
    ("SAVE MIN", [2]), ("SAVE MAX", [10]), ("MAX SAVE MIN", [2, 10]),
    ("SAVE MIN COUNT", [2, 3, 4, 9, 10]), ("ALL SAVE MIN", [2, 3, 4, 9, 10]),
    ("SAVE", [2, 3, 4, 9, 10]),
])
def test_save_with_min_max(imap: RawIMAP, options: str, saved: list[int]) -> None:
    """RFC 5182 §2.4, the table: SAVE with only MIN/MAX keeps only those."""
    imap.ok(f"SEARCH RETURN ({options}) FLAGGED")
    assert search(imap, "$") == saved


def test_search_without_save_keeps_the_variable(imap: RawIMAP) -> None:
    imap.ok("SEARCH RETURN (SAVE) SEEN")
    imap.ok("SEARCH RETURN (ALL) FLAGGED")
    imap.command("SEARCH 99")  # BAD: must not change it either
    assert search(imap, "$") == [5, 6]


def test_bad_search_with_save_keeps_the_variable(imap: RawIMAP) -> None:
    """RFC 9051 §6.4.4.1: a SEARCH answered BAD does not change "$" (even with SAVE)."""
    imap.ok("SEARCH RETURN (SAVE) SEEN")
    _, tagged = imap.command("SEARCH RETURN (SAVE) 99")
    assert b" BAD " in tagged
    assert search(imap, "$") == [5, 6]


def test_empty_saved_result_is_valid(imap: RawIMAP) -> None:
    assert search(imap, "$") == []  # nothing saved yet: a valid, empty set
    imap.ok("SEARCH RETURN (SAVE) DELETED")
    assert search(imap, "$") == []
    assert search(imap, "OR $ 1") == [1]


def test_saved_result_belongs_to_the_selected_mailbox(server: ServerThread,
                                                      imap: RawIMAP) -> None:
    put(server, [(message("Subject: archived"), ("\\Flagged",), None)], mailbox="Archive")
    imap.ok("SEARCH RETURN (SAVE) FLAGGED")
    imap.ok("SELECT Archive")
    assert search(imap, "$") == []  # RFC 5182 §2.1: SELECT resets it
    imap.ok("SELECT INBOX")
    assert search(imap, "$") == []


def test_expunged_messages_leave_the_saved_result(server: ServerThread,
                                                  imap: RawIMAP) -> None:
    imap.ok("SEARCH RETURN (SAVE) FLAGGED")
    expunge(server, [3])
    imap.ok("NOOP")
    assert numbers(imap.command("UID SEARCH $")[0]) == [2, 4, 9, 10]
    assert search(imap, "$") == [2, 3, 8, 9]


def test_uid_fetch_dollar(imap: RawIMAP) -> None:
    imap.ok("SEARCH RETURN (SAVE) SEEN")
    untagged, tagged = imap.command("UID FETCH $ FLAGS")
    if b"not supported" in tagged:
        pytest.skip("FETCH is not available yet")
    assert b" OK " in tagged
    uids = sorted(int(m.group(1)) for line in untagged
                  if (m := re.search(rb"UID (\d+)", line)) is not None)
    assert uids == [5, 6]


# --- MODSEQ ------------------------------------------------------------------------------------


def _bump(server: ServerThread, uids: list[int]) -> int:
    """Change flags of ``uids`` in the store; returns their new modseq."""
    update = server.call(server.store.store_flags(mailbox_id(server), uids, FlagMode.ADD,
                                                  frozenset({"$Touched"})))
    return max(meta.modseq for meta in update.changed)


def test_search_modseq(server: ServerThread, imap: RawIMAP) -> None:
    touched = _bump(server, [4, 7])
    imap.ok("NOOP")
    untagged, _ = imap.command(f"SEARCH MODSEQ {touched}")
    # The first CONDSTORE enabling command reports HIGHESTMODSEQ (RFC 7162 §3.1).
    assert untagged[0].startswith(b"* OK [HIGHESTMODSEQ ")
    assert untagged[1] == f"* SEARCH 4 7 (MODSEQ {touched})".encode()
    untagged, _ = imap.command(f"SEARCH MODSEQ {touched + 1}")
    assert untagged == [b"* SEARCH"]  # no MODSEQ part on an empty result
    untagged, _ = imap.command(f'SEARCH MODSEQ "/flags/\\\\draft" all {touched}')
    assert untagged == [f"* SEARCH 4 7 (MODSEQ {touched})".encode()]


def test_search_modseq_enables_condstore(server: ServerThread, imap: RawIMAP) -> None:
    imap.ok("SEARCH MODSEQ 1")
    _bump(server, [1])  # another device changes flags: the update now carries MODSEQ
    untagged = imap.ok("NOOP")
    assert any(b"FETCH" in line and b"MODSEQ (" in line for line in untagged), untagged
    untagged, _ = imap.command("SEARCH MODSEQ 1")
    assert not any(b"HIGHESTMODSEQ" in line for line in untagged)  # only the first time


def test_esearch_modseq(server: ServerThread, imap: RawIMAP) -> None:
    """RFC 4731 §3.2: MIN alone reports the MIN message's modseq, otherwise the highest."""
    first = _bump(server, [2])
    second = _bump(server, [9])
    imap.ok("NOOP")
    line = esearch_line(imap.command(f"SEARCH RETURN (MIN) MODSEQ {first}")[0])
    assert line.endswith(f"MIN 2 MODSEQ {first}".encode())
    line = esearch_line(imap.command(f"SEARCH RETURN (MIN MAX) MODSEQ {first}")[0])
    assert line.endswith(f"MIN 2 MAX 9 MODSEQ {second}".encode())
    line = esearch_line(imap.command(f"SEARCH RETURN (ALL) MODSEQ {first}")[0])
    assert line.endswith(f"ALL 2,9 MODSEQ {second}".encode())
    line = esearch_line(imap.command(f"SEARCH RETURN (COUNT) MODSEQ {second + 1}")[0])
    assert line.endswith(b"COUNT 0")


# --- EXPUNGE during SEARCH -----------------------------------------------------------------------


def test_no_expunge_during_search_but_during_uid_search(server: ServerThread,
                                                        imap: RawIMAP) -> None:
    """RFC 9051 §7.5.1: no EXPUNGE while answering SEARCH; UID SEARCH may send it."""
    expunge(server, [2])
    untagged, _ = imap.command("SEARCH ALL")
    assert not any(b"EXPUNGE" in line for line in untagged)
    assert numbers(untagged) == list(range(1, 11))  # 2 keeps its number for now
    untagged, _ = imap.command("UID SEARCH FLAGGED")
    assert b"* 2 EXPUNGE" in untagged
    assert numbers(untagged) == [3, 4, 9, 10]  # the known-gone UID is not reported
    assert search(imap, "FLAGGED") == [2, 3, 8, 9]


# --- a search with SAVE that answers NO (RFC 9051 §6.4.4.1) ---------------------------------------


class _FailingBlobs:
    async def read(self, ref: object, start: int = 0, end: int | None = None) -> bytes:
        raise StoreUnavailable("disk trouble")


class _FakeSession:
    """Just what the SEARCH handler touches."""

    def __init__(self, view: SelectedMailbox) -> None:
        self.selected = view
        self.store = SimpleNamespace(blobs=_FailingBlobs())
        self.enabled: set[str] = set()
        self.saved_search: list[int] | None = None
        self.options = SyncOptions()
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def _view() -> SelectedMailbox:
    when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    info = MailboxInfo(1, 1, "INBOX", None, 7, 3, 5, True)
    metas = {uid: MessageMeta(1, uid, 5, frozenset(), when, 10, f"b{uid}") for uid in (1, 2)}
    return SelectedMailbox(info, False, [1, 2], metas, 5, 3)


async def test_search_with_save_answered_no_empties_the_variable() -> None:
    session = cast(Any, _FakeSession(_view()))
    response = await search_handler(session, Search("a1", AllKey(), return_options=("SAVE",)))
    assert isinstance(response, Tagged) and response.status == "OK"
    assert saved_uids(session) == [1, 2]
    failing = TextKey("BODY", "x")
    response = await search_handler(session, Search("a2", failing))  # no SAVE: unchanged
    assert isinstance(response, Tagged) and response.status == "NO"
    assert saved_uids(session) == [1, 2]
    response = await search_handler(session, Search("a3", failing, return_options=("SAVE",)))
    assert isinstance(response, Tagged)
    assert (response.status, response.code) == ("NO", "UNAVAILABLE")
    assert saved_uids(session) == []
