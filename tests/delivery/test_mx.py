"""Destination selection (routes, relay, MX order, null MX) and the dnspython resolver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mailpost.delivery.mx import (
    Destination,
    DNSResolver,
    PermanentDNSError,
    TemporaryDNSError,
    destinations,
    is_null_mx,
)
from tests.dnsserver import DNSServer, Zone


class StaticResolver:
    def __init__(self, mx: list[tuple[int, str]] | None,
                 addresses: dict[str, list[str]]) -> None:
        self.records = mx
        self.table = addresses

    async def mx(self, domain: str) -> list[tuple[int, str]] | None:
        return self.records

    async def addresses(self, host: str) -> list[str]:
        return self.table.get(host, [])


async def test_mx_preference_order_and_addresses() -> None:
    resolver = StaticResolver([(20, "b.mx"), (10, "a.mx")],
                              {"a.mx": ["2001:db8::1", "192.0.2.1"], "b.mx": ["192.0.2.2"]})
    found = await destinations("remote.net", resolver, {}, None)
    assert found == [Destination("2001:db8::1", 25, "a.mx"), Destination("192.0.2.1", 25, "a.mx"),
                     Destination("192.0.2.2", 25, "b.mx")]


async def test_no_mx_means_implicit_mx() -> None:
    resolver = StaticResolver(None, {"remote.net": ["192.0.2.9"]})
    assert await destinations("remote.net", resolver, {}, None) == \
        [Destination("192.0.2.9", 25, "remote.net")]


async def test_null_mx_is_permanent() -> None:
    assert is_null_mx([(0, ".")]) and is_null_mx([(0, "")])
    assert not is_null_mx([(0, "."), (10, "mx.remote.net")])
    with pytest.raises(PermanentDNSError, match="null MX"):
        await destinations("remote.net", StaticResolver([(0, ".")], {}), {}, None)


async def test_no_address_is_temporary() -> None:
    with pytest.raises(TemporaryDNSError):
        await destinations("remote.net", StaticResolver([(10, "a.mx")], {}), {}, None)


async def test_route_then_relay_before_dns() -> None:
    resolver = StaticResolver([(0, ".")], {})  # would fail if consulted
    routes = {"remote.net": "[::1]:2525"}
    assert await destinations("Remote.NET", resolver, routes, "relay.test:587") == \
        [Destination("::1", 2525, "::1")]
    assert await destinations("else.net", resolver, routes, "relay.test:587") == \
        [Destination("relay.test", 587, "relay.test")]


@pytest.fixture
def nameserver() -> Iterator[str]:
    zone = Zone({("remote.net", "MX"): ["10 mx.remote.net."], ("nullmx.net", "MX"): ["0 ."],
                 ("mx.remote.net", "A"): ["192.0.2.7"]})
    with DNSServer(zone) as server:
        yield server.address


async def test_dns_resolver_uses_configured_nameserver(nameserver: str) -> None:
    resolver = DNSResolver([nameserver], timeout=3)
    assert await resolver.mx("remote.net") == [(10, "mx.remote.net")]
    assert await resolver.addresses("mx.remote.net") == ["192.0.2.7"]
    assert await destinations("remote.net", resolver, {}, None) == \
        [Destination("192.0.2.7", 25, "mx.remote.net")]
    with pytest.raises(PermanentDNSError, match="null MX"):
        await destinations("nullmx.net", resolver, {}, None)
    with pytest.raises(PermanentDNSError, match="does not exist"):
        await resolver.mx("missing.net")
