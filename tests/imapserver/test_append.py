"""APPEND against the real server: RFC 9051 §6.3.12, RFC 3502 MULTIAPPEND, RFC 4315 APPENDUID,
RFC 3516 binary literals, RFC 6855 §4 UTF8 data, RFC 7888 literals, and what a dropped
connection leaves behind."""

from __future__ import annotations

import datetime as dt
import gc
import imaplib
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailpost.store.errors import StoreUnavailable
from mailpost.store.sqlite import messages as sqlite_messages
from mailpost.store.types import MessageMeta
from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context
from tests.imapserver.helpers import RawIMAP

ALICE = "alice@example.test"
MESSAGE = (b"From: Fred Foobar <foobar@example.com>\r\nSubject: afternoon meeting\r\n"
           b"To: mooch@example.com\r\n\r\nHello Joe, do you think we can meet at 3:30?\r\n")
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]")


# -- helpers shared with the other APPEND/COPY test files ------------------------------------


@pytest.fixture
def client(server: ServerThread) -> Iterator[RawIMAP]:
    raw = RawIMAP(server)
    raw.login()
    yield raw
    raw.close()


def imap_client(server: ServerThread) -> imaplib.IMAP4_SSL:
    conn = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=client_tls_context())
    conn.login(ALICE, PASSWORD)
    return conn


def append(client: RawIMAP, mailbox: str, message: bytes, options: str = "") -> bytes:
    """APPEND with a non-synchronising literal (one round trip); returns the tagged response
    without its tag, e.g. ``b"OK [APPENDUID 1 1] APPEND completed"``."""
    tag = client.next_tag()
    head = f"{tag} APPEND {mailbox} {options + ' ' if options else ''}{{{len(message)}+}}\r\n"
    client.send(head.encode() + message + b"\r\n")
    return client.until_tagged(tag)[1].split(b" ", 1)[1]


def metas(server: ServerThread, mailbox: str = "INBOX", address: str = ALICE) -> list[MessageMeta]:
    async def load() -> list[MessageMeta]:
        account = await server.store.get_account(address)
        assert account is not None
        info = await server.store.get_mailbox(account.id, mailbox)
        assert info is not None
        return await server.store.messages(info.id)
    return server.call(load())


def account_id(server: ServerThread, address: str = ALICE) -> int:
    account = server.call(server.store.get_account(address))
    assert account is not None
    return account.id


def appenduid(tagged: bytes) -> tuple[int, bytes]:
    match = _APPENDUID.search(tagged)
    assert match is not None, tagged
    return int(match.group(1)), match.group(2)


def start_literal(client: RawIMAP, command: bytes) -> bytes:
    """Send a command ending in a synchronising literal; return the server's next line."""
    client.send(command + b"\r\n")
    return client.read_response()


# -- the basic command -------------------------------------------------------------------------


def test_imaplib_append_with_flags_and_date_is_stored_byte_exact(server: ServerThread) -> None:
    conn = imap_client(server)
    when = dt.datetime(2024, 2, 7, 21, 52, 25, tzinfo=dt.timezone(dt.timedelta(hours=-8)))
    typ, data = conn.append("INBOX", r"(\Seen \Flagged $Label)", when, MESSAGE)
    conn.logout()
    assert typ == "OK"
    uidvalidity, uid = appenduid(data[0])
    assert uid == b"1"
    assert server.inbox(ALICE) == [MESSAGE]
    [meta] = metas(server)
    assert meta.uid == 1
    assert meta.flags == frozenset({"\\Seen", "\\Flagged", "$Label"})
    assert meta.internal_date == when
    assert meta.size == len(MESSAGE)
    info = server.call(server.store.get_mailbox(account_id(server), "INBOX"))
    assert info is not None and info.uidvalidity == uidvalidity


def test_octets_are_stored_as_received_without_crlf_rewriting(client: RawIMAP,
                                                              server: ServerThread) -> None:
    odd = b"Subject: x\nX-8bit: caf\xc3\xa9\r\n\r\nbare LF\nbare CR\rend"
    client.ok("ENABLE UTF8=ACCEPT")  # 8-bit header fields need it (RFC 6855 §4)
    assert append(client, "INBOX", odd).startswith(b"OK ")
    assert server.inbox(ALICE) == [odd]


def test_default_internal_date_is_now_and_recent_is_not_stored(client: RawIMAP,
                                                               server: ServerThread) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    assert append(client, "INBOX", MESSAGE, r"(\Recent \Draft)").startswith(b"OK ")
    after = dt.datetime.now(dt.UTC)
    [meta] = metas(server)
    assert before <= meta.internal_date <= after
    assert meta.flags == frozenset({"\\Draft"})


def test_unknown_system_flag_is_refused(client: RawIMAP, server: ServerThread) -> None:
    reply = start_literal(client, b"a1 APPEND INBOX (\\Seen \\Bogus) {5}")
    assert reply.startswith(b"a1 NO "), reply
    assert b"\\Bogus" in reply
    assert server.inbox(ALICE) == []


def test_synchronising_literal_to_missing_mailbox_gets_trycreate_without_continuation(
        client: RawIMAP, server: ServerThread) -> None:
    reply = start_literal(client, b"a1 APPEND Nowhere {12}")
    assert reply.startswith(b"a1 NO [TRYCREATE]"), reply
    client.ok("NOOP")  # the connection is still in step: the client sent no octets
    # RFC 9051 §6.3.12: the server MUST NOT create the mailbox by itself.
    assert server.call(server.store.get_mailbox(account_id(server), "Nowhere")) is None


def test_non_synchronising_literal_to_missing_mailbox_is_drained(client: RawIMAP,
                                                                  server: ServerThread) -> None:
    tagged = append(client, "Nowhere", MESSAGE)
    assert tagged.startswith(b"NO [TRYCREATE]"), tagged
    client.ok("NOOP")
    assert server.inbox(ALICE) == []


def test_append_after_create_succeeds(client: RawIMAP, server: ServerThread) -> None:
    assert append(client, "Later", MESSAGE).startswith(b"NO [TRYCREATE]")
    server.call(server.store.create_mailbox(account_id(server), "Later"))
    assert append(client, "Later", MESSAGE).startswith(b"OK [APPENDUID ")
    assert server.inbox(ALICE, "Later") == [MESSAGE]


def test_huge_synchronising_literal_is_refused_before_any_octet(client: RawIMAP) -> None:
    # Security catalogue I1: no "+" and nothing allocated for a 4 GB announcement.
    reply = start_literal(client, b"a1 APPEND INBOX {4294967295}")
    assert reply.startswith(b"a1 NO [TOOBIG]"), reply
    client.ok("NOOP")


def test_append_before_login_is_refused(server: ServerThread) -> None:
    raw = RawIMAP(server)
    try:
        reply = start_literal(raw, b"a1 APPEND INBOX {5}")
        assert reply.startswith(b"a1 BAD"), reply
        assert server.inbox(ALICE) == []
    finally:
        raw.close()


# -- MULTIAPPEND (RFC 3502) and APPENDUID (RFC 4315 §3) ----------------------------------------


def test_multiappend_stores_all_in_order_with_a_uid_set(client: RawIMAP,
                                                         server: ServerThread) -> None:
    first, second, third = b"Subject: 1\r\n\r\none\r\n", b"Subject: 2\r\n\r\ntwo\r\n", b"3"
    client.send(b"m1 APPEND INBOX (\\Seen) {%d+}\r\n%s (\\Answered) {%d+}\r\n%s {%d+}\r\n%s\r\n"
                % (len(first), first, len(second), second, len(third), third))
    _, tagged = client.until_tagged("m1")
    assert appenduid(tagged)[1] == b"1:3"
    assert server.inbox(ALICE) == [first, second, third]
    assert [m.flags for m in metas(server)] == [
        frozenset({"\\Seen"}), frozenset({"\\Answered"}), frozenset()]


def test_multiappend_with_synchronising_literals(client: RawIMAP, server: ServerThread) -> None:
    assert start_literal(client, b"m1 APPEND INBOX {3}") == b"+ Ready"
    client.send(b"one {3}\r\n")
    assert client.read_response() == b"+ Ready"
    client.send(b"two\r\n")
    _, tagged = client.until_tagged("m1")
    assert appenduid(tagged)[1] == b"1:2"
    assert server.inbox(ALICE) == [b"one", b"two"]


def test_multiappend_is_atomic_when_the_second_message_is_over_quota(
        client: RawIMAP, server: ServerThread) -> None:
    server.call(server.store.set_quota(ALICE, None, 1))  # room for one message only
    assert start_literal(client, b"m1 APPEND INBOX {3}") == b"+ Ready"
    client.send(b"one {3}\r\n")
    reply = client.read_response()
    assert reply.startswith(b"m1 NO [OVERQUOTA]"), reply  # no "+": the client sends nothing
    client.ok("NOOP")
    assert server.inbox(ALICE) == []


def test_multiappend_over_quota_non_synchronising_is_drained_and_stores_nothing(
        client: RawIMAP, server: ServerThread) -> None:
    server.call(server.store.set_quota(ALICE, 10))  # bytes
    client.send(b"m1 APPEND INBOX {4+}\r\nfour {20+}\r\n" + b"x" * 20 + b"\r\n")
    _, tagged = client.until_tagged("m1")
    assert tagged.startswith(b"m1 NO [OVERQUOTA]"), tagged
    client.ok("NOOP")
    assert server.inbox(ALICE) == []


def test_single_message_over_byte_quota(client: RawIMAP, server: ServerThread) -> None:
    server.call(server.store.set_quota(ALICE, 100))
    reply = start_literal(client, b"a1 APPEND INBOX {101}")
    assert reply.startswith(b"a1 NO [OVERQUOTA]"), reply
    assert append(client, "INBOX", b"x" * 100).startswith(b"OK ")
    assert len(server.inbox(ALICE)) == 1


# -- the selected mailbox ----------------------------------------------------------------------


def test_append_to_the_selected_mailbox_announces_exists(client: RawIMAP) -> None:
    client.ok("SELECT INBOX")
    assert append(client, "INBOX", MESSAGE).startswith(b"OK ")
    tag = client.next_tag()
    client.send(f"{tag} APPEND INBOX {{{len(MESSAGE)}+}}\r\n".encode() + MESSAGE + b"\r\n")
    untagged, tagged = client.until_tagged(tag)
    assert untagged == [b"* 2 EXISTS"]
    assert b"[APPENDUID " in tagged
    assert client.ok("NOOP") == []  # announced once, not again


def test_append_to_another_mailbox_is_not_announced(client: RawIMAP) -> None:
    client.ok("SELECT INBOX")
    tag = client.next_tag()
    client.send(f"{tag} APPEND Drafts {{{len(MESSAGE)}+}}\r\n".encode() + MESSAGE + b"\r\n")
    untagged, tagged = client.until_tagged(tag)
    assert untagged == []
    assert b" OK [APPENDUID " in tagged


def test_second_session_sees_the_appended_message_at_noop(server: ServerThread,
                                                          client: RawIMAP) -> None:
    other = RawIMAP(server)
    try:
        other.login()
        other.ok("SELECT INBOX")
        assert append(client, "INBOX", MESSAGE).startswith(b"OK ")
        assert other.ok("NOOP") == [b"* 1 EXISTS"]
    finally:
        other.close()


# -- binary and UTF-8 --------------------------------------------------------------------------


def test_binary_literal_with_nul_is_stored_exactly(client: RawIMAP, server: ServerThread) -> None:
    body = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    body += bytes(range(256)) * 4
    client.send(b"b1 APPEND INBOX ~{%d+}\r\n" % len(body) + body + b"\r\n")
    _, tagged = client.until_tagged("b1")
    assert b" OK [APPENDUID " in tagged
    assert server.inbox(ALICE) == [body]


def test_nul_in_a_plain_literal_is_refused_and_nothing_is_stored(client: RawIMAP,
                                                                 server: ServerThread) -> None:
    client.send(b"b1 APPEND INBOX {5+}\r\na\x00bcd\r\n")
    _, tagged = client.until_tagged("b1")
    assert tagged.startswith(b"b1 BAD"), tagged
    client.ok("NOOP")
    assert append(client, "INBOX", MESSAGE).startswith(b"OK ")  # a later APPEND is unaffected
    assert server.inbox(ALICE) == [MESSAGE]


UTF8_MESSAGE = "Subject: Grüße\r\nFrom: jörg@例え.jp\r\n\r\nHallo\r\n".encode()


def test_utf8_data_item_is_stored_exactly(client: RawIMAP, server: ServerThread) -> None:
    client.ok("ENABLE UTF8=ACCEPT IMAP4rev2")
    client.send(b"u1 APPEND INBOX UTF8 (~{%d+}\r\n" % len(UTF8_MESSAGE) + UTF8_MESSAGE + b")\r\n")
    _, tagged = client.until_tagged("u1")
    assert b" OK [APPENDUID " in tagged
    assert server.inbox(ALICE) == [UTF8_MESSAGE]


def test_multiappend_mixing_utf8_and_plain_messages(client: RawIMAP, server: ServerThread) -> None:
    plain = b"Subject: plain\r\n\r\nx"
    client.ok("ENABLE UTF8=ACCEPT")
    client.send(b"u1 APPEND INBOX UTF8 (~{%d+}\r\n" % len(UTF8_MESSAGE) + UTF8_MESSAGE
                + b") (\\Seen) {%d+}\r\n" % len(plain) + plain + b"\r\n")
    _, tagged = client.until_tagged("u1")
    assert appenduid(tagged)[1] == b"1:2"
    assert server.inbox(ALICE) == [UTF8_MESSAGE, plain]


def test_eight_bit_header_without_enable_is_refused(client: RawIMAP, server: ServerThread) -> None:
    # RFC 6855 §4: a server offering UTF8=ACCEPT MUST say NO to 8-bit header fields from a
    # client that did not enable it; the same octets in the body are fine.
    refused = append(client, "INBOX", UTF8_MESSAGE)
    assert refused.startswith(b"NO "), refused
    body_only = b"Subject: plain\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    assert append(client, "INBOX", body_only).startswith(b"OK ")
    assert server.inbox(ALICE) == [body_only]


def test_eight_bit_header_after_enable_is_accepted(client: RawIMAP, server: ServerThread) -> None:
    client.ok("ENABLE UTF8=ACCEPT")
    assert append(client, "INBOX", UTF8_MESSAGE).startswith(b"OK ")
    assert server.inbox(ALICE) == [UTF8_MESSAGE]


# -- streaming, dropped connections --------------------------------------------------------------


def _tmp_files(server: ServerThread) -> list[str]:
    return os.listdir(server.config.data_dir / "tmp")


def test_connection_drop_mid_append_stores_nothing(server: ServerThread) -> None:
    raw = RawIMAP(server)
    raw.login()
    raw.ok("SELECT INBOX")
    assert start_literal(raw, b"d1 APPEND INBOX {300000}") == b"+ Ready"
    raw.send(b"y" * 200_000)  # past the in-memory threshold: a temporary file exists
    deadline = time.monotonic() + 10
    while not _tmp_files(server) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _tmp_files(server), "the partial body should have spilled to a temporary file"
    raw.close()
    deadline = time.monotonic() + 10
    while _tmp_files(server) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert _tmp_files(server) == []
    assert server.inbox(ALICE) == []
    after = RawIMAP(server)
    after.login()
    assert after.ok("SELECT INBOX")[0] == b"* 0 EXISTS"
    after.close()


def test_multiappend_cut_short_by_a_bad_message_stores_nothing(client: RawIMAP,
                                                               server: ServerThread) -> None:
    client.send(b"m1 APPEND INBOX {3+}\r\none {5+}\r\na\x00bcd\r\n")
    _, tagged = client.until_tagged("m1")
    assert tagged.startswith(b"m1 BAD"), tagged
    client.ok("NOOP")
    assert server.inbox(ALICE) == []


# -- store failures ------------------------------------------------------------------------------


def test_store_failure_while_deciding_is_unavailable_without_continuation(
        client: RawIMAP, server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(account_id: int) -> tuple[int, int]:
        raise StoreUnavailable("disk on fire")
    server.call(server.store.set_quota(ALICE, 1_000_000))  # so that usage is consulted
    monkeypatch.setattr(server.store, "account_usage", broken)
    reply = start_literal(client, b"a1 APPEND INBOX {5}")
    assert reply.startswith(b"a1 NO [UNAVAILABLE]"), reply
    client.ok("NOOP")
    assert server.inbox(ALICE) == []


def test_multiappend_failing_half_way_stores_nothing(
        client: RawIMAP, server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    real_insert = sqlite_messages.insert_message
    calls: list[int] = []

    def second_fails(*args: Any, **kwargs: Any) -> MessageMeta:
        calls.append(1)
        if len(calls) == 2:
            raise StoreUnavailable("disk full")
        return real_insert(*args, **kwargs)

    monkeypatch.setattr(sqlite_messages, "insert_message", second_fails)
    before = server.call(server.store.get_mailbox(server.call(server.store.get_account(ALICE)).id,
                                                  "INBOX"))
    client.ok("SELECT INBOX")
    client.send(b"m1 APPEND INBOX {3+}\r\none {3+}\r\ntwo {5+}\r\nthree\r\n")
    untagged, tagged = client.until_tagged("m1")
    assert tagged.startswith(b"m1 NO [UNAVAILABLE]"), tagged
    assert len(calls) == 2  # the first message was inserted, then the second failed ...
    assert server.inbox(ALICE) == []  # ... in the same transaction: all or nothing
    after = server.call(server.store.get_mailbox(before.account_id, "INBOX"))
    assert (after.uidnext, after.highest_modseq) == (before.uidnext, before.highest_modseq)
    assert [line for line in untagged if b"EXISTS" in line] == []
    assert client.ok("NOOP") == []


def test_multiappend_is_one_transaction_with_consecutive_uids(
        client: RawIMAP, server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    batches: list[int] = []
    real_many = server.store.append_many

    async def counting(account_id: int, mailbox_id: int, items: Any, **kwargs: Any) -> Any:
        batches.append(len(items))
        return await real_many(account_id, mailbox_id, items, **kwargs)

    monkeypatch.setattr(server.store, "append_many", counting)
    client.send(b"m1 APPEND INBOX {3+}\r\none {3+}\r\ntwo {5+}\r\nthree\r\n")
    _, tagged = client.until_tagged("m1")
    assert re.match(rb"m1 OK \[APPENDUID \d+ 1:3\]", tagged), tagged
    assert batches == [3]
    assert server.inbox(ALICE) == [b"one", b"two", b"three"]
