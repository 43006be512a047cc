"""POP3 against the real server: poplib over STLS and implicit TLS, and a byte-exact client."""

from __future__ import annotations

import base64
import poplib
import smtplib
import socket
import ssl
import time
from dataclasses import replace
from pathlib import Path

import pytest

from mailpost.config import POP3Config
from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context, make_config
from tests.pop3.clients import (
    ALICE,
    BOB,
    RawPOP3,
    inbox,
    pop3s_client,
    put_message,
    stls_client,
)

FIRST = b"From: carol@remote.test\r\nSubject: one\r\n\r\nHello.\r\n.hidden dot line\r\n..two\r\n"
SECOND = b"From: dave@remote.test\r\nSubject: two\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"


def login_when_unlocked(server: ServerThread, timeout: float = 5) -> poplib.POP3_SSL:
    """Log in, retrying while the server has yet to notice that a previous session ended."""
    deadline = time.monotonic() + timeout
    while True:
        client = pop3s_client(server, user=None)
        client.user(ALICE)
        try:
            client.pass_(PASSWORD)
            return client
        except poplib.error_proto as error:
            client.close()
            if b"[IN-USE]" not in error.args[0] or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def joined(lines: list[bytes]) -> bytes:
    """poplib gives the unstuffed lines without their CRLF."""
    return b"".join(line + b"\r\n" for line in lines)


def test_stls_session_lists_retrieves_and_quits(server: ServerThread) -> None:
    put_message(server, ALICE, FIRST)
    put_message(server, ALICE, SECOND)
    client = stls_client(server)
    assert client.stat() == (2, len(FIRST) + len(SECOND))
    _, listing, _ = client.list()
    assert listing == [f"1 {len(FIRST)}".encode(), f"2 {len(SECOND)}".encode()]
    assert joined(client.retr(1)[1]) == FIRST  # byte-exact, dots unstuffed by the client
    assert joined(client.retr(2)[1]) == SECOND
    assert client.quit().startswith(b"+OK")
    assert len(inbox(server)) == 2  # nothing was deleted


def test_implicit_tls_session(server: ServerThread) -> None:
    put_message(server, ALICE, FIRST)
    client = pop3s_client(server)
    assert "STLS" not in client.capa()
    assert client.stat() == (1, len(FIRST))
    assert joined(client.top(1, 1)[1]) == b"From: carol@remote.test\r\nSubject: one\r\n\r\nHello.\r\n"
    client.quit()


def test_mail_delivered_through_smtp_is_retrieved_byte_exact(server: ServerThread) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("carol@remote.test", [ALICE], FIRST)
    [meta] = inbox(server)
    stored = server.call(server.store.blobs.read(meta.blob_id))
    client = pop3s_client(server)
    assert joined(client.retr(1)[1]) == stored
    client.quit()


def test_no_credentials_before_stls(server: ServerThread) -> None:
    client = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    capabilities = client.capa()
    assert "STLS" in capabilities and "USER" not in capabilities and "SASL" not in capabilities
    with pytest.raises(poplib.error_proto, match=r"\[SYS/PERM\].*STLS"):
        client.user(ALICE)
    client.stls(client_tls_context())
    assert {"USER", "SASL"} <= set(client.capa())
    client.user(ALICE)
    assert client.pass_(PASSWORD).startswith(b"+OK")
    client.quit()


def stls_with_pipelined_plaintext(server: ServerThread, plaintext: bytes) -> bytes:
    """Send STLS with plaintext behind it in one write, upgrade, send NOOP under TLS, and
    return the first line the server sends under TLS (b"" if the handshake failed)."""
    sock = socket.create_connection(("127.0.0.1", server.port("pop3")), timeout=10)
    assert sock.recv(1000).startswith(b"+OK")
    sock.sendall(b"STLS\r\n" + plaintext)
    reply = b""
    while not reply.endswith(b"\r\n"):
        reply += sock.recv(1)  # byte by byte: nothing after the +OK may be consumed here
    assert reply == b"+OK begin TLS negotiation\r\n"
    try:
        tls = client_tls_context().wrap_socket(sock)
        tls.sendall(b"NOOP\r\n")
        line = b""
        while not line.endswith(b"\r\n"):
            line += tls.recv(1)
    except (ssl.SSLError, ConnectionError):
        return b""  # a failed handshake injects nothing either
    tls.close()
    return line


def test_stls_discards_plaintext_pipelined_after_it(server: ServerThread) -> None:
    """CVE-2011-0411: the injected CAPA must not be answered inside the TLS session."""
    line = stls_with_pipelined_plaintext(server, b"CAPA\r\n")
    assert line == b"-ERR command not valid in this state\r\n"  # the answer to our NOOP


def test_stls_discards_plaintext_beyond_the_first_read(server: ServerThread) -> None:
    line = stls_with_pipelined_plaintext(server, b"CAPA\r\n" * 12_000)  # 72 000 octets
    assert line in (b"", b"-ERR command not valid in this state\r\n")


def test_wire_format_is_dot_stuffed_and_terminated(server: ServerThread) -> None:
    put_message(server, ALICE, FIRST)
    raw = RawPOP3(server)
    raw.login()
    assert raw.command("RETR 1") == f"+OK {len(FIRST)} octets\r\n".encode()
    assert raw.multiline() == FIRST.replace(b"\r\n.", b"\r\n..") + b".\r\n"
    assert raw.command("TOP 1 0") == f"+OK {len(FIRST)} octets\r\n".encode()
    assert raw.multiline() == b"From: carol@remote.test\r\nSubject: one\r\n\r\n.\r\n"
    assert raw.command("UIDL 1").startswith(b"+OK 1 ")
    raw.close()


def test_large_message_streams_byte_exact(server: ServerThread) -> None:
    line = b"0123456789" * 9 + b"\r\n"  # 92 octets, no dots
    big = b"Subject: big\r\n\r\n" + line * 40_000 + b".end\r\n"  # about 3.7 MB
    put_message(server, ALICE, big)
    client = pop3s_client(server)
    assert client.list(1).split()[2] == str(len(big)).encode()
    assert joined(client.retr(1)[1]) == big
    client.quit()


def test_pipelined_commands_in_one_write(server: ServerThread) -> None:
    put_message(server, ALICE, SECOND)
    raw = RawPOP3(server)
    raw.send(f"USER {ALICE}\r\nPASS {PASSWORD}\r\nSTAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\n"
             "QUIT\r\n".encode())
    assert raw.line().startswith(b"+OK")  # USER
    assert raw.line().startswith(b"+OK maildrop has 1 messages")
    assert raw.line() == f"+OK 1 {len(SECOND)}\r\n".encode()
    assert raw.line().startswith(b"+OK") and raw.multiline() == f"1 {len(SECOND)}\r\n.\r\n".encode()
    assert raw.line().startswith(b"+OK") and raw.multiline() == SECOND + b".\r\n"
    assert raw.line() == b"+OK message 1 deleted\r\n"
    assert raw.line().startswith(b"+OK") and raw.closed_by_server()
    assert inbox(server) == []


def test_sasl_plain_and_login(server: ServerThread) -> None:
    raw = RawPOP3(server)
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    assert raw.command(f"AUTH PLAIN {token}").startswith(b"+OK maildrop has")
    raw.close()
    raw = RawPOP3(server)
    assert raw.command("AUTH LOGIN") == b"+ VXNlcm5hbWU6\r\n"
    assert raw.command(base64.b64encode(ALICE.encode()).decode()) == b"+ UGFzc3dvcmQ6\r\n"
    assert raw.command(base64.b64encode(PASSWORD.encode()).decode()).startswith(b"+OK")
    raw.close()
    raw = RawPOP3(server)
    assert raw.command("AUTH PLAIN") == b"+ \r\n"
    assert raw.command("*") == b"-ERR [AUTH] authentication cancelled\r\n"
    assert raw.command("AUTH CRAM-MD5").startswith(b"-ERR [AUTH]")
    raw.close()


# --- deletion, UPDATE and the snapshot (catalogue P1, P2) ----------------------------------------


def test_download_and_delete_removes_at_quit_for_every_protocol(server: ServerThread) -> None:
    put_message(server, ALICE, FIRST)
    put_message(server, ALICE, SECOND)
    client = stls_client(server)
    client.retr(1)
    client.dele(1)
    client.dele(2)
    assert len(inbox(server)) == 2  # DELE only marks (RFC 1939 §5)
    assert client.quit() == b"+OK mail.example.test closing, 2 messages deleted"
    assert inbox(server) == []  # what IMAP sees, through the same store


def test_drop_without_quit_deletes_nothing(server: ServerThread) -> None:
    put_message(server, ALICE, FIRST)
    raw = RawPOP3(server)
    raw.login()
    assert raw.command("DELE 1").startswith(b"+OK")
    raw.close()  # no QUIT
    client = login_when_unlocked(server)  # the lock goes with the connection
    assert client.stat()[0] == 1
    client.quit()
    assert len(inbox(server)) == 1


def test_idle_timeout_closes_without_update(tmp_path: Path) -> None:
    config = make_config(tmp_path / "var")
    config = replace(config, pop3=POP3Config(idle_timeout=0.5))
    with ServerThread(config) as server:
        server.add_user(ALICE)
        put_message(server, ALICE, FIRST)
        raw = RawPOP3(server)
        raw.login()
        assert raw.command("DELE 1").startswith(b"+OK")
        assert raw.closed_by_server()  # RFC 1939 §3: no response, no UPDATE
        assert len(inbox(server)) == 1


def test_message_numbers_deletion_marks_and_rset(server: ServerThread) -> None:
    put_message(server, ALICE, FIRST)
    put_message(server, ALICE, SECOND)
    raw = RawPOP3(server)
    raw.login()
    assert raw.command("RETR 0") == b"-ERR no such message\r\n"
    assert raw.command("RETR 3") == b"-ERR no such message\r\n"
    assert raw.command("RETR 99999999999999999999") == b"-ERR no such message\r\n"
    assert raw.command("TOP 1 -1") == b"-ERR invalid number of lines\r\n"
    assert raw.command("DELE 1") == b"+OK message 1 deleted\r\n"
    assert raw.command("DELE 1") == b"-ERR no such message\r\n"
    assert raw.command("RETR 1") == b"-ERR no such message\r\n"
    assert raw.command("STAT") == f"+OK 1 {len(SECOND)}\r\n".encode()
    assert raw.command("LIST") == b"+OK 1 messages (" + str(len(SECOND)).encode() + b" octets)\r\n"
    assert raw.multiline() == f"2 {len(SECOND)}\r\n.\r\n".encode()  # numbers do not shift
    assert raw.command("RSET").startswith(b"+OK maildrop has 2 messages")
    assert raw.command("RETR 1").startswith(b"+OK")
    assert raw.multiline().endswith(b"..two\r\n.\r\n")
    assert raw.command("USER bob") == b"-ERR command not valid in this state\r\n"
    assert raw.command("QUIT").startswith(b"+OK")
    assert len(inbox(server)) == 2


def test_new_mail_appears_at_the_next_login_only(server: ServerThread) -> None:
    put_message(server, ALICE, FIRST)
    client = pop3s_client(server)
    put_message(server, ALICE, SECOND)
    assert client.stat()[0] == 1  # the snapshot is fixed for the session
    client.quit()
    client = pop3s_client(server)
    assert client.stat()[0] == 2
    client.quit()


# --- UIDL, \Seen and concurrent access (catalogue P3, P4) ----------------------------------------


def test_uidl_is_stable_across_sessions_and_restarts(tmp_path: Path) -> None:
    config = make_config(tmp_path / "var")
    with ServerThread(config) as server:
        server.add_user(ALICE)
        put_message(server, ALICE, FIRST)
        put_message(server, ALICE, SECOND)
        client = pop3s_client(server)
        first = client.uidl()[1]
        client.dele(1)
        client.quit()
        client = pop3s_client(server)
        second = client.uidl()[1]
        client.quit()
    assert [line.split()[1] for line in second] == [first[1].split()[1]]
    with ServerThread(config) as server:  # the same data directory, a new process state
        put_message(server, ALICE, FIRST)  # same content: a new message, a new id
        client = pop3s_client(server)
        third = client.uidl()[1]
        client.quit()
    ids = [line.split()[1] for line in third]
    assert ids[0] == first[1].split()[1]
    assert ids[1] not in {line.split()[1] for line in first}  # never reused
    for unique_id in ids:
        assert 1 <= len(unique_id) <= 70 and all(0x21 <= c <= 0x7E for c in unique_id)


def seen_marks(server: ServerThread) -> list[bool]:
    return [("\\Seen" in meta.flags) for meta in inbox(server)]


def test_retr_sets_seen_once_the_client_pauses_but_top_does_not(server: ServerThread) -> None:
    put_message(server, ALICE, FIRST)
    put_message(server, ALICE, SECOND)
    client = pop3s_client(server)
    client.top(1, 0)
    client.retr(2)
    deadline = time.monotonic() + 5
    while seen_marks(server) != [False, True] and time.monotonic() < deadline:
        time.sleep(0.05)  # the session stays open and idle meanwhile
    assert seen_marks(server) == [False, True]
    client.quit()


def test_quit_marks_retrieved_messages_seen_except_the_deleted_ones(
        server: ServerThread) -> None:
    for message in (FIRST, SECOND, FIRST):
        put_message(server, ALICE, message)
    client = pop3s_client(server)
    for number in (1, 2, 3):
        client.retr(number)
    client.dele(2)
    client.quit()  # RETR, RETR, RETR, DELE, QUIT without a pause: all written at QUIT
    assert seen_marks(server) == [True, True]


def test_second_session_for_the_same_account_is_in_use(server: ServerThread) -> None:
    first = pop3s_client(server)
    second = pop3s_client(server, user=None)
    second.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(PASSWORD)
    other = pop3s_client(server, user=BOB)  # other accounts are not affected
    other.quit()
    first.quit()
    second.user(ALICE)
    assert second.pass_(PASSWORD).startswith(b"+OK")  # released by QUIT
    second.quit()


def test_account_session_limit(tmp_path: Path) -> None:
    with ServerThread(make_config(tmp_path / "var", max_connections_per_user=1)) as server:
        server.add_user(ALICE)
        first = pop3s_client(server)
        second = pop3s_client(server, user=None)
        second.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\] too many sessions"):
            second.pass_(PASSWORD)
        first.quit()
        second.quit()


def test_per_ip_connection_cap_gets_a_pop3_busy_reply(tmp_path: Path) -> None:
    with ServerThread(make_config(tmp_path / "var", max_connections_per_ip=1)) as server:
        first = RawPOP3(server, implicit_tls=False)
        second = RawPOP3(server, implicit_tls=False)
        assert second.greeting == b"-ERR [SYS/TEMP] too many connections\r\n"
        assert second.closed_by_server()
        first.close()


def test_message_expunged_meanwhile_gives_err_and_the_session_goes_on(
        server: ServerThread) -> None:
    uid = put_message(server, ALICE, FIRST)
    put_message(server, ALICE, SECOND)
    [meta, _] = inbox(server)
    client = pop3s_client(server)
    server.call(server.store.expunge(meta.mailbox_id, [uid]))  # as an IMAP client would
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the body file goes once nothing references it
        if not (server.config.data_dir / "messages" / meta.blob_id[:2] / meta.blob_id).exists():
            break
        time.sleep(0.02)
    with pytest.raises(poplib.error_proto, match="removed by another session"):
        client.retr(1)
    with pytest.raises(poplib.error_proto):
        client.top(1, 0)
    assert joined(client.retr(2)[1]) == SECOND
    assert client.dele(1).startswith(b"+OK")
    assert client.quit().startswith(b"+OK")
    assert [m.uid for m in inbox(server)] == [uid + 1]


# --- failed logins (catalogue R8) ----------------------------------------------------------------


def test_failed_logins_are_throttled_then_dropped(server: ServerThread) -> None:
    raw = RawPOP3(server)
    answers = []
    for attempt in range(5):
        raw.command(f"USER {ALICE}")
        answers.append(raw.command(f"PASS wrong-{attempt}"))
    assert answers[:4] == [b"-ERR [AUTH] invalid user name or password\r\n"] * 4
    assert answers[4] == b"-ERR [AUTH] too many failures, try again later\r\n"
    assert raw.closed_by_server()
    again = RawPOP3(server)  # the network stays blocked, even with the right password
    again.command(f"USER {ALICE}")
    assert again.command(f"PASS {PASSWORD}").startswith(b"-ERR [AUTH] too many failures")
    assert again.closed_by_server()
