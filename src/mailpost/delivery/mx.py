"""Where to deliver a remote domain's mail: route table, smarthost, or MX records.

Theory of operation
===================

:func:`destinations` turns a recipient domain into an ordered list of :class:`Destination`
(host, port, name for TLS). The operator's choices come first: a per-domain route
(``[delivery.routes]``) wins, then the smarthost (``[delivery] relay``). Otherwise DNS decides
(RFC 5321 §5.1):

* MX records sorted by preference (lowest first; equal preferences shuffled to spread load);
* no MX record at all: the domain itself is the implicit MX (its A/AAAA records);
* a "null MX" (one record, preference 0, exchange ".") means the domain accepts no mail
  (RFC 7505 §3): a permanent failure, as is a domain that does not exist (NXDOMAIN);
* any other DNS failure (timeout, SERVFAIL) is temporary: the entry is retried later.

Each MX host is resolved to its addresses with the same resolver, so ``[dns] nameservers``
governs every lookup. The :class:`Resolver` protocol lets tests substitute a fake.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.resolver

from mailpost.config import parse_host_port

SMTP_PORT = 25


class PermanentDNSError(Exception):
    """The domain cannot receive mail (null MX, NXDOMAIN): bounce, do not retry."""


class TemporaryDNSError(Exception):
    """The lookup failed for now (timeout, SERVFAIL): retry later."""


@dataclass(frozen=True, slots=True)
class Destination:
    host: str          # what to connect to (a name or an address)
    port: int
    tls_name: str      # the name a certificate would be checked against (the MX host name)


class Resolver(Protocol):
    async def mx(self, domain: str) -> list[tuple[int, str]] | None:
        """(preference, exchange) pairs; None when the domain has no MX records.

        Raises PermanentDNSError for NXDOMAIN, TemporaryDNSError otherwise."""

    async def addresses(self, host: str) -> list[str]:
        """IPv6 and IPv4 addresses of ``host`` (empty when it has none)."""


class DNSResolver:
    """:class:`Resolver` over dnspython; ``nameservers`` ("host:port") replace the system's."""

    def __init__(self, nameservers: Sequence[str] = (), timeout: float = 10.0) -> None:
        try:
            self._resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration:
            # No usable /etc/resolv.conf: the server still starts (local mail works), and
            # lookups go to a resolver on this host until [dns] nameservers says otherwise.
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = ["127.0.0.1"]
        if nameservers:
            self._resolver.nameservers = [parse_host_port(ns, "dns.nameservers")[0]
                                          for ns in nameservers]
            # dnspython applies one port to every server; the first one's port is used.
            self._resolver.port = parse_host_port(nameservers[0], "dns.nameservers")[1]
        self._resolver.lifetime = timeout

    async def mx(self, domain: str) -> list[tuple[int, str]] | None:
        try:
            answer = await self._resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN as exc:
            raise PermanentDNSError(f"domain {domain} does not exist") from exc
        except dns.resolver.NoAnswer:
            return None
        except dns.exception.DNSException as exc:
            raise TemporaryDNSError(f"MX lookup for {domain} failed: {exc}") from exc
        return [(int(r.preference), r.exchange.to_text(omit_final_dot=True)) for r in answer]

    async def addresses(self, host: str) -> list[str]:
        found: list[str] = []
        failures = 0
        for rdtype in ("AAAA", "A"):
            try:
                answer = await self._resolver.resolve(host, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except dns.exception.DNSException:
                failures += 1
                continue
            found.extend(r.to_text() for r in answer)
        if not found and failures:
            raise TemporaryDNSError(f"address lookup for {host} failed")
        return found


def is_null_mx(records: Sequence[tuple[int, str]]) -> bool:
    """RFC 7505 §3: a single MX record with preference 0 and an empty exchange (".")."""
    return len(records) == 1 and records[0][1].rstrip(".") == ""


def order_by_preference(records: Sequence[tuple[int, str]]) -> list[str]:
    """RFC 5321 §5.1: lowest preference first; equal preferences in random order."""
    shuffled = list(records)
    random.shuffle(shuffled)
    return [host for _, host in sorted(shuffled, key=lambda record: record[0])]


async def destinations(domain: str, resolver: Resolver, routes: Mapping[str, str],
                       relay: str | None) -> list[Destination]:
    """The ordered places to try for ``domain`` (see module docstring)."""
    route = routes.get(domain.lower())
    if route is not None:
        return [_configured(route, "delivery.routes")]
    if relay is not None:
        return [_configured(relay, "delivery.relay")]
    records = await resolver.mx(domain)
    if records is None:  # RFC 5321 §5.1: no MX, so the domain is its own implicit MX
        hosts = [domain]
    elif is_null_mx(records):
        raise PermanentDNSError(f"domain {domain} does not accept mail (null MX)")
    else:
        hosts = order_by_preference(records)
    found: list[Destination] = []
    for host in hosts:
        found.extend(Destination(address, SMTP_PORT, host)
                     for address in await resolver.addresses(host))
    if not found:
        raise TemporaryDNSError(f"no address for any mail exchanger of {domain}")
    return found


def _configured(text: str, key: str) -> Destination:
    host, port = parse_host_port(text, key)
    return Destination(host, port, host)
