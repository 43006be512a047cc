"""DNS lookups for mail authentication, behind one small interface that tests replace.

Theory of operation
-------------------
SPF, DKIM and DMARC each need only a handful of record types (TXT, A, AAAA, MX, PTR). The
libraries that implement them each have their own lookup hook, so every lookup is funnelled
through :class:`Resolver.lookup`, which answers with plain text values:

* ``TXT``: each record's character-strings joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2);
* ``A``/``AAAA``: the address; ``MX``: ``"PREFERENCE EXCHANGE"``; ``PTR``: the target name.

A name that does not exist and a name without records of the type both answer ``[]``; a
failure that may go away (time-out, SERVFAIL, no reachable server) raises :class:`DNSTempError`,
which the callers turn into the RFC's ``temperror`` results.

:class:`SystemResolver` asks real servers with dnspython (the configured ones, else those of
the host); :class:`StaticResolver` answers from a table, for tests and for checking records
offline. Lookups block, so callers run them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.reversename

from mailpost.config import parse_host_port

SUPPORTED_TYPES = frozenset({"TXT", "A", "AAAA", "MX", "PTR"})


class DNSTempError(Exception):
    """A lookup failed in a way that may succeed later (RFC 7208 §2.6.6 temperror)."""


class Resolver(Protocol):
    def lookup(self, name: str, rdtype: str) -> list[str]:
        """Values of the records of type ``rdtype`` at ``name``; [] when there are none."""


def normalise_name(name: str) -> str:
    """The form names are compared in: lower case, without the root dot."""
    return name.strip().rstrip(".").lower()


class SystemResolver:
    """Real DNS through dnspython; ``nameservers`` ("host:port", as in ``[dns]``) empty means
    the host's resolv.conf."""

    def __init__(self, nameservers: Sequence[str] = (), timeout: float = 10.0) -> None:
        self._resolver = dns.resolver.Resolver(configure=not nameservers)
        if nameservers:
            servers: list[str | dns.nameserver.Nameserver] = []
            for text in nameservers:
                host, port = parse_host_port(text, "dns.nameservers")
                servers.append(dns.nameserver.Do53Nameserver(host, port))
            self._resolver.nameservers = servers
        self._resolver.lifetime = timeout

    def lookup(self, name: str, rdtype: str) -> list[str]:
        if rdtype not in SUPPORTED_TYPES:
            raise ValueError(f"unsupported record type {rdtype}")
        try:
            answer = self._resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DNSTempError(f"{name} {rdtype}: {exc}") from exc
        except dns.exception.DNSException as exc:
            raise DNSTempError(f"{name} {rdtype}: {exc}") from exc
        return [_text_of(rdtype, rdata) for rdata in answer]


def _text_of(rdtype: str, rdata: Any) -> str:
    if rdtype == "TXT":
        strings: Iterable[bytes] = rdata.strings
        # RFC 7208 §3.3: the strings of one record are concatenated without spaces.
        return b"".join(strings).decode("utf-8", "replace")
    if rdtype in ("A", "AAAA"):
        return str(rdata.address)
    if rdtype == "MX":
        return f"{rdata.preference} {rdata.exchange.to_text(True)}"
    return str(rdata.target.to_text(True))


class StaticResolver:
    """Answers from a table keyed by ``(name, type)``; a ``None`` value means "temporary error".

    Names are matched case-insensitively and with or without the root dot, as in DNS.
    """

    def __init__(self, records: Mapping[tuple[str, str], Sequence[str] | None] | None = None
                 ) -> None:
        self.records: dict[tuple[str, str], list[str] | None] = {}
        for (name, rdtype), values in (records or {}).items():
            self.add(name, rdtype, values)
        self.queries: list[tuple[str, str]] = []

    def add(self, name: str, rdtype: str, values: Sequence[str] | None) -> None:
        key = (normalise_name(name), rdtype.upper())
        known = self.records.get(key)
        self.records[key] = None if values is None else [*(known or []), *values]

    def lookup(self, name: str, rdtype: str) -> list[str]:
        key = (normalise_name(name), rdtype.upper())
        self.queries.append(key)
        if key in self.records and self.records[key] is None:
            raise DNSTempError(f"{name} {rdtype}: simulated failure")
        return list(self.records.get(key) or [])


def reverse_name(address: str) -> str:
    """The in-addr.arpa / ip6.arpa name of an address (RFC 1035 §3.5, RFC 3596 §2.5)."""
    return dns.reversename.from_address(address).to_text(True)
