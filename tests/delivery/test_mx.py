"""Destination selection (routes, relay, MX order, null MX) and the dnspython resolver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import ClassVar, cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from mailpost.delivery.mx import (
    Destination,
    DNSResolver,
    PermanentDNSError,
    TemporaryDNSError,
    destinations,
    is_null_mx,
)


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


class FakeDNS(asyncio.DatagramProtocol):
    """Answers MX and A queries from a table; NXDOMAIN for names it does not know."""

    zone: ClassVar[dict[tuple[str, str], tuple[str, str]]] = {
        ("remote.net.", "MX"): ("MX", "10 mx.remote.net."),
        ("nullmx.net.", "MX"): ("MX", "0 ."),
        ("mx.remote.net.", "A"): ("A", "192.0.2.7")}
    known: ClassVar[frozenset[str]] = frozenset({"remote.net.", "nullmx.net.", "mx.remote.net."})

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        record = self.zone.get((name, rdtype))
        if record is not None:
            response.answer.append(dns.rrset.from_text(name, 60, "IN", *record))
        elif name not in self.known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def nameserver() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(FakeDNS, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    yield f"127.0.0.1:{port}"
    transport.close()


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
