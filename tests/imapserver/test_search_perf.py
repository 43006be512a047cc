"""Performance sanity: searching 10,000 messages by flag touches no body and is fast."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mailpost.store.types import DeliveryTarget
from tests.e2e.harness import ServerThread
from tests.imapserver.helpers import RawIMAP
from tests.imapserver.search_support import USER, client, esearch_line, numbers, running_server

COUNT = 10_000
BATCH = 500


def _flags(n: int) -> frozenset[str]:
    if n % 7 == 0:
        return frozenset({"\\Flagged"})
    if n % 3 == 0:
        return frozenset({"\\Seen", "$Label1"})
    return frozenset()


async def _fill(server: ServerThread) -> None:
    store = server.store
    account = await store.get_account(USER)
    assert account is not None
    writer = store.blobs.writer()
    writer.write(b"From: bulk@example.test\r\nSubject: bulk\r\n\r\nthe same body\r\n")
    ref = await writer.finish()
    for start in range(1, COUNT + 1, BATCH):
        # One body shared by every copy, many targets per transaction: fast to set up.
        targets = [DeliveryTarget(account.id, "INBOX", _flags(n))
                   for n in range(start, start + BATCH)]
        await store.deliver(ref, targets)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running_server(tmp_path_factory.mktemp("perf") / "var") as running:
        running.call(_fill(running), timeout=120)
        yield running


@pytest.fixture(scope="module")
def imap(server: ServerThread) -> Iterator[RawIMAP]:
    connection = RawIMAP(server, timeout=60)
    connection.login()
    connection.ok("SELECT INBOX")
    yield connection
    connection.close()


def _timed(imap: RawIMAP, command: str) -> tuple[list[bytes], float]:
    started = time.perf_counter()
    untagged, tagged = imap.command(command)
    elapsed = time.perf_counter() - started
    assert b" OK " in tagged, tagged
    return untagged, elapsed


def test_flag_search_on_10k_messages_is_fast(imap: RawIMAP) -> None:
    untagged, elapsed = _timed(imap, "SEARCH FLAGGED")
    assert numbers(untagged) == list(range(7, COUNT + 1, 7))
    assert elapsed < 1.0, elapsed


def test_combined_view_keys_on_10k_messages_are_fast(imap: RawIMAP) -> None:
    untagged, elapsed = _timed(imap, "UID SEARCH RETURN (COUNT) OR KEYWORD $Label1 NOT UNSEEN "
                                     "UID 1:*")
    expected = sum(1 for n in range(1, COUNT + 1) if _flags(n) and n % 7)
    assert esearch_line(untagged).endswith(f"COUNT {expected}".encode())
    assert elapsed < 1.0, elapsed


def test_sort_by_arrival_on_10k_messages(server: ServerThread) -> None:
    imap = client(server)
    untagged, elapsed = _timed(imap, "SORT (REVERSE ARRIVAL) UTF-8 FLAGGED")
    assert len(numbers(untagged, b"SORT")) == COUNT // 7
    assert elapsed < 2.0, elapsed
    imap.close()
