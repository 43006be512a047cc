"""Authentication on the MX listener, end to end, with the DNS answered from a table."""

from __future__ import annotations

import dataclasses
import email
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailpost.config import Config, MailAuthConfig
from mailpost.mailauth import dkim, inbound
from mailpost.mailauth.dns import StaticResolver
from tests.e2e.harness import RawSMTP, ServerThread, make_config

HOST = "mail.example.test"


def message(author: str, body: str = "Hello Alice.\r\n", extra: str = "") -> bytes:
    return (f"From: <{author}>\r\nTo: alice@example.test\r\nSubject: hi\r\n"
            f"Message-ID: <{author}.1@test>\r\n{extra}\r\n{body}").encode()


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StaticResolver]:
    """A DKIM key for sender.test, and DNS for sender.test and a spoofable bank.test."""
    keys = tmp_path_factory.mktemp("keys")
    records = dkim.keygen("sender.test", "s1", keys)
    resolver = StaticResolver({(name, "TXT"): [value] for name, value in records})
    resolver.add("_dmarc.sender.test", "TXT", ["v=DMARC1; p=reject"])
    resolver.add("sender.test", "TXT", ["v=spf1 -all"])  # only DKIM can make it pass
    resolver.add("bank.test", "TXT", ["v=spf1 ip4:192.0.2.1 -all"])
    resolver.add("_dmarc.bank.test", "TXT", ["v=DMARC1; p=reject"])
    resolver.add("_dmarc.shop.test", "TXT", ["v=DMARC1; p=quarantine"])
    resolver.add("relay.test", "TXT", ["v=spf1 ip4:127.0.0.1 -all"])
    return keys, resolver


def start(tmp_path: Path, resolver: StaticResolver, monkeypatch: pytest.MonkeyPatch,
          **settings: object) -> ServerThread:
    monkeypatch.setattr(inbound, "resolver_for", lambda config: resolver)
    base = make_config(tmp_path / "var")
    mailauth = MailAuthConfig(**{"trusted_networks": (), **settings})  # type: ignore[arg-type]
    config: Config = dataclasses.replace(base, mailauth=mailauth)
    server = ServerThread(config).__enter__()
    server.add_user("alice@example.test")
    return server


@pytest.fixture
def server(tmp_path: Path, signer: tuple[Path, StaticResolver],
           monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    running = start(tmp_path, signer[1], monkeypatch)
    yield running
    running.__exit__(None, None, None)


@pytest.fixture
def strict_server(tmp_path: Path, signer: tuple[Path, StaticResolver],
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    running = start(tmp_path, signer[1], monkeypatch, dmarc_reject=True)
    yield running
    running.__exit__(None, None, None)


def send(server: ServerThread, sender: str, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as client:
        client.ehlo("client.relay.test")
        client.mail(sender)
        client.rcpt("alice@example.test")
        return client.data(data)


def results_of(stored: bytes) -> str:
    parsed = email.message_from_bytes(stored)
    values = parsed.get_all("Authentication-Results") or []
    assert len(values) == 1, values
    return " ".join(str(values[0]).split())


def test_aligned_dkim_signature_passes_dmarc(server: ServerThread,
                                             signer: tuple[Path, StaticResolver]) -> None:
    signed = dkim.sign(message("news@sender.test"), "sender.test", signer[0])
    code, _ = send(server, "bounce@relay.test", signed)
    assert code == 250
    [stored] = server.inbox("alice@example.test")
    header = results_of(stored)
    assert header.startswith(f"{HOST}; spf=pass smtp.mailfrom=bounce@relay.test;")
    assert "dkim=pass header.d=sender.test header.s=s1-ed25519" in header
    assert "dkim=pass header.d=sender.test header.s=s1-rsa" in header
    assert header.endswith("dmarc=pass (p=reject) header.from=sender.test")
    # Our field is first, above the trace fields, and the message follows unchanged.
    assert stored.startswith(b"Authentication-Results: ")
    assert stored.index(b"Received:") > stored.index(b"dmarc=pass")
    assert stored.endswith(signed)


def test_spoofed_from_with_p_reject_goes_to_junk(server: ServerThread) -> None:
    code, _ = send(server, "bounce@relay.test", message("ceo@bank.test"))
    assert code == 250
    assert server.inbox("alice@example.test") == []
    [stored] = server.inbox("alice@example.test", "Junk")
    assert "dmarc=fail (p=reject) header.from=bank.test" in results_of(stored)


def test_spoofed_from_with_p_reject_is_refused_when_configured(
        strict_server: ServerThread) -> None:
    code, text = send(strict_server, "bounce@relay.test", message("ceo@bank.test"))
    assert (code, text[:5]) == (550, b"5.7.1")
    assert b"bank.test" in text
    assert strict_server.inbox("alice@example.test") == []
    assert strict_server.inbox("alice@example.test", "Junk") == []


def test_quarantine_goes_to_junk_even_when_rejecting(strict_server: ServerThread) -> None:
    code, _ = send(strict_server, "bounce@relay.test", message("offers@shop.test"))
    assert code == 250
    assert len(strict_server.inbox("alice@example.test", "Junk")) == 1


def test_tampered_signature_fails(server: ServerThread,
                                  signer: tuple[Path, StaticResolver]) -> None:
    signed = dkim.sign(message("news@sender.test"), "sender.test", signer[0])
    code, _ = send(server, "bounce@relay.test", signed.replace(b"Hello Alice", b"Pay now"))
    assert code == 250
    [stored] = server.inbox("alice@example.test", "Junk")
    header = results_of(stored)
    assert header.count("dkim=fail") == 2 and "dmarc=fail" in header


def test_forged_results_for_our_host_are_removed(server: ServerThread) -> None:
    forged = f"Authentication-Results: {HOST}; dkim=pass header.d=bank.test\r\n"
    code, _ = send(server, "carol@nowhere.test",
                   message("carol@nowhere.test", extra=forged + "X-Other: kept\r\n"))
    assert code == 250
    [stored] = server.inbox("alice@example.test")
    header = results_of(stored)  # exactly one: ours
    assert "spf=none smtp.mailfrom=carol@nowhere.test" in header
    assert "dkim=none" in header and "dmarc=none" in header
    assert b"bank.test" not in stored and b"X-Other: kept\r\n" in stored


def test_message_over_the_verify_limit_is_stored_whole_without_dkim(
        tmp_path: Path, signer: tuple[Path, StaticResolver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = start(tmp_path, signer[1], monkeypatch, max_verify_size=4096)
    try:
        body = "".join(f"line {n:05d} of a long message\r\n" for n in range(3000))
        data = message("ceo@bank.test", body=body)
        code, _ = send(server, "bounce@relay.test", data)
        assert code == 250
        [stored] = server.inbox("alice@example.test")  # DMARC not enforced: not fully checked
        header = results_of(stored)
        assert "dkim=none (message too large to verify)" in header
        assert "dmarc=none" in header
        assert stored.endswith(data)
    finally:
        server.__exit__(None, None, None)


def test_loopback_is_trusted_by_default(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = StaticResolver({("_dmarc.bank.test", "TXT"): ["v=DMARC1; p=reject"]})
    monkeypatch.setattr(inbound, "resolver_for", lambda config: resolver)
    with ServerThread(make_config(tmp_path / "var")) as server:
        server.add_user("alice@example.test")
        client = RawSMTP(server.port("smtp"))
        try:
            assert client.reply()[0] == 220
            client.command("EHLO client.relay.test")
            assert client.command("MAIL FROM:<x@relay.test>")[0] == 250
            assert client.command("RCPT TO:<alice@example.test>")[0] == 250
            assert client.command("DATA")[0] == 354
            client.send(message("ceo@bank.test") + b".\r\n")
            assert client.reply()[0] == 250
        finally:
            client.close()
        [stored] = server.inbox("alice@example.test")
    assert b"Authentication-Results" not in stored
    assert resolver.queries == []
