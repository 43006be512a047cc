"""The IMAP session core: greeting, TLS and login rules, SELECT/EXAMINE, CLOSE/UNSELECT/
EXPUNGE, IDLE push, COMPRESS, ENABLE, LOGOUT (RFC 9051 §6.1-6.4, RFC 2177, RFC 4978)."""

from __future__ import annotations

import base64
import imaplib
import threading
import time
import zlib

import pytest

from mailpost.store.types import FlagMode
from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context
from tests.imapserver.helpers import RawIMAP, deliver

MESSAGE = b"From: carol@remote.test\r\nSubject: hello\r\n\r\nHi.\r\n"


def plain(server: ServerThread) -> RawIMAP:
    return RawIMAP(server, tls=False)


def test_greeting_and_capabilities_before_tls(server: ServerThread) -> None:
    client = plain(server)
    assert client.greeting.startswith(b"* OK [CAPABILITY ")
    caps = client.greeting.split(b"[CAPABILITY ")[1].split(b"]")[0].split()
    assert b"IMAP4rev2" in caps and b"STARTTLS" in caps and b"LOGINDISABLED" in caps
    assert not any(cap.startswith(b"AUTH=") for cap in caps)
    _, tagged = client.command(f'LOGIN alice@example.test "{PASSWORD}"')
    assert b"NO [PRIVACYREQUIRED]" in tagged
    _, tagged = client.command("AUTHENTICATE PLAIN")
    assert b"NO [PRIVACYREQUIRED]" in tagged


def test_starttls_then_login_and_capabilities_change(server: ServerThread) -> None:
    client = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    client.starttls(ssl_context=client_tls_context())
    caps = client.capability()[1][0].split()
    assert b"AUTH=PLAIN" in caps and b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps
    typ, data = client.login("alice@example.test", PASSWORD)
    assert typ == "OK" and b"[CAPABILITY" in data[0]
    client.logout()


def test_starttls_discards_pipelined_plaintext(server: ServerThread) -> None:
    """Catalogue T1: a command sent in plaintext behind STARTTLS is never answered."""
    client = plain(server)
    client.send(b"a STARTTLS\r\nb LOGIN alice@example.test x\r\n")
    assert client.read_response().startswith(b"a OK")
    client.sock = client_tls_context().wrap_socket(client.sock)
    client.buffer = b""
    untagged, tagged = client.command("NOOP")
    assert tagged.startswith(b"t1 OK") and not any(line.startswith(b"b ") for line in untagged)


def test_authenticate_plain_with_and_without_initial_response(server: ServerThread) -> None:
    token = base64.b64encode(b"\0alice@example.test\0" + PASSWORD.encode()).decode()
    client = RawIMAP(server)
    _, tagged = client.command(f"AUTHENTICATE PLAIN {token}")
    assert b"OK" in tagged
    other = RawIMAP(server)
    other.send(b"a AUTHENTICATE PLAIN\r\n")
    assert other.read_response() == b"+ "
    other.send(token.encode() + b"\r\n")
    assert other.read_response().startswith(b"a OK [CAPABILITY")
    third = RawIMAP(server)
    third.send(b"a AUTHENTICATE PLAIN\r\n")
    third.read_response()
    third.send(b"*\r\n")
    assert third.read_response().startswith(b"a BAD")


def test_wrong_password_then_throttled_bye(server: ServerThread) -> None:
    client = RawIMAP(server)
    outcomes = [client.command('LOGIN alice@example.test "wrong"')[1] for _ in range(4)]
    assert all(b"NO [AUTHENTICATIONFAILED]" in line for line in outcomes)
    client.send(b'x LOGIN alice@example.test "wrong"\r\n')
    assert client.read_response().startswith(b"* BYE")
    with pytest.raises(ConnectionError):
        client.read_response()


def test_select_examine_responses(server: ServerThread) -> None:
    deliver(server, "alice@example.test", MESSAGE)
    client = RawIMAP(server)
    client.login()
    untagged, tagged = client.command("SELECT INBOX")
    assert tagged.startswith(b"t2 OK [READ-WRITE]")
    text = b"\n".join(untagged)
    for needle in (b"* 1 EXISTS", b"[UIDVALIDITY ", b"[UIDNEXT 2]", b"* FLAGS (",
                   b"[PERMANENTFLAGS (", b'* LIST () "/" INBOX'):
        assert needle in text, needle
    untagged, tagged = client.command("EXAMINE Sent")
    assert untagged[0] == b"* OK [CLOSED] Previous mailbox is now closed"
    assert b'* LIST (\\Sent) "/" Sent' in untagged
    assert tagged.startswith(b"t3 OK [READ-ONLY]")
    _, tagged = client.command("SELECT nosuch")
    assert b"NO [NONEXISTENT]" in tagged
    _, tagged = client.command("FETCH 1 FLAGS")
    assert b"BAD" in tagged, "a failed SELECT leaves no mailbox selected"


def _set_deleted(server: ServerThread, uids: list[int]) -> None:
    async def mark() -> None:
        account = await server.store.get_account("alice@example.test")
        assert account is not None
        inbox = await server.store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        await server.store.store_flags(inbox.id, uids, FlagMode.ADD, frozenset({"\\Deleted"}))
    server.call(mark())


def test_expunge_close_and_unselect(server: ServerThread) -> None:
    for _ in range(3):
        deliver(server, "alice@example.test", MESSAGE)
    client = RawIMAP(server)
    client.login()
    client.ok("SELECT INBOX")
    _set_deleted(server, [2])
    untagged = client.ok("EXPUNGE")
    assert b"* 2 EXPUNGE" in untagged
    _set_deleted(server, [3])
    client.ok("UNSELECT")
    assert len(server.inbox("alice@example.test")) == 2, "UNSELECT expunges nothing"
    client.ok("SELECT INBOX")
    untagged = client.ok("CLOSE")
    assert not any(b"EXPUNGE" in line for line in untagged), "CLOSE expunges silently"
    assert len(server.inbox("alice@example.test")) == 1
    client.ok("EXAMINE INBOX")
    _, tagged = client.command("EXPUNGE")
    assert b"NO" in tagged


def test_idle_hears_delivery_and_other_sessions_expunge(server: ServerThread) -> None:
    deliver(server, "alice@example.test", MESSAGE)
    watcher = RawIMAP(server)
    watcher.login()
    watcher.ok("SELECT INBOX")
    watcher.send(b"i1 IDLE\r\n")
    assert watcher.read_response().startswith(b"+ ")
    started = time.monotonic()
    deliver(server, "alice@example.test", MESSAGE)
    assert watcher.read_response() == b"* 2 EXISTS"
    assert time.monotonic() - started < 2
    _set_deleted(server, [1])
    other = RawIMAP(server)
    other.login()
    other.ok("SELECT INBOX")
    other.ok("EXPUNGE")
    lines = [watcher.read_response()]
    while b"EXPUNGE" not in lines[-1]:
        lines.append(watcher.read_response())
    assert lines[-1] == b"* 1 EXPUNGE"
    watcher.send(b"DONE\r\n")
    assert watcher.read_response().startswith(b"i1 OK")
    watcher.ok("NOOP")


def test_no_expunge_during_fetch_store_search(server: ServerThread) -> None:
    """RFC 9051 §7.5.1 (catalogue I12): the expunge waits for a command that allows it."""
    deliver(server, "alice@example.test", MESSAGE)
    deliver(server, "alice@example.test", MESSAGE)
    client = RawIMAP(server)
    client.login()
    client.ok("SELECT INBOX")
    _set_deleted(server, [1])
    other = RawIMAP(server)
    other.login()
    other.ok("SELECT INBOX")
    other.ok("EXPUNGE")
    untagged, _ = client.command("FETCH 2 UID")
    assert not any(b"EXPUNGE" in line for line in untagged)
    untagged = client.ok("NOOP")
    assert b"* 1 EXPUNGE" in untagged


def test_compress_deflate(server: ServerThread) -> None:
    client = RawIMAP(server)
    client.login()
    client.send(b"c COMPRESS DEFLATE\r\n")
    assert client.read_response().startswith(b"c OK")
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    inflate = zlib.decompressobj(-15)
    client.send(deflate.compress(b"n NOOP\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
    received = b""
    while b"n OK" not in received:
        received += inflate.decompress(client.sock.recv(65536))
    assert b"n OK NOOP completed" in received


def test_logout_and_id_and_enable(server: ServerThread) -> None:
    client = RawIMAP(server)
    untagged = client.ok('ID ("name" "test")')
    assert untagged[0].startswith(b'* ID ("name" "mailpost"')
    client.login()
    untagged = client.ok("ENABLE CONDSTORE BOGUS")
    assert untagged == [b"* ENABLED CONDSTORE"]
    untagged, tagged = client.command("LOGOUT")
    assert untagged[0].startswith(b"* BYE") and tagged.startswith(b"t4 OK")


def test_imaps_idle_with_imaplib_style_client(server: ServerThread) -> None:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=client_tls_context())
    client.login("bob@example.test", PASSWORD)
    client.select("INBOX")
    tag = client._new_tag().decode()
    client.send(f"{tag} IDLE\r\n".encode())
    assert client.readline().startswith(b"+")
    threading.Timer(0.2, deliver, (server, "bob@example.test", MESSAGE)).start()
    assert client.readline() == b"* 1 EXISTS\r\n"
    assert client.readline() == b"* 1 RECENT\r\n"  # RFC 3501 §7.3.2: it is new to this session
    client.send(b"DONE\r\n")
    assert client.readline().startswith(tag.encode() + b" OK")
    client.logout()


def test_preauth_line_limit(server: ServerThread) -> None:
    client = plain(server)
    client.send(b"a NOOP " + b"x" * 20000 + b"\r\n")
    line = client.read_response()
    assert b"BAD" in line
    assert client.command("NOOP")[1].startswith(b"t1 OK")


def test_idle_disconnect_is_clean(server: ServerThread) -> None:
    client = RawIMAP(server)
    client.login()
    client.ok("SELECT INBOX")
    client.send(b"i IDLE\r\n")
    client.read_response()
    client.close()
    deliver(server, "alice@example.test", MESSAGE)
    again = RawIMAP(server)
    again.login()
    assert again.command("NOOP")[1].startswith(b"t2 OK")


def test_utf8_accept(server: ServerThread) -> None:
    """RFC 6855: names go out as UTF-8, SEARCH CHARSET becomes BAD, UTF8 APPEND works."""
    client = RawIMAP(server)
    client.login()
    assert client.ok("ENABLE UTF8=ACCEPT") == [b"* ENABLED UTF8=ACCEPT"]
    client.ok('CREATE "Entwürfe"')
    listing = client.ok('LIST "" "Entw*"')
    assert listing == ['* LIST (\\HasNoChildren) "/" "Entwürfe"'.encode()]
    client.ok("SELECT INBOX")
    _, tagged = client.command("SEARCH CHARSET UTF-8 SUBJECT x")
    assert b"BAD" in tagged
    message = "Subject: Grüße\r\n\r\nHallo\r\n".encode()
    client.send(b"a APPEND INBOX UTF8 (~{%d+}\r\n" % len(message) + message + b")\r\n")
    tagged_line = client.until_tagged("a")[1]
    assert tagged_line.startswith(b"a OK [APPENDUID ")
    assert server.inbox("alice@example.test")[-1] == message
