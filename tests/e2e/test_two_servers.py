"""Two mailpost instances, two domains, and a real DNS server, all on the loopback network.

Theory of operation
===================

MX records carry no port and SPF checks the connecting address, so each party gets its own
loopback address (Linux routes all of 127.0.0.0/8 to the loopback interface):

* server A hosts ``a.test``: every listener, and its outbound connections
  (``[delivery] source_address``), on ``<net>.2``; it holds a DKIM key made by ``keygen``;
* server B hosts ``b.test``: its MX listener on ``<net>.3`` port 25, where ``b.test``'s MX
  record points; it trusts no network, so mail from A is authenticated;
* a stranger sends from ``<net>.4``;
* :class:`tests.dnsserver.DNSServer` on 127.0.0.1 serves both domains' MX and A records and
  a.test's SPF, DKIM and DMARC (p=reject) records; both servers use it (``[dns] nameservers``)
  for MX resolution and for the inbound checks. No route table is involved.

``<net>`` differs per test worker so that parallel workers never contend for port 25. The
queue runners' own poll is an hour away: each test runs A's queue explicitly (``run_once``)
and moves time by replacing the runner's clock, so nothing waits.
"""

from __future__ import annotations

import email
import email.message
import os
import smtplib
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailpost.admin import queue as queue_ops
from mailpost.config import DeliveryConfig, DNSConfig, ListenConfig, MailAuthConfig
from mailpost.delivery.queue import QueueRunner
from mailpost.mailauth import dkim
from mailpost.store.types import OutboundEnvelope, OutboundRecipient
from tests.dnsserver import DNSServer, Zone
from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context, make_config

ALICE = "alice@a.test"
BOB = "bob@b.test"
PROTOCOLS = ("submission", "submissions", "imap", "imaps", "pop3", "pop3s")
MESSAGE = (f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: across\r\nMessage-ID: <1@a.test>\r\n\r\n"
           "hello from A\r\n").encode()


@dataclass(frozen=True)
class Network:
    a: str
    b: str
    stranger: str


def worker_network() -> Network:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or 0) % 250
    base = f"127.42.{index}"
    return Network(f"{base}.2", f"{base}.3", f"{base}.4")


def require_port_25(address: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, 25))
        except OSError as exc:
            pytest.skip(f"cannot bind {address}:25 for server B's MX listener: {exc}")


def build_zone(net: Network, dkim_records: list[tuple[str, str]]) -> Zone:
    zone = Zone({("a.test", "MX"): ["10 mx.a.test."], ("mx.a.test", "A"): [net.a],
                 ("b.test", "MX"): ["10 mx.b.test."], ("mx.b.test", "A"): [net.b],
                 ("a.test", "TXT"): [f"v=spf1 ip4:{net.a} -all"],
                 ("_dmarc.a.test", "TXT"): ["v=DMARC1; p=reject"],
                 ("b.test", "TXT"): [f"v=spf1 ip4:{net.b} -all"]})
    for name, value in dkim_records:
        zone.add(name, "TXT", value)
    return zone


def listen_on(address: str, mx_port: int) -> ListenConfig:
    others = {name: (f"{address}:0",) for name in PROTOCOLS}
    return ListenConfig(smtp=(f"{address}:{mx_port}",), **others)


@pytest.fixture
def net() -> Network:
    network = worker_network()
    require_port_25(network.b)
    return network


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as running:
        yield running


@pytest.fixture
def nameserver(tmp_path: Path, net: Network, stack: ExitStack) -> str:
    records = dkim.keygen("a.test", "mail", tmp_path / "a")
    server = stack.enter_context(DNSServer(build_zone(net, records)))
    return server.address


@pytest.fixture
def server_a(tmp_path: Path, net: Network, nameserver: str,
             stack: ExitStack) -> ServerThread:
    base = make_config(tmp_path / "a")
    config = replace(base, hostname="mx.a.test", listen=listen_on(net.a, 0),
                     delivery=DeliveryConfig(source_address=net.a, retry_base=60.0),
                     dns=DNSConfig((nameserver,)))
    server = stack.enter_context(ServerThread(config))
    server.add_domain("a.test")
    server.add_user(ALICE)
    return server


StartB = Callable[..., ServerThread]


@pytest.fixture
def start_b(tmp_path: Path, net: Network, nameserver: str, stack: ExitStack) -> StartB:
    """Start server B (tests that need B down call this later)."""

    def start(dmarc_reject: bool = False) -> ServerThread:
        base = make_config(tmp_path / "b")
        config = replace(base, hostname="mx.b.test", listen=listen_on(net.b, 25),
                         dns=DNSConfig((nameserver,)),
                         mailauth=MailAuthConfig(trusted_networks=(),
                                                 dmarc_reject=dmarc_reject))
        server = stack.enter_context(ServerThread(config))
        server.add_domain("b.test")
        server.add_user(BOB)
        return server

    return start


def runner(server: ServerThread) -> QueueRunner:
    assert server.server.queue_runner is not None
    return server.server.queue_runner


def run_queue(server: ServerThread) -> int:
    return server.call(runner(server).run_once())


def queue_of(server: ServerThread) -> list[object]:
    return list(server.call(server.store.list_queue()))


def submit(server: ServerThread, address: str, recipients: list[str],
           message: bytes = MESSAGE) -> None:
    """Submission with STARTTLS and AUTH, as a mail client does it."""
    with smtplib.SMTP(address, server.port("submission"), timeout=10) as client:
        client.starttls(context=client_tls_context())
        client.login(ALICE, PASSWORD)
        assert client.sendmail(ALICE, recipients, message) == {}


def auth_results(raw: bytes) -> str:
    """The Authentication-Results field, unfolded to one line."""
    value = email.message_from_bytes(raw)["Authentication-Results"]
    assert value is not None
    return " ".join(str(value).split())


def report_text(raw: bytes) -> str:
    report = email.message_from_bytes(raw)
    assert report.get_content_type() == "multipart/report"
    assert report["Return-Path"] == "<>"
    return report.as_string()


def test_submitted_mail_arrives_with_dkim_spf_dmarc_pass(server_a: ServerThread,
                                                        start_b: StartB, net: Network) -> None:
    server_b = start_b()
    submit(server_a, net.a, [BOB])
    assert run_queue(server_a) == 1
    assert queue_of(server_a) == []
    [raw] = server_b.inbox(BOB)
    results = auth_results(raw)
    assert results.startswith("mx.b.test;")
    assert "dkim=pass header.d=a.test" in results and "dkim=fail" not in results
    assert f"spf=pass smtp.mailfrom={ALICE}" in results
    assert "dmarc=pass (p=reject) header.from=a.test" in results
    assert b"\r\n\r\nhello from A\r\n" in raw
    assert server_a.inbox(ALICE) == []


def test_unknown_user_on_b_bounces_to_sender_on_a(server_a: ServerThread,
                                                 start_b: StartB, net: Network) -> None:
    server_b = start_b()
    submit(server_a, net.a, ["nobody@b.test"])
    run_queue(server_a)
    assert queue_of(server_a) == []
    [raw] = server_a.inbox(ALICE)
    text = report_text(raw)
    assert "Final-Recipient: rfc822; nobody@b.test" in text
    assert "Action: failed" in text and "Remote-MTA: dns; mx.b.test" in text
    assert "550" in text
    assert server_b.inbox(BOB) == []


def test_b_down_then_back_after_flush(server_a: ServerThread, start_b: StartB,
                                      net: Network) -> None:
    submit(server_a, net.a, [BOB])
    assert run_queue(server_a) == 1
    [entry] = server_a.call(server_a.store.list_queue())
    assert entry.attempts == 1
    assert entry.last_error is not None and f"cannot connect to {net.b}:25" in entry.last_error
    assert entry.next_attempt is not None
    assert entry.next_attempt > datetime.now(UTC) + timedelta(seconds=20)
    assert run_queue(server_a) == 0  # backing off
    server_b = start_b()
    assert server_a.call(queue_ops.flush(server_a.store)) == 1
    assert run_queue(server_a) == 1
    assert queue_of(server_a) == []
    [raw] = server_b.inbox(BOB)
    assert "dmarc=pass" in auth_results(raw)
    assert server_a.inbox(ALICE) == []


def test_mailbox_full_4xx_then_success(server_a: ServerThread, start_b: StartB,
                                       net: Network) -> None:
    server_b = start_b()
    server_b.call(server_b.store.set_quota(BOB, None, 0))  # full: 452 4.2.2 at RCPT
    submit(server_a, net.a, [BOB])
    run_queue(server_a)
    [entry] = server_a.call(server_a.store.list_queue())
    assert entry.attempts == 1
    assert entry.last_error is not None and "452 4.2.2" in entry.last_error
    server_b.call(server_b.store.set_quota(BOB, None, None))
    assert server_a.call(queue_ops.flush(server_a.store, entry.id)) == 1
    assert run_queue(server_a) == 1
    assert queue_of(server_a) == []
    assert len(server_b.inbox(BOB)) == 1
    assert server_a.inbox(ALICE) == []


def test_expired_entry_bounces(server_a: ServerThread, net: Network) -> None:
    submit(server_a, net.a, [BOB])  # B never starts: every attempt is refused
    later = datetime.now(UTC) + timedelta(seconds=server_a.config.delivery.max_age + 60)
    runner(server_a).clock = lambda: later
    run_queue(server_a)
    assert queue_of(server_a) == []
    [raw] = server_a.inbox(ALICE)
    text = report_text(raw)
    assert "Action: failed" in text and "Status: 4.4.7" in text
    assert f"Final-Recipient: rfc822; {BOB}" in text


def test_null_sender_report_is_not_bounced_again(server_a: ServerThread,
                                                 start_b: StartB) -> None:
    server_b = start_b()

    async def enqueue_report() -> None:
        writer = server_a.store.blobs.writer()
        writer.write(b"Return-Path: <>\r\nFrom: MAILER-DAEMON@a.test\r\n"
                     b"Subject: a report\r\n\r\nx\r\n")
        blob = await writer.finish()
        await server_a.store.deliver(blob, [], OutboundEnvelope(
            "", (OutboundRecipient("nobody@b.test"),)))

    server_a.call(enqueue_report())
    assert run_queue(server_a) == 1  # B refuses the recipient with 550
    assert queue_of(server_a) == [] and queue_of(server_b) == []
    assert server_a.inbox(ALICE) == [] and server_b.inbox(BOB) == []


SPOOF = (b"From: ceo@a.test\r\nTo: bob@b.test\r\nSubject: urgent\r\n"
         b"Message-ID: <spoof@a.test>\r\n\r\nwire the money\r\n")


def send_as_stranger(net: Network) -> None:
    with smtplib.SMTP(net.b, 25, timeout=10, source_address=(net.stranger, 0)) as client:
        client.ehlo("stranger.example")
        client.sendmail("ceo@a.test", [BOB], SPOOF)


def test_spoofed_from_rejected_by_dmarc(start_b: StartB, net: Network) -> None:
    server_b = start_b(dmarc_reject=True)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_as_stranger(net)
    assert refused.value.smtp_code == 550
    error = refused.value.smtp_error
    assert isinstance(error, bytes) and error.startswith(b"5.7.1")
    assert server_b.inbox(BOB) == [] and server_b.inbox(BOB, "Junk") == []


def test_spoofed_from_goes_to_junk_without_dmarc_reject(start_b: StartB,
                                                        net: Network) -> None:
    server_b = start_b(dmarc_reject=False)
    send_as_stranger(net)
    assert server_b.inbox(BOB) == []
    [raw] = server_b.inbox(BOB, "Junk")
    results = auth_results(raw)
    assert "spf=fail smtp.mailfrom=ceo@a.test" in results
    assert "dmarc=fail (p=reject) header.from=a.test" in results
    assert "dkim=pass" not in results
