"""The real resolver against a tiny DNS server on the loopback (no outside network)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rrset
import pytest

from mailpost.mailauth.dns import DNSTempError, StaticResolver, SystemResolver, reverse_name

ZONE = {
    ("example.test.", "TXT"): ['"v=spf1 ip4:192.0.2.0/24 " "-all"'],
    ("example.test.", "MX"): ["10 mx.example.test."],
    ("mx.example.test.", "A"): ["192.0.2.25"],
}


def answer(query: bytes) -> bytes:
    request = dns.message.from_wire(query)
    response = dns.message.make_response(request)
    question = request.question[0]
    name, rdtype = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
    if name == "servfail.test.":
        response.set_rcode(dns.rcode.SERVFAIL)
    elif (name, rdtype) in ZONE:
        response.answer.append(dns.rrset.from_text(name, 60, "IN", rdtype, *ZONE[(name, rdtype)]))
    elif not any(key[0] == name for key in ZONE):
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response.to_wire()


@pytest.fixture
def nameserver() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                query, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            sock.sendto(answer(query), peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(2)
    sock.close()


def test_system_resolver_answers_in_plain_text(nameserver: str) -> None:
    resolver = SystemResolver([nameserver], timeout=2)
    # RFC 7208 §3.3: the character-strings of one TXT record are joined without spaces.
    assert resolver.lookup("example.test", "TXT") == ["v=spf1 ip4:192.0.2.0/24 -all"]
    assert resolver.lookup("example.test.", "MX") == ["10 mx.example.test"]
    assert resolver.lookup("mx.example.test", "A") == ["192.0.2.25"]
    assert resolver.lookup("example.test", "AAAA") == []  # no data
    assert resolver.lookup("missing.test", "TXT") == []  # NXDOMAIN
    with pytest.raises(DNSTempError):
        resolver.lookup("servfail.test", "TXT")


def test_static_resolver_matches_names_like_dns() -> None:
    resolver = StaticResolver({("Example.TEST.", "txt"): ["a"]})
    resolver.add("example.test", "TXT", ["b"])
    assert resolver.lookup("EXAMPLE.test", "TXT") == ["a", "b"]
    assert resolver.queries == [("example.test", "TXT")]


def test_reverse_name() -> None:
    assert reverse_name("192.0.2.1") == "1.2.0.192.in-addr.arpa"
