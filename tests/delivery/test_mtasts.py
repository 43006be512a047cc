"""MTA-STS (RFC 8461): record and policy parsing, HTTPS fetching, caching, and the runner."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailpost.delivery import mtasts
from mailpost.delivery.mtasts import (
    HTTPSFetcher,
    Policy,
    PolicyCache,
    PolicyError,
    mx_matches,
    parse_policy,
    parse_txt,
)
from mailpost.delivery.mx import Destination
from mailpost.delivery.outbound import Reply, SessionError, TLSPolicy, Transaction
from mailpost.delivery.queue import QueueRunner
from mailpost.mailauth.dns import StaticResolver, SystemResolver
from mailpost.store.interface import MailStore
from mailpost.store.types import OutboundRecipient
from tests.delivery.conftest import FakeClock
from tests.delivery.policyhost import HostPKI, PolicyHost, Response, make_ca
from tests.delivery.test_queue import FakeResolver, enqueue, make_config
from tests.dnsserver import DNSServer, Zone

POLICY = ("version: STSv1\r\nmode: enforce\r\nmx: mx.b.test\r\nmx: *.backup.b.test\r\n"
          "max_age: 86400\r\n")


# -- parsing ---------------------------------------------------------------------------------


def test_txt_record_gives_the_id() -> None:
    assert parse_txt(["v=STSv1; id=20160831085700Z;"]) == "20160831085700Z"
    assert parse_txt(["v=STSv1;id=abc ; ext_1=x.y"]) == "abc"
    # Records for other purposes are discarded before counting (§3.1).
    assert parse_txt(["v=spf1 -all", "v=STSv1; id=one"]) == "one"


@pytest.mark.parametrize("records", [
    [],
    ["v=STSv1; id=one", "v=STSv1; id=two"],        # more than one
    ["v=STSv1"],                                    # no id
    ["v=STSv1; id="],                               # empty id
    ["v=STSv1; id=has-dash"],                       # id is ALPHA / DIGIT only
    ["v=STSv1; id=" + "a" * 33],                    # at most 32
    ["v=STSv1; id=ok; broken"],                     # a field without "="
    ["id=one; v=STSv1"],                            # must begin with the version
    ["v=STSv2; id=one"],
])
def test_invalid_txt_records(records: list[str]) -> None:
    with pytest.raises(PolicyError):
        parse_txt(records)


def test_policy_parsing() -> None:
    policy = parse_policy(POLICY)
    assert policy == Policy("enforce", ("mx.b.test", "*.backup.b.test"), 86400)
    # LF line endings, unknown and malformed lines, duplicates: the first non-mx field wins.
    text = ("version: STSv1\nmode:testing\nmode: enforce\nfuture_ext: whatever\n"
            "this line is not a field\nmx: MX.B.Test.\nmx: not_a host\nmax_age: 9999999999\n")
    assert parse_policy(text) == Policy("testing", ("mx.b.test",), mtasts.MAX_MAX_AGE)
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 0\n").mx == ()


@pytest.mark.parametrize("text", [
    POLICY.replace("STSv1", "STSv2"),
    POLICY.replace("enforce", "strict"),
    POLICY.replace("max_age: 86400", "max_age: -1"),
    POLICY.replace("max_age: 86400", "max_age: 12345678901"),       # more than 10 digits
    "version: STSv1\nmode: enforce\nmax_age: 60\n",                  # no mx outside "none"
    "mode: enforce\nmx: mx.b.test\nmax_age: 60\n",                   # no version
])
def test_invalid_policies(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


@pytest.mark.parametrize(("pattern", "host", "expected"), [
    ("mail.example.com", "mail.example.com", True),
    ("mail.example.com", "MAIL.example.com.", True),
    ("mail.example.com", "other.example.com", False),
    ("*.example.com", "mail.example.com", True),
    ("*.example.com", "example.com", False),                # §4.1: not the bare suffix
    ("*.example.com", "foo.bar.example.com", False),        # §4.1: one label only
    ("*.example.com", "mailexample.com", False),
])
def test_mx_patterns(pattern: str, host: str, expected: bool) -> None:
    assert mx_matches(pattern, host) is expected


def test_plan_per_mode() -> None:
    targets = [Destination("192.0.2.1", 25, "mx.b.test"),
               Destination("192.0.2.2", 25, "rogue.example")]
    enforce = parse_policy(POLICY)
    plan = mtasts.plan("b.test", enforce, targets)
    assert plan.destinations == targets[:1]
    assert plan.tls == TLSPolicy(required=True, verify=True)
    testing = Policy("testing", enforce.mx, 60)
    assert mtasts.plan("b.test", testing, targets) == mtasts.Plan(targets)
    assert mtasts.plan("b.test", Policy("none", (), 60), targets) == mtasts.Plan(targets)
    assert mtasts.plan("b.test", None, targets) == mtasts.Plan(targets)


# -- fetching over HTTPS ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> HostPKI:
    return make_ca(tmp_path_factory.mktemp("pki"), ["mta-sts.b.test"])


@pytest.fixture
def host(pki: HostPKI) -> Iterator[PolicyHost]:
    with PolicyHost(pki) as server:
        server.response = Response(body=POLICY.encode())
        yield server


def fetcher(pki: HostPKI, host: PolicyHost, domain: str = "b.test") -> HTTPSFetcher:
    resolver = StaticResolver({(f"mta-sts.{domain}", "A"): ["127.0.0.1"]})
    return HTTPSFetcher(resolver, ca_file=str(pki.ca_file), port=host.port, timeout=5.0)


def test_fetch_connects_to_the_resolved_address_and_checks_the_name(
        pki: HostPKI, host: PolicyHost) -> None:
    assert parse_policy(fetcher(pki, host)("b.test")).mode == "enforce"
    assert host.paths == ["/.well-known/mta-sts.txt"]


def test_fetch_through_a_dns_server(pki: HostPKI, host: PolicyHost) -> None:
    zone = Zone({("mta-sts.b.test", "A"): ["127.0.0.1"]})
    with DNSServer(zone) as dns_server:
        resolver = SystemResolver((dns_server.address,), timeout=2.0)
        text = HTTPSFetcher(resolver, ca_file=str(pki.ca_file), port=host.port)("b.test")
    assert text == POLICY


def test_fetch_rejects_a_certificate_for_another_name(pki: HostPKI, host: PolicyHost) -> None:
    # The same server reached as mta-sts.c.test presents a certificate for mta-sts.b.test.
    with pytest.raises(ssl.SSLCertVerificationError):
        fetcher(pki, host, "c.test")("c.test")


def test_fetch_rejects_an_untrusted_ca(pki: HostPKI, host: PolicyHost) -> None:
    resolver = StaticResolver({("mta-sts.b.test", "A"): ["127.0.0.1"]})
    with pytest.raises(ssl.SSLCertVerificationError):
        HTTPSFetcher(resolver, port=host.port, timeout=5.0)("b.test")


@pytest.mark.parametrize("response", [
    Response(status=301, headers={"Location": "https://elsewhere.test/"}),  # §3.3: no redirects
    Response(status=404),
    Response(content_type="text/html"),
    Response(body=b"x" * (mtasts.MAX_POLICY_SIZE + 1)),
])
def test_fetch_refuses_bad_responses(pki: HostPKI, host: PolicyHost,
                                     response: Response) -> None:
    host.response = response if response.body else Response(
        response.status, response.content_type, POLICY.encode(), response.headers)
    with pytest.raises(PolicyError):
        fetcher(pki, host)("b.test")
    assert len(host.paths) == 1


def test_fetch_accepts_charset_parameters(pki: HostPKI, host: PolicyHost) -> None:
    host.response = Response(content_type="Text/Plain; charset=utf-8", body=POLICY.encode())
    assert fetcher(pki, host)("b.test") == POLICY


# -- the cache -------------------------------------------------------------------------------


class CountingFetch:
    def __init__(self, text: str) -> None:
        self.text: str | None = text
        self.domains: list[str] = []

    def __call__(self, domain: str) -> str:
        self.domains.append(domain)
        if self.text is None:
            raise OSError("connection refused")
        return self.text


def sts_resolver(policy_id: str | None) -> StaticResolver:
    resolver = StaticResolver()
    if policy_id is not None:
        resolver.add("_mta-sts.b.test", "TXT", [f"v=STSv1; id={policy_id}"])
    return resolver


def set_id(resolver: StaticResolver, policy_id: str | None) -> None:
    resolver.records.pop(("_mta-sts.b.test", "TXT"), None)
    if policy_id is not None:
        resolver.add("_mta-sts.b.test", "TXT", [f"v=STSv1; id={policy_id}"])


async def test_cache_keeps_the_policy_until_the_id_changes(clock: FakeClock) -> None:
    resolver, fetch = sts_resolver("one"), CountingFetch(POLICY)
    cache = PolicyCache(resolver, fetch, clock=clock)
    first = await cache.policy_for("B.test")
    assert first is not None and first.mode == "enforce"
    assert await cache.policy_for("b.test") == first
    assert fetch.domains == ["b.test"]
    set_id(resolver, "two")
    fetch.text = POLICY.replace("enforce", "testing")
    changed = await cache.policy_for("b.test")
    assert changed is not None and changed.mode == "testing"
    assert fetch.domains == ["b.test", "b.test"]


async def test_cached_policy_outlives_the_txt_record_until_max_age(clock: FakeClock) -> None:
    resolver, fetch = sts_resolver("one"), CountingFetch(POLICY)
    cache = PolicyCache(resolver, fetch, clock=clock)
    assert await cache.policy_for("b.test") is not None
    set_id(resolver, None)  # §3.1: a vanished record does not remove a cached policy
    assert await cache.policy_for("b.test") is not None
    clock.advance(seconds=86400)
    assert await cache.policy_for("b.test") is None
    assert fetch.domains == ["b.test"]


async def test_failed_fetch_keeps_the_old_policy_and_waits_before_retrying(
        clock: FakeClock) -> None:
    resolver, fetch = sts_resolver("one"), CountingFetch(POLICY)
    cache = PolicyCache(resolver, fetch, clock=clock)
    old = await cache.policy_for("b.test")
    set_id(resolver, "two")
    fetch.text = None
    assert await cache.policy_for("b.test") == old
    assert await cache.policy_for("b.test") == old    # not fetched again so soon (§3.3)
    assert len(fetch.domains) == 2
    clock.advance(minutes=6)
    fetch.text = POLICY.replace("enforce", "none")
    fresh = await cache.policy_for("b.test")
    assert fresh is not None and fresh.mode == "none" and len(fetch.domains) == 3


async def test_no_record_or_no_fetch_means_no_policy(clock: FakeClock) -> None:
    fetch = CountingFetch(POLICY)
    assert await PolicyCache(sts_resolver(None), fetch, clock=clock).policy_for("b.test") is None
    assert fetch.domains == []
    broken = StaticResolver({("_mta-sts.b.test", "TXT"): None})  # temporary DNS failure
    assert await PolicyCache(broken, fetch, clock=clock).policy_for("b.test") is None
    fetch.text = "not a policy"
    assert await PolicyCache(sts_resolver("x"), fetch, clock=clock).policy_for("b.test") is None


async def test_the_policy_survives_a_restart_in_the_store(store: MailStore,
                                                          clock: FakeClock) -> None:
    resolver, fetch = sts_resolver("one"), CountingFetch(POLICY)
    assert await PolicyCache(resolver, fetch, clock=clock, store=store).policy_for("b.test")
    stored = await store.get_mta_sts_policy("b.test")
    assert stored is not None and stored.policy_id == "one" and "enforce" in stored.text
    # A restart, and an attacker now blocks both the TXT record and the policy host (§5.1):
    # the policy known before still applies, and nothing is fetched.
    set_id(resolver, None)
    fetch.text = None
    restarted = PolicyCache(resolver, fetch, clock=clock, store=store)
    policy = await restarted.policy_for("b.test")
    assert policy is not None and policy.mode == "enforce"
    assert fetch.domains == ["b.test"]
    clock.advance(seconds=86400)  # max_age over: it no longer applies, in memory or stored
    assert await PolicyCache(resolver, fetch, clock=clock, store=store).policy_for(
        "b.test") is None


async def test_a_changed_id_replaces_the_stored_policy(store: MailStore,
                                                       clock: FakeClock) -> None:
    resolver, fetch = sts_resolver("one"), CountingFetch(POLICY)
    await PolicyCache(resolver, fetch, clock=clock, store=store).policy_for("b.test")
    set_id(resolver, "two")
    fetch.text = POLICY.replace("enforce", "testing")
    restarted = PolicyCache(resolver, fetch, clock=clock, store=store)
    policy = await restarted.policy_for("b.test")
    assert policy is not None and policy.mode == "testing"
    stored = await store.get_mta_sts_policy("b.test")
    assert stored is not None and stored.policy_id == "two"


# -- enforcement in the runner ---------------------------------------------------------------


class FixedPolicy:
    def __init__(self, policy: Policy | None) -> None:
        self.policy = policy
        self.domains: list[str] = []

    async def policy_for(self, domain: str) -> Policy | None:
        self.domains.append(domain)
        return self.policy


class CapturingSender:
    def __init__(self, fail_tls: bool = False) -> None:
        self.fail_tls = fail_tls
        self.tried: list[tuple[str, TLSPolicy]] = []

    async def __call__(self, destination: Destination, transaction: Transaction, helo: str,
                       **options: Any) -> dict[str, Reply]:
        policy = options["policy"]
        self.tried.append((destination.tls_name, policy))
        if self.fail_tls and policy.verify:
            raise SessionError(f"{destination.host}: certificate verify failed")
        return {r.address: Reply(250, "2.0.0 ok") for r in transaction.recipients}


MX = FakeResolver({"b.test": [(5, "rogue.example"), (10, "mx.b.test")]})


def sts_runner(store: MailStore, tmp_path: Path, clock: FakeClock, sender: CapturingSender,
               policy: Policy | None, **delivery: Any) -> QueueRunner:
    return QueueRunner(store, make_config(tmp_path, **delivery), resolver=MX, clock=clock,
                       send=sender, rand=lambda: 1.0, signer=None,
                       mta_sts=FixedPolicy(policy))


async def test_enforce_tries_only_matching_mx_with_verified_tls(
        store: MailStore, tmp_path: Path, clock: FakeClock) -> None:
    sender = CapturingSender()
    entry = await enqueue(store, OutboundRecipient("bob@b.test"))
    await sts_runner(store, tmp_path, clock, sender, parse_policy(POLICY)).attempt(entry)
    assert sender.tried == [("mx.b.test", TLSPolicy(required=True, verify=True))]
    assert await store.get_queue_entry(entry.id) is None


async def test_enforce_without_matching_mx_defers(store: MailStore, tmp_path: Path,
                                                  clock: FakeClock) -> None:
    sender = CapturingSender()
    entry = await enqueue(store, OutboundRecipient("bob@b.test"))
    policy = Policy("enforce", ("*.elsewhere.test",), 60)
    await sts_runner(store, tmp_path, clock, sender, policy).attempt(entry)
    assert sender.tried == []
    pending = await store.get_queue_entry(entry.id)
    assert pending is not None and pending.attempts == 1
    assert pending.last_error is not None and "MTA-STS" in pending.last_error


async def test_enforce_tls_failure_is_temporary(store: MailStore, tmp_path: Path,
                                                clock: FakeClock) -> None:
    sender = CapturingSender(fail_tls=True)
    entry = await enqueue(store, OutboundRecipient("bob@b.test"))
    await sts_runner(store, tmp_path, clock, sender, parse_policy(POLICY)).attempt(entry)
    assert sender.tried == [("mx.b.test", TLSPolicy(required=True, verify=True))]
    pending = await store.get_queue_entry(entry.id)
    assert pending is not None and pending.attempts == 1
    assert pending.last_error is not None and "certificate verify failed" in pending.last_error


async def test_testing_mode_delivers_as_before(store: MailStore, tmp_path: Path,
                                               clock: FakeClock,
                                               caplog: pytest.LogCaptureFixture) -> None:
    sender = CapturingSender()
    entry = await enqueue(store, OutboundRecipient("bob@b.test"))
    policy = Policy("testing", ("mx.b.test",), 60)
    await sts_runner(store, tmp_path, clock, sender, policy).attempt(entry)
    assert sender.tried == [("rogue.example", TLSPolicy())]
    assert "rogue.example does not match" in caplog.text


async def test_routes_and_relay_bypass_mta_sts(store: MailStore, tmp_path: Path,
                                               clock: FakeClock) -> None:
    sender = CapturingSender()
    entry = await enqueue(store, OutboundRecipient("bob@b.test"))
    source = FixedPolicy(Policy("enforce", ("*.elsewhere.test",), 60))
    run = QueueRunner(store, make_config(tmp_path, routes={"b.test": "relay.local:2525"}),
                      resolver=MX, clock=clock, send=sender, rand=lambda: 1.0, signer=None,
                      mta_sts=source)
    await run.attempt(entry)
    assert sender.tried == [("relay.local", TLSPolicy())] and source.domains == []


def test_config_keys(tmp_path: Path) -> None:
    assert make_config(tmp_path).delivery.mta_sts is True
    config = make_config(tmp_path, mta_sts=False, mta_sts_ca_file="/etc/ca.pem")
    assert config.delivery.mta_sts is False
    assert config.delivery.mta_sts_ca_file == "/etc/ca.pem"

