"""SORT and UID SORT (RFC 5256 §3), ESORT return options (RFC 5267 §3), base subjects (§2.1).

The mailbox (sequence number: From / To / Cc / Subject / Date / INTERNALDATE):

1. zed    / amy  / -    / "Re: beta"     / 3 Jan 10:00 +0000            / 10 Jan
2. amy    / zed  / bob  / "alpha"        / 1 Jan 10:00 -0200 (12:00 UTC) / 8 Jan
3. Bob    / carl / amy  / "[list] Beta"  / 1 Jan 11:00 +0000            / 9 Jan
4. -      / -    / -    / (none)         / (none: INTERNALDATE 2 Jan 12:00) / 2 Jan
5. carl   / Amy  / -    / "ALPHA"        / 2 Jan 09:00 +0000            / 8 Jan (= 2's)

A message without the header sorts as the empty string, first (RFC 5256 §3); equal keys keep
sequence-number order, also under REVERSE.
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator

import pytest

from mailpost.imap.handlers.search_subject import base_subject
from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context
from tests.imapserver.helpers import RawIMAP
from tests.imapserver.search_support import (
    USER,
    client,
    esearch_line,
    expunge,
    message,
    numbers,
    put,
    running_server,
    utc,
)

MESSAGES = [
    message('From: "Zed" <zed@example.test>', "To: amy@example.test", "Subject: Re: beta",
            "Date: Wed, 03 Jan 2024 10:00:00 +0000", body="short\r\n"),
    message("From: amy@example.test", "To: zed@example.test", "Cc: bob@example.test",
            "Subject: alpha", "Date: Mon, 01 Jan 2024 10:00:00 -0200", body="x" * 300),
    message('From: "Bob" <Bob@example.test>', "To: carl@example.test",
            "Cc: Amy <amy@example.test>", "Subject: [list] Beta",
            "Date: Mon, 01 Jan 2024 11:00:00 +0000", body="y" * 900),
    message("X-Nothing: here", body="z" * 100),
    message("From: carl@example.test", 'To: "Amy" <amy@example.test>', "Subject: ALPHA",
            "Date: Tue, 02 Jan 2024 09:00:00 +0000", body="w" * 50),
]
ARRIVALS = [utc(2024, 1, 10), utc(2024, 1, 8), utc(2024, 1, 9), utc(2024, 1, 2),
            utc(2024, 1, 8)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running_server(tmp_path_factory.mktemp("sort") / "var") as running:
        # A first message, expunged, so that UIDs are sequence numbers + 1.
        put(running, [(message("Subject: gone"), (), None)])
        put(running, [(data, (), when) for data, when in zip(MESSAGES, ARRIVALS, strict=True)])
        expunge(running, [1])
        yield running


@pytest.fixture(scope="module")
def imap(server: ServerThread) -> Iterator[RawIMAP]:
    connection = client(server)
    yield connection
    connection.close()


def by_size(reverse: bool = False) -> list[int]:
    sizes = {n: len(data) for n, data in enumerate(MESSAGES, start=1)}
    return sorted(sizes, key=lambda n: sizes[n], reverse=reverse)


@pytest.mark.parametrize(("criteria", "expected"), [
    ("ARRIVAL", [4, 2, 5, 3, 1]),
    ("REVERSE ARRIVAL", [1, 3, 2, 5, 4]),   # the 2/5 tie stays in sequence order
    ("DATE", [3, 2, 5, 4, 1]),              # UTC; 4 uses its INTERNALDATE
    ("REVERSE DATE", [1, 4, 5, 2, 3]),
    ("FROM", [4, 2, 3, 5, 1]),              # addr-mailbox: "" amy bob carl zed
    ("TO", [4, 1, 5, 3, 2]),                # "" amy amy carl zed
    ("CC", [1, 4, 5, 3, 2]),                # "" "" "" amy bob
    ("SIZE", by_size()),
    ("REVERSE SIZE", by_size(reverse=True)),
    ("SUBJECT", [4, 2, 5, 1, 3]),           # "" alpha alpha beta beta
    ("SUBJECT REVERSE DATE", [4, 5, 2, 1, 3]),
    ("REVERSE SUBJECT", [1, 3, 2, 5, 4]),   # REVERSE does not reverse the implicit tie-break
    ("SUBJECT DATE", [4, 2, 5, 3, 1]),
    ("FROM SUBJECT", [4, 2, 3, 5, 1]),
])
def test_sort_criteria(imap: RawIMAP, criteria: str, expected: list[int]) -> None:
    untagged, tagged = imap.command(f"SORT ({criteria}) UTF-8 ALL")
    assert b" OK " in tagged
    assert numbers(untagged, b"SORT") == expected


def test_uid_sort(imap: RawIMAP) -> None:
    untagged, _ = imap.command("UID SORT (DATE) UTF-8 ALL")
    assert numbers(untagged, b"SORT") == [4, 3, 6, 5, 2]
    untagged, _ = imap.command("UID SORT (SUBJECT) UTF-8 2:3")  # msns, as in UID SEARCH
    assert numbers(untagged, b"SORT") == [3, 4]


def test_sort_with_search_criteria(imap: RawIMAP) -> None:
    untagged, _ = imap.command("SORT (DATE) UTF-8 TO amy")
    assert numbers(untagged, b"SORT") == [5, 1]
    untagged, _ = imap.command('SORT (SUBJECT) US-ASCII TEXT "not in mailbox"')
    assert untagged == [b"* SORT"]


def test_sort_bad_charset(imap: RawIMAP) -> None:
    _, tagged = imap.command("SORT (DATE) KOI8-R ALL")
    assert b" NO [BADCHARSET" in tagged


def test_sort_modseq(imap: RawIMAP) -> None:
    untagged, _ = imap.command("SORT (REVERSE ARRIVAL) UTF-8 MODSEQ 1")
    line = next(line for line in untagged if line.startswith(b"* SORT"))
    assert line.startswith(b"* SORT 1 3 2 5 4 (MODSEQ ")


@pytest.mark.parametrize(("command", "tail"), [
    ("SORT RETURN (ALL) (FROM) UTF-8 ALL", b"ALL 4,2:3,5,1"),  # sort order, ascending runs
    ("SORT RETURN () (DATE) UTF-8 ALL", b"ALL 3,2,5,4,1"),
    ("SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL", b"MIN 3 MAX 1 COUNT 5"),
    ("UID SORT RETURN (ALL) (REVERSE DATE) UTF-8 ALL", b"UID ALL 2,5:6,3:4"),
    ("SORT RETURN (COUNT) (DATE) UTF-8 DELETED", b"COUNT 0"),
])
def test_esort(imap: RawIMAP, command: str, tail: bytes) -> None:
    untagged, _ = imap.command(command)
    assert esearch_line(untagged).endswith(tail)


def test_esort_save(imap: RawIMAP) -> None:
    imap.ok("SORT RETURN (SAVE MIN) (DATE) UTF-8 ALL")
    untagged, _ = imap.command("SEARCH $")
    assert numbers(untagged) == [3]  # the first message in sort order


def test_imaplib_sort(server: ServerThread) -> None:
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                           ssl_context=client_tls_context()) as conn:
        conn.login(USER, PASSWORD)
        conn.select("INBOX")
        status, data = conn.sort("(SUBJECT)", "UTF-8", "ALL")
        assert status == "OK" and data == [b"4 2 5 1 3"]
        status, data = conn.uid("SORT", "(REVERSE ARRIVAL)", "UTF-8", "ALL")
        assert status == "OK" and data == [b"2 4 3 6 5"]


# --- base subject (RFC 5256 §2.1) ----------------------------------------------------------------


@pytest.mark.parametrize(("subject", "base", "reply"), [
    ("Re: hello", "hello", True),
    ("RE: [list] Re: Fwd: hello (fwd)", "hello", True),
    ("[PATCH] fix it", "fix it", False),
    ("[PATCH]", "[PATCH]", False),            # removing the blob would leave nothing
    ("[a] [b]", "[b]", False),
    ("[fwd: Re: foo]", "foo", True),
    ("Re [x]: y", "y", True),                 # subj-refwd may carry a blob before ":"
    ("  Re:\t  spaced   out  ", "spaced out", True),
    ("Fw: x", "x", True),
    ("Refactor: thing", "Refactor: thing", False),
    ("re:re:re:", "", True),
    ("=?utf-8?q?Re=3A_caf=C3=A9?=", "café", True),  # decoded first, then stripped
    ("hello (FWD)", "hello", True),
    ("", "", False),
])
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    result = base_subject(subject)
    assert (result.text, result.is_reply_or_forward) == (base, reply)


def test_base_subject_is_bounded() -> None:
    assert len(base_subject("[a]" * 100_000).text) < 3000
    assert base_subject(None).text == ""
