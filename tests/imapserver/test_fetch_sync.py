"""FETCH/STORE against a changing mailbox: CHANGEDSINCE and VANISHED (RFC 7162 §3.1.4.1,
§3.2.6), the EXPUNGE rule (RFC 9051 §7.5.1, catalogue I12), messages expunged elsewhere
(RFC 2180 §4), and sequence-set edge cases (catalogue I6)."""

from __future__ import annotations

import time

import pytest

from mailpost.store.errors import NotFound
from tests.e2e.harness import ServerThread
from tests.imapserver.fetch_support import (
    ALICE,
    deliver_many,
    fetches,
    selected,
    stored,
    tagged_status,
    wait_until,
)
from tests.imapserver.helpers import RawIMAP


@pytest.fixture
def five(server: ServerThread) -> ServerThread:
    deliver_many(server, 5)
    return server


def highest_modseq(lines: list[bytes]) -> int:
    (line,) = [line for line in lines if b"[HIGHESTMODSEQ " in line]
    return int(line.split(b"[HIGHESTMODSEQ ")[1].split(b"]")[0])


def expunge(client: RawIMAP, msns: str) -> None:
    client.ok(f"STORE {msns} +FLAGS.SILENT (\\Deleted)")
    client.ok("EXPUNGE")


def test_changedsince_returns_only_newer_messages(five: ServerThread) -> None:
    client = selected(five)
    before = highest_modseq(client.ok("FETCH 1 (MODSEQ)"))
    client.ok("STORE 2,4 +FLAGS.SILENT (\\Flagged)")
    got = fetches(client.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {before})"))
    assert sorted(got) == [2, 4]
    # CHANGEDSINCE implies MODSEQ (RFC 7162 §3.1.4.1).
    assert all(set(items) == {"MODSEQ", "FLAGS"} for items in got.values())
    got = fetches(client.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {before})"))
    assert {items["UID"] for items in got.values()} == {b"2", b"4"}


def test_vanished_earlier_reports_expunged_uids(five: ServerThread) -> None:
    writer = selected(five, "INBOX", "ENABLE QRESYNC")
    before = highest_modseq(writer.ok("NOOP") + writer.ok("SELECT INBOX"))
    writer.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
    expunge(writer, "3:4")
    reader = selected(five, "INBOX", "ENABLE QRESYNC")
    lines = reader.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {before} VANISHED)")
    # VANISHED (EARLIER) comes before any FETCH (RFC 7162 §3.2.6).
    assert lines[0] == b"* VANISHED (EARLIER) 3:4"
    got = fetches(lines[1:])
    assert list(got) == [1] and got[1]["FLAGS"] == b"(\\Flagged)"
    lines = reader.ok(f"UID FETCH 1:2 (FLAGS) (CHANGEDSINCE {before} VANISHED)")
    assert not any(line.startswith(b"* VANISHED") for line in lines)


def test_vanished_needs_qresync(five: ServerThread) -> None:
    client = selected(five, "INBOX", "ENABLE CONDSTORE")
    _, tagged = client.command("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    assert tagged_status(tagged) == b"BAD"
    _, tagged = client.command("FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    assert tagged_status(tagged) == b"BAD"  # never allowed with FETCH


def test_no_expunge_during_fetch_store_but_at_noop(five: ServerThread) -> None:
    other, client = selected(five), selected(five)
    expunge(other, "2")
    lines = client.ok("FETCH 1:5 (FLAGS)")
    assert sorted(fetches(lines)) == [1, 2, 3, 4, 5]  # the ghost keeps its number
    assert not any(b"EXPUNGE" in line for line in lines)
    lines = client.ok("FETCH 2 (FLAGS)")
    assert not any(b"EXPUNGE" in line for line in lines)
    assert client.ok("NOOP") == [b"* 2 EXPUNGE"]
    assert sorted(fetches(client.ok("FETCH 1:* UID"))) == [1, 2, 3, 4]


def test_uid_fetch_may_announce_the_expunge(five: ServerThread) -> None:
    other, client = selected(five), selected(five)
    expunge(other, "2")
    lines = client.ok("UID FETCH 1:* (FLAGS)")
    # "An EXPUNGE response MAY be sent during a UID command" (RFC 9051 §7.5.1): it comes
    # after the FETCH data, which still used the old numbering.
    assert lines[-1] == b"* 2 EXPUNGE"
    assert sorted(fetches(lines[:-1])) == [1, 2, 3, 4, 5]
    assert client.ok("NOOP") == []


def test_store_on_an_expunged_message_says_no(five: ServerThread) -> None:
    other, client = selected(five), selected(five)
    expunge(other, "3")
    lines, tagged = client.command("STORE 2:4 +FLAGS (\\Seen)")
    # RFC 2180 §4.2: the others are changed and reported; the tagged response is NO.
    assert tagged_status(tagged) == b"NO" and b"[EXPUNGEISSUED]" in tagged
    assert sorted(fetches(lines)) == [2, 4]
    assert not any(b"EXPUNGE" in line for line in lines)
    assert client.ok("NOOP") == [b"* 3 EXPUNGE"]
    assert set(fetches(client.ok("FETCH 2:3 FLAGS"))) == {2, 3}


def test_fetch_of_an_expunged_body_is_no_after_the_others(five: ServerThread) -> None:
    other, client = selected(five), selected(five)
    third = stored(five)[2]
    metas = five.call(_metas(five))
    blob_id = metas[2].blob_id
    expunge(other, "3")
    wait_until(lambda: _gone(five, blob_id))
    lines, tagged = client.command("FETCH 1:5 (FLAGS BODY.PEEK[])")
    assert tagged_status(tagged) == b"NO" and b"[EXPUNGEISSUED]" in tagged
    got = fetches(lines)
    assert sorted(got) == [1, 2, 4, 5]
    assert third not in [items["BODY[]"] for items in got.values()]
    # Metadata of the ghost is still answered from what the session last knew.
    assert fetches(client.ok("FETCH 3 (FLAGS UID)"))[3]["UID"] == b"3"
    assert client.ok("NOOP") == [b"* 3 EXPUNGE"]


async def _metas(server: ServerThread) -> list:  # type: ignore[type-arg]
    account = await server.store.get_account(ALICE)
    assert account is not None
    info = await server.store.get_mailbox(account.id, "INBOX")
    assert info is not None
    return await server.store.messages(info.id)


def _gone(server: ServerThread, blob_id: str) -> bool:
    try:
        server.call(server.store.blobs.read(blob_id))
    except NotFound:
        return True
    return False


def test_sequence_set_edge_cases(five: ServerThread) -> None:
    client = selected(five)
    for bad in ("FETCH 0 FLAGS", "FETCH 4294967296 FLAGS", "FETCH 6 FLAGS",
                "FETCH 1:4294967295 FLAGS", "STORE 0 +FLAGS (\\Seen)"):
        _, tagged = client.command(bad)
        assert tagged_status(tagged) == b"BAD", bad
    # RFC 9051 §9: UID 559:* is the highest UID when that is below 559.
    got = fetches(client.ok("UID FETCH 559:* FLAGS"))
    assert [items["UID"] for items in got.values()] == [b"5"]
    assert sorted(fetches(client.ok("FETCH 5:2 UID"))) == [2, 3, 4, 5]
    assert sorted(fetches(client.ok("FETCH 4,1,4:3,1 UID"))) == [1, 3, 4]
    started = time.monotonic()
    got = fetches(client.ok("UID FETCH 1:4294967295 FLAGS"))
    assert sorted(got) == [1, 2, 3, 4, 5] and time.monotonic() - started < 2
    # "$" without a saved search result is a valid empty set (RFC 5182 §2.1).
    assert client.ok("FETCH $ FLAGS") == []


def test_star_in_an_empty_mailbox_is_bad(server: ServerThread) -> None:
    client = selected(server, "Sent")
    _, tagged = client.command("FETCH * FLAGS")
    assert tagged_status(tagged) == b"BAD"
    _, tagged = client.command("FETCH 1:* FLAGS")
    assert tagged_status(tagged) == b"BAD"
    assert client.ok("UID FETCH 1:* FLAGS") == []
    assert client.ok("UID STORE * +FLAGS (\\Seen)") == []


def test_saved_search_result_dollar(five: ServerThread) -> None:
    client = selected(five)
    _, tagged = client.command("SEARCH RETURN (SAVE) 2:3")
    if tagged_status(tagged) != b"OK":
        pytest.skip("SEARCH RETURN (SAVE) is not available yet")
    assert sorted(fetches(client.ok("FETCH $ UID"))) == [2, 3]
    got = fetches(client.ok("UID FETCH $ FLAGS"))
    assert sorted(items["UID"] for items in got.values()) == [b"2", b"3"]
    assert sorted(fetches(client.ok("STORE $ +FLAGS (\\Flagged)"))) == [2, 3]
