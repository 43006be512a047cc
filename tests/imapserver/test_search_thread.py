"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §3), on a worked example.

The example (``THREAD_MESSAGES``), worked by hand through RFC 5256 §3 REFERENCES:

* 1 <a> Plan; 2 and 4 reference <a>, 3 references <a> <b>: step 1 makes 1 the parent of 2
  and 4 and 2 the parent of 3; step 6 sorts 1's children by date (2 on the 2nd, 4 on the 3rd):
  ``(1 (2 3)(4))``.
* 5 and 6 both point at the missing <missing@x>: a dummy with two children stays at the root
  (step 3 does not promote several children to the root): ``((5)(6))``.
* 7 Party and 8 "Re: Party" have no references; 10 (no Message-ID) references <g> = 7. Step 5
  merges 8 under 7 (8 is a reply, 7 is not); step 6 puts 10 (dated 2023) before 8:
  ``(7 (10)(8))``.
* 9 repeats 1's Message-ID <a>: only the first (lowest number) message keeps it, so 9 is
  alone: ``(9)``.
* 11 <x1> references <x2>, 12 <x2> references <x1>: 11 first becomes 12's child; making 11
  the parent of 12 would be a loop, so ``(12 11)``.
* 13 references two missing messages: both dummies are pruned, 13 is promoted to the root.
* 15 replies to 14 with the same msg-id written without the quotes: ``(14 15)``.
* Root order by sent date (the dummy by its first child, 5): 1, (5 6), 7, 9, 12, 13, 14.

ORDEREDSUBJECT groups by base subject, orders each group by date (10 is the oldest Party
message), and the threads by their first message: ``(10 (7)(8))(1 (2)(4)(3))(5 6)...``.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import time
from collections.abc import Iterator

import pytest

from mailpost.imap import responses as rsp
from mailpost.imap.handlers.search_headers import HeaderInfo, message_ids
from mailpost.imap.handlers.search_sort import Entry, ordered_subject
from mailpost.imap.handlers.search_thread import references
from mailpost.store.types import MessageMeta
from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context
from tests.imapserver.helpers import RawIMAP
from tests.imapserver.search_support import (
    THREAD_MESSAGES,
    THREAD_ORDEREDSUBJECT,
    THREAD_REFERENCES,
    USER,
    client,
    expunge,
    message,
    put,
    running_server,
)

WHEN = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)


def _entries(messages: list[bytes]) -> list[Entry]:
    entries = []
    for number, data in enumerate(messages, start=1):
        meta = MessageMeta(1, number, 1, frozenset(), WHEN, len(data), f"b{number}")
        entries.append(Entry(number, number, meta, HeaderInfo(data.split(b"\r\n\r\n")[0])))
    return entries


def _render(threads: list[rsp.ThreadNode]) -> bytes:
    return rsp.thread(threads)[len(b"* THREAD "):-2]


# --- the algorithms on their own -----------------------------------------------------------------


def test_references_worked_example() -> None:
    assert _render(references(_entries(THREAD_MESSAGES))) == THREAD_REFERENCES


def test_orderedsubject_worked_example() -> None:
    assert _render(ordered_subject(_entries(THREAD_MESSAGES))) == THREAD_ORDEREDSUBJECT


def test_references_only_threads_the_searched_messages() -> None:
    """A message outside the search result is a dummy: 2 and 4 become siblings under the
    missing 1, and a dummy with several children stays at the root."""
    chosen = [THREAD_MESSAGES[i] for i in (1, 3)]
    assert _render(references(_entries(chosen))) == b"((1)(2))"


def test_references_subject_merge_under_a_dummy() -> None:
    """Step 5: two unrelated non-reply messages with one subject get a dummy parent."""
    messages = [message("Subject: Same", "Message-ID: <p@x>", "Date: 1 Jan 2024 10:00 +0000"),
                message("Subject: same", "Message-ID: <q@x>", "Date: 2 Jan 2024 10:00 +0000")]
    assert _render(references(_entries(messages))) == b"((1)(2))"


def test_references_truncated_references_keep_the_first_link() -> None:
    """Step 1A: an existing parent is not changed by a later, shorter References list."""
    messages = [
        message("Subject: t", "Message-ID: <r1@x>", "Date: 1 Jan 2024 10:00 +0000"),
        message("Subject: Re: t", "Message-ID: <r2@x>", "References: <r1@x>",
                "Date: 2 Jan 2024 10:00 +0000"),
        message("Subject: Re: t", "Message-ID: <r3@x>", "References: <r1@x> <r2@x>",
                "Date: 3 Jan 2024 10:00 +0000"),
        message("Subject: Re: t", "Message-ID: <r4@x>", "References: <r1@x> <r3@x>",
                "Date: 4 Jan 2024 10:00 +0000"),
    ]
    assert _render(references(_entries(messages))) == b"(1 2 3 4)"


def test_deep_thread_is_iterative_and_fast() -> None:
    """A reply chain thousands deep: no recursion limit, linear-ish time."""
    depth = 3000
    messages = [message("Subject: deep", f"Message-ID: <d{n}@x>",
                        *([f"In-Reply-To: <d{n - 1}@x>"] if n else []),
                        f"Date: 1 Jan 2024 10:00:{n % 60:02d} +0000") for n in range(depth)]
    started = time.perf_counter()
    rendered = _render(references(_entries(messages)))
    assert time.perf_counter() - started < 5
    assert rendered == b"(" + b" ".join(b"%d" % n for n in range(1, depth + 1)) + b")"


def test_long_reference_chains_stay_cheap() -> None:
    """Each message names many new ancestors, building one long chain of dummies; the
    bidirectional loop check keeps this from going quadratic."""
    messages = []
    for n in range(300):
        chain = " ".join(f"<c{n}-{k}@x>" for k in range(50))
        previous = f"<m{n - 1}@x> " if n else ""
        messages.append(message("Subject: c", f"Message-ID: <m{n}@x>",
                                f"References: {previous}{chain}"))
    started = time.perf_counter()
    threads = references(_entries(messages))
    assert time.perf_counter() - started < 5
    assert len(threads) == 1


def test_message_id_normalisation() -> None:
    assert message_ids('<"01KF8JCEOCBS0045PS"@xxx.yyy.com>') == ["01KF8JCEOCBS0045PS@xxx.yyy.com"]
    assert message_ids("<a@b> (comment) <c (x) @d>  <no-at-sign> <e@f>") == \
        ["a@b", "c@d", "e@f"]
    assert message_ids("") == []


# --- over IMAP -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running_server(tmp_path_factory.mktemp("thread") / "var") as running:
        put(running, [(data, (), None) for data in THREAD_MESSAGES])
        # In Archive, UIDs are one above the sequence numbers.
        put(running, [(message("Subject: gone"), (), None)], mailbox="Archive")
        put(running, [(data, (), None) for data in THREAD_MESSAGES], mailbox="Archive")
        expunge(running, [1], "Archive")
        yield running


@pytest.fixture(scope="module")
def imap(server: ServerThread) -> Iterator[RawIMAP]:
    connection = client(server)
    yield connection
    connection.close()


def test_thread_references(imap: RawIMAP) -> None:
    untagged, tagged = imap.command("THREAD REFERENCES UTF-8 ALL")
    assert b" OK " in tagged
    assert untagged == [b"* THREAD " + THREAD_REFERENCES]


def test_thread_orderedsubject(imap: RawIMAP) -> None:
    untagged, tagged = imap.command("THREAD ORDEREDSUBJECT US-ASCII ALL")
    assert b" OK " in tagged
    assert untagged == [b"* THREAD " + THREAD_ORDEREDSUBJECT]


def test_thread_with_search_criteria(imap: RawIMAP) -> None:
    untagged, _ = imap.command('THREAD REFERENCES UTF-8 SUBJECT "plan" NOT 1')
    assert untagged == [b"* THREAD ((2 3)(4))"]
    untagged, _ = imap.command('THREAD ORDEREDSUBJECT UTF-8 TEXT "not in mailbox"')
    assert untagged == [b"* THREAD"]


def test_uid_thread(server: ServerThread) -> None:
    imap = client(server)
    imap.ok("SELECT Archive")
    untagged, _ = imap.command("UID THREAD ORDEREDSUBJECT UTF-8 SUBJECT lunch")
    assert untagged == [b"* THREAD (6 7)"]
    untagged, _ = imap.command("THREAD ORDEREDSUBJECT UTF-8 SUBJECT lunch")
    assert untagged == [b"* THREAD (5 6)"]
    imap.close()


def test_unknown_algorithm_is_refused(imap: RawIMAP) -> None:
    _, tagged = imap.command("THREAD X-FANCY UTF-8 ALL")
    assert b" NO " in tagged


def test_imaplib_thread(server: ServerThread) -> None:
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                           ssl_context=client_tls_context()) as conn:
        conn.login(USER, PASSWORD)
        conn.select("INBOX")
        status, data = conn.thread("REFERENCES", "UTF-8", "SUBJECT", "lunch")
        assert status == "OK" and data == [b"((5)(6))"]
        _, capabilities = conn.capability()
        advertised = capabilities[0].split()
        assert b"THREAD=REFERENCES" in advertised and b"THREAD=ORDEREDSUBJECT" in advertised
