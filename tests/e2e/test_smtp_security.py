"""Attacks from the security catalogue, against the running server (rows R1, S1, T1, D1 ...)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailpost.store.errors import StoreUnavailable
from tests.e2e.harness import RawSMTP, ServerThread, make_config

SERVER_IP = "127.0.0.1"
SERVER_NAME = "mail.example.test"
# nmap smtp-open-relay.nse's recipient forms, plus the catalogue's extras (row R1).
RELAY_RECIPIENTS = [
    "<rt@remote.test>",
    f"<rt%remote.test@[{SERVER_IP}]>",
    f"<rt%remote.test@{SERVER_NAME}>",
    "<rt%remote.test@example.test>",
    '<"rt@remote.test">',
    '<"rt%remote.test">',
    f"<rt@remote.test@[{SERVER_IP}]>",
    f'<"rt@remote.test"@[{SERVER_IP}]>',
    '<"rt@remote.test"@example.test>',
    f"<rt@remote.test@{SERVER_NAME}>",
    f"<@[{SERVER_IP}]:rt@remote.test>",
    "<@example.test:rt@remote.test>",
    "<@example.test,@x.test:rt@remote.test>",
    "<remote.test!rt>",
    f"<remote.test!rt@[{SERVER_IP}]>",
    "<remote.test!rt@example.test>",
    "<rt@remote.test.>",
    "<rt@REMOTE.TEST>",
]
RELAY_SENDERS = ["<>", f"<antispam@[{SERVER_IP}]>", "<antispam@example.test>",
                 "<alice@example.test>"]


def session(server: ServerThread, listener: str = "smtp") -> RawSMTP:
    raw = RawSMTP(server.port(listener))
    assert raw.reply()[0] == 220
    assert raw.command("EHLO attacker.test")[0] == 250
    return raw


@pytest.mark.parametrize("sender", RELAY_SENDERS)
def test_open_relay_battery(server: ServerThread, sender: str) -> None:
    raw = session(server)
    for recipient in RELAY_RECIPIENTS:
        assert raw.command(f"MAIL FROM:{sender}")[0] == 250
        code, text = raw.command(f"RCPT TO:{recipient}")
        assert 500 <= code < 600, f"{recipient} was accepted: {code} {text}"
        assert raw.command("RSET")[0] == 250
    assert server.call(server.store.list_queue()) == []


def test_submission_without_auth_cannot_relay(server: ServerThread) -> None:
    raw = session(server, "submission")
    code, text = raw.command("MAIL FROM:<alice@example.test>")
    assert (code, text[:5]) == (530, "5.7.0")
    assert raw.command("RCPT TO:<rt@remote.test>")[0] == 503


# Row S1: every end-of-data look-alike followed by a spoofed second transaction in one write.
SMUGGLING_VARIANTS = [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r.\n", b"\r.\r", b"\n.\r",
                      b"\r\n.\n", b"\r\n.\r", b"\r\n\x00.\r\n"]


@pytest.mark.parametrize("variant", SMUGGLING_VARIANTS, ids=repr)
def test_smuggling_never_yields_a_second_message(server: ServerThread, variant: bytes) -> None:
    raw = session(server)
    raw.send(b"MAIL FROM:<carol@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert [raw.reply()[0] for _ in range(3)] == [250, 250, 354]
    spoof = (b"MAIL FROM:<spoof@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
             b"From: spoof@example.test\r\n\r\nspoofed\r\n.\r\n")
    raw.send(b"Subject: hi\r\n\r\nbody" + variant + spoof)
    first = raw.reply()[0]
    raw.send(b"QUIT\r\n")
    replies = [first]
    try:
        while True:
            replies.append(raw.reply()[0])
    except (ConnectionError, OSError, AssertionError):
        pass
    assert replies.count(250) <= 1, replies
    assert server.inbox("bob@example.test") == [], "no message from the smuggled transaction"
    for stored in server.inbox("alice@example.test"):
        assert b"Return-Path: <spoof" not in stored


def test_starttls_discards_pipelined_plaintext(server: ServerThread) -> None:
    """Row T1 (CVE-2011-0411): commands sent in plaintext with STARTTLS are never run."""
    raw = session(server)
    raw.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<x@remote.test>\r\n")
    code, _ = raw.reply()
    assert code == 220
    from tests.e2e.harness import client_tls_context
    raw.sock = client_tls_context().wrap_socket(raw.sock)
    raw.buffer = b""
    code, _ = raw.command("NOOP")
    assert code == 250, "the first reply after the handshake answers our NOOP"
    # State was reset: EHLO is needed again and no transaction exists.
    assert raw.command("RCPT TO:<alice@example.test>")[0] == 503


def test_starttls_twice_and_on_implicit_tls(server: ServerThread) -> None:
    raw = session(server)
    raw.starttls()
    assert raw.command("EHLO again.test")[0] == 250
    code, text = raw.command("STARTTLS")
    assert (code, text[:5]) == (554, "5.5.1")
    implicit = RawSMTP(server.port("submissions"), implicit_tls=True)
    implicit.reply()
    implicit.command("EHLO c.test")
    assert implicit.command("STARTTLS")[0] == 554


def test_overlong_line_and_junk_commands(server: ServerThread) -> None:
    raw = session(server)
    raw.send(b"NOOP " + b"a" * 100_000 + b"\r\n")
    code, text = raw.reply()
    assert (code, text[:5]) == (500, "5.5.2")
    assert raw.command("NOOP")[0] == 250
    assert raw.command("MAIL FROM:<a\x00b@remote.test>")[0] == 501
    codes = []
    while not codes or codes[-1] != 421:
        codes.append(raw.command("BOGUS")[0])
        assert len(codes) <= 20, "the error limit (20) must end the session"
    assert set(codes[:-1]) == {500}
    assert raw.closed_by_server()


def test_per_ip_connection_limit(tmp_path: Path) -> None:
    with ServerThread(make_config(tmp_path / "v", max_connections_per_ip=3)) as server:
        held = [session(server) for _ in range(3)]
        extra = RawSMTP(server.port("smtp"))
        code, text = extra.reply()
        assert (code, text[:5]) == (421, "4.7.0")
        held[0].command("QUIT")
        held[0].close()
        import time
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            again = RawSMTP(server.port("smtp"))
            if again.reply()[0] == 220:
                break
            time.sleep(0.05)
        else:
            pytest.fail("a freed slot was not reused")


def test_store_failure_gives_452_and_loses_nothing(server: ServerThread,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    writer_class = type(server.store.blobs.writer())

    async def failing_finish(self: object) -> object:
        raise StoreUnavailable("disk full (injected)")

    monkeypatch.setattr(writer_class, "finish", failing_finish)
    raw = session(server)
    raw.send(b"MAIL FROM:<c@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert [raw.reply()[0] for _ in range(3)] == [250, 250, 354]
    raw.send(b"Subject: x\r\n\r\nbody\r\n.\r\n")
    code, text = raw.reply()
    assert (code, text[:5]) == (452, "4.3.1")
    monkeypatch.undo()
    assert raw.command("MAIL FROM:<c@remote.test>")[0] == 250, "the session goes on"
    assert server.inbox("alice@example.test") == []


def test_plaintext_sent_after_the_220_never_counts_as_tls(server: ServerThread) -> None:
    """Plaintext that arrives after the 220 but before the handshake (so in a later read than
    STARTTLS itself) is dropped or breaks the handshake; it is never answered as a command."""
    import ssl

    from tests.e2e.harness import client_tls_context
    raw = session(server)
    raw.send(b"STARTTLS\r\n")
    assert raw.reply()[0] == 220
    raw.send(b"MAIL FROM:<x@remote.test>\r\n" * 2000)
    try:
        raw.sock = client_tls_context().wrap_socket(raw.sock)
    except (ssl.SSLError, OSError):
        return  # the plaintext broke the handshake: nothing was executed
    raw.buffer = b""
    code, _ = raw.command("NOOP")
    assert code == 250, "the first reply after the handshake answers our NOOP"


def test_a_body_whose_commit_failed_is_removed_at_once(server: ServerThread,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing_deliver(*args: object, **kwargs: object) -> object:
        raise StoreUnavailable("database locked (injected)")

    monkeypatch.setattr(server.store, "deliver", failing_deliver)
    raw = session(server)
    raw.send(b"MAIL FROM:<c@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert [raw.reply()[0] for _ in range(3)] == [250, 250, 354]
    big = b"x" * 78 + b"\r\n"
    raw.send(b"Subject: large\r\n\r\n" + big * 2000 + b".\r\n")  # > 64 KiB: a file body
    assert raw.reply()[0] == 452
    messages = server.config.data_dir / "messages"

    def stored_files() -> list[Path]:
        return [path for path in messages.rglob("*") if path.is_file()]

    deadline = time.monotonic() + 5
    while stored_files() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert stored_files() == []  # not left for the next start-up sweep
