"""FETCH side effects and large bodies: \\Seen versus PEEK (RFC 9051 §6.4.5), read-only
mailboxes, and byte-exact streaming of a 5 MB message (security catalogue I10)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.e2e.harness import ServerThread, make_config
from tests.imapserver.fetch_support import (
    ALICE,
    deliver_many,
    fetch_items,
    fetches,
    selected,
    simple_message,
    stored,
    tagged_status,
)
from tests.imapserver.helpers import RawIMAP, deliver


def flags_of(client: RawIMAP, msn: int) -> bytes:
    return fetches(client.ok(f"FETCH {msn} FLAGS"))[msn]["FLAGS"]


@pytest.mark.parametrize("item", ["BODY.PEEK[]", "BODY.PEEK[TEXT]", "BINARY.PEEK[1]",
                                  "RFC822.HEADER", "RFC822.SIZE", "BODYSTRUCTURE",
                                  "BINARY.SIZE[1]"])
def test_peek_and_metadata_leave_seen_alone(server: ServerThread, item: str) -> None:
    deliver(server, ALICE, simple_message())
    client = selected(server)
    items = fetches(client.ok(f"FETCH 1 ({item})"))[1]
    assert "FLAGS" not in items
    assert flags_of(client, 1) == b"()"


@pytest.mark.parametrize("item", ["BODY[]", "BODY[TEXT]", "BODY[HEADER]", "BINARY[1]",
                                  "RFC822", "RFC822.TEXT", "BODY[1]<0.3>"])
def test_body_fetch_sets_seen_and_reports_it(server: ServerThread, item: str) -> None:
    deliver(server, ALICE, simple_message())
    client = selected(server)
    lines = client.ok(f"FETCH 1 ({item})")
    # RFC 9051 §6.4.5: the changed flags come in the same FETCH response.
    assert fetches(lines)[1]["FLAGS"] == b"(\\Seen)"
    assert flags_of(client, 1) == b"(\\Seen)"
    # Already seen: nothing changes, so no FLAGS this time.
    assert "FLAGS" not in fetches(client.ok(f"FETCH 1 ({item})"))[1]
    # Our own change is not echoed again at the next command.
    assert client.ok("NOOP") == []


def test_requested_flags_show_the_new_value_once(server: ServerThread) -> None:
    deliver(server, ALICE, simple_message())
    client = selected(server)
    (line,) = client.ok("FETCH 1 (FLAGS BODY[TEXT])")
    assert line.count(b"FLAGS") == 1
    assert fetch_items(line)[1]["FLAGS"] == b"(\\Seen)"


def test_seen_under_qresync_carries_uid_and_modseq(server: ServerThread) -> None:
    deliver(server, ALICE, simple_message())
    client = selected(server, "INBOX", "ENABLE QRESYNC")
    items = fetches(client.ok("FETCH 1 (BODY[TEXT])"))[1]
    # RFC 7162 §3.2.4: UID and MODSEQ in every FETCH caused by setting \Seen.
    assert set(items) == {"UID", "MODSEQ", "BODY[TEXT]", "FLAGS"}


def test_read_only_mailbox_never_sets_seen(server: ServerThread) -> None:
    deliver(server, ALICE, simple_message())
    client = RawIMAP(server)
    client.login()
    client.ok("EXAMINE INBOX")
    items = fetches(client.ok("FETCH 1 (BODY[] RFC822.TEXT)"))[1]
    assert "FLAGS" not in items
    assert flags_of(client, 1) == b"()"
    _, tagged = client.command("STORE 1 +FLAGS (\\Seen)")
    assert tagged_status(tagged) == b"NO" and b"[READ-ONLY]" in tagged
    client.ok("SELECT INBOX")
    assert flags_of(client, 1) == b"()"


def test_seen_is_set_for_many_messages_at_once(server: ServerThread) -> None:
    deliver_many(server, 3)
    client = selected(server)
    client.ok("STORE 2 +FLAGS (\\Seen)")
    got = fetches(client.ok("FETCH 1:3 (BODY[TEXT])"))
    assert got[1]["FLAGS"] == b"(\\Seen)" and got[3]["FLAGS"] == b"(\\Seen)"
    assert "FLAGS" not in got[2]


def big_message(size: int) -> bytes:
    """A message of about ``size`` octets with varied, checkable lines."""
    lines, total, index = [], 0, 0
    while total < size:
        line = b"%08d " % index + hashlib.sha256(b"%d" % index).hexdigest().encode() + b"\r\n"
        lines.append(line)
        total += len(line)
        index += 1
    return simple_message("big", b"".join(lines))


def test_five_megabyte_body_is_streamed_byte_exact(server: ServerThread) -> None:
    deliver(server, ALICE, big_message(5 * 1024 * 1024))
    data = stored(server)[0]
    assert len(data) > 5 * 1024 * 1024
    client = selected(server)
    (line,) = client.ok("FETCH 1 (UID BODY.PEEK[] RFC822.SIZE)")
    items = fetch_items(line)[1]
    assert items["BODY[]"] == data
    assert items["RFC822.SIZE"] == str(len(data)).encode()
    assert items["UID"] == b"1"  # the items after the literal arrive intact
    (line,) = client.ok("FETCH 1 (BODY.PEEK[]<4000000.100> BODY.PEEK[TEXT]<3.7>)")
    items = fetch_items(line)[1]
    assert items["BODY[]<4000000>"] == data[4000000:4000100]
    text = data[data.index(b"\r\n\r\n") + 4:]
    assert items["BODY[TEXT]<3>"] == text[3:10]
    (line,) = client.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODYSTRUCTURE)")
    assert fetch_items(line)[1]["BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: big\r\n\r\n"
    # Whole body again, the way a real client asks, and RFC822.
    (line,) = client.ok("FETCH 1 RFC822")
    assert fetch_items(line)[1]["RFC822"] == data


def test_binary_body_octets_pass_through(server: ServerThread) -> None:
    payload = os.urandom(3000).hex().encode()
    deliver(server, ALICE, simple_message("hex", payload + b"\r\n"))
    client = selected(server)
    items = fetches(client.ok("FETCH 1 (BINARY.PEEK[1] BODY.PEEK[1])"))[1]
    assert items["BINARY[1]"] == items["BODY[1]"] == payload + b"\r\n"


def test_a_client_that_stops_reading_is_cut_off(tmp_path: Path) -> None:
    # A short write deadline (the default is two minutes).
    config = make_config(tmp_path / "var")
    config = replace(config, imap=replace(config.imap, write_timeout=1.0))
    with ServerThread(config) as server:
        server.add_user(ALICE)
        deliver(server, ALICE, big_message(5 * 1024 * 1024))
        size = len(stored(server)[0])
        greedy = RawIMAP(server)
        greedy.login()
        greedy.ok("SELECT INBOX")
        commands = 10
        greedy.send(b"".join(b"f%d FETCH 1 BODY.PEEK[]\r\n" % n for n in range(commands)))
        # Other sessions are served meanwhile.
        other = selected(server)
        assert fetches(other.ok("FETCH 1 (RFC822.SIZE)"))[1]["RFC822.SIZE"] == b"%d" % size
        time.sleep(2.5)
        greedy.sock.settimeout(5)
        received = len(greedy.buffer)
        with contextlib.suppress(OSError):
            while chunk := greedy.sock.recv(1 << 20):
                received += len(chunk)
        # The server gave up long before sending all it was asked for.
        assert received < commands * size // 2
        assert b"Subject: big" in selected(server).ok("FETCH 1 BODY.PEEK[HEADER]")[0]
