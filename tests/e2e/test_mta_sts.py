"""MTA-STS end to end: server A delivers to b.test, which publishes an ``enforce`` policy.

The network and DNS are those of :mod:`tests.e2e.test_two_servers`, plus ``b.test``'s
``_mta-sts`` TXT record and ``mta-sts.b.test`` pointing at a local HTTPS policy host. One test
CA signs the certificate of both B's SMTP listener (``mx.b.test``) and the policy host. A's
queue runner gets a policy cache whose fetcher trusts that CA and knows the policy host's port
(the real one uses 443); ``SSL_CERT_FILE`` makes the same CA the one the SMTP client verifies
against, as the system store would for a real MX.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from mailpost.config import DeliveryConfig, DNSConfig, MailAuthConfig, TLSConfig
from mailpost.delivery.mtasts import HTTPSFetcher, PolicyCache
from mailpost.mailauth import dkim
from mailpost.mailauth.dns import SystemResolver
from tests.delivery.policyhost import HostPKI, PolicyHost, Response, make_ca
from tests.dnsserver import DNSServer
from tests.e2e.harness import ServerThread, make_config
from tests.e2e.test_two_servers import (
    ALICE,
    BOB,
    build_zone,
    listen_on,
    queue_of,
    require_port_25,
    run_queue,
    runner,
    submit,
    worker_network,
)

ENFORCE = b"version: STSv1\nmode: enforce\nmx: mx.b.test\nmax_age: 86400\n"


@dataclass(frozen=True)
class Setup:
    a: ServerThread
    b: ServerThread
    host: PolicyHost
    address: str          # A's address, where mail is submitted
    ca_file: Path         # the test CA that signed B's certificates


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    net = worker_network()
    require_port_25(net.b)
    pki: HostPKI = make_ca(tmp_path, ["mx.b.test", "mta-sts.b.test"])
    zone = build_zone(net, dkim.keygen("a.test", "mail", tmp_path / "a"))
    zone.add("_mta-sts.b.test", "TXT", "v=STSv1; id=20261126")
    zone.add("mta-sts.b.test", "A", "127.0.0.1")
    with ExitStack() as stack:
        nameserver = stack.enter_context(DNSServer(zone)).address
        host = stack.enter_context(PolicyHost(pki))
        host.response = Response(body=ENFORCE)
        config_a = replace(make_config(tmp_path / "a"), hostname="mx.a.test",
                           listen=listen_on(net.a, 0), dns=DNSConfig((nameserver,)),
                           delivery=DeliveryConfig(source_address=net.a, retry_base=60.0))
        config_b = replace(make_config(tmp_path / "b"), hostname="mx.b.test",
                           listen=listen_on(net.b, 25), dns=DNSConfig((nameserver,)),
                           tls=TLSConfig(pki.cert_file, pki.key_file),
                           mailauth=MailAuthConfig(trusted_networks=()))
        server_a = stack.enter_context(ServerThread(config_a))
        server_b = stack.enter_context(ServerThread(config_b))
        server_a.add_domain("a.test")
        server_a.add_user(ALICE)
        server_b.add_domain("b.test")
        server_b.add_user(BOB)
        resolver = SystemResolver((nameserver,), timeout=2.0)
        runner(server_a).mta_sts = PolicyCache(
            resolver, HTTPSFetcher(resolver, ca_file=str(pki.ca_file), port=host.port))
        yield Setup(server_a, server_b, host, net.a, pki.ca_file)


def test_enforced_policy_delivers_over_verified_tls(setup: Setup,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(setup.ca_file))
    submit(setup.a, setup.address, [BOB])
    assert run_queue(setup.a) == 1
    assert queue_of(setup.a) == []
    [raw] = setup.b.inbox(BOB)
    assert b"ESMTPS" in raw.split(b"\r\n\r\n")[0]
    assert setup.host.paths == ["/.well-known/mta-sts.txt"]


def test_unverifiable_mx_certificate_keeps_mail_queued(setup: Setup) -> None:
    # Without the test CA in the client's store, B's certificate cannot be verified.
    submit(setup.a, setup.address, [BOB])
    assert run_queue(setup.a) == 1
    [entry] = setup.a.call(setup.a.store.list_queue())
    assert entry.last_error is not None and "CERTIFICATE_VERIFY_FAILED" in entry.last_error
    assert setup.b.inbox(BOB) == []


def test_mx_not_in_policy_keeps_mail_queued(setup: Setup) -> None:
    setup.host.response = Response(body=ENFORCE.replace(b"mx.b.test", b"*.elsewhere.test"))
    submit(setup.a, setup.address, [BOB])
    assert run_queue(setup.a) == 1
    [entry] = setup.a.call(setup.a.store.list_queue())
    assert entry.last_error is not None and "MTA-STS" in entry.last_error
    assert setup.b.inbox(BOB) == []
