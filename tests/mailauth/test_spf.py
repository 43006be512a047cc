"""SPF results from table-driven DNS records (RFC 7208 §2.6)."""

from __future__ import annotations

import pytest

from mailpost.mailauth.dns import StaticResolver
from mailpost.mailauth.spf import check_spf

RESOLVER = StaticResolver({
    ("example.com", "TXT"): ["v=spf1 ip4:192.0.2.0/24 mx include:_spf.example.net -all"],
    ("example.com", "MX"): ["10 mx.example.com"],
    ("mx.example.com", "A"): ["198.51.100.7"],
    ("_spf.example.net", "TXT"): ["v=spf1 ip6:2001:db8::/32 -all"],
    ("soft.example", "TXT"): ["v=spf1 a ~all"],
    ("soft.example", "A"): ["198.51.100.99"],
    ("neutral.example", "TXT"): ["v=spf1 ?all"],
    ("helo.example", "TXT"): ["v=spf1 ip4:203.0.113.9 -all"],
    ("broken.example", "TXT"): ["v=spf1 ip4:not-an-address -all"],
    ("twice.example", "TXT"): ["v=spf1 -all", "v=spf1 +all"],
    ("flaky.example", "TXT"): None,
    ("unrelated.example", "TXT"): ["google-site-verification=abc"],
})


@pytest.mark.parametrize(("ip", "sender", "expected"), [
    ("192.0.2.55", "alice@example.com", "pass"),  # ip4 mechanism
    ("198.51.100.7", "alice@example.com", "pass"),  # mx mechanism
    ("2001:db8::25", "alice@example.com", "pass"),  # through include:
    ("203.0.113.1", "alice@example.com", "fail"),
    ("198.51.100.99", "bob@soft.example", "pass"),
    ("203.0.113.1", "bob@soft.example", "softfail"),
    ("203.0.113.1", "bob@neutral.example", "neutral"),
    ("203.0.113.1", "bob@nothing.example", "none"),  # no record at all
    ("203.0.113.1", "bob@unrelated.example", "none"),  # TXT, but no SPF record
    ("203.0.113.1", "bob@broken.example", "permerror"),
    ("203.0.113.1", "bob@twice.example", "permerror"),  # §4.5: two records
    ("203.0.113.1", "bob@flaky.example", "temperror"),
])
def test_result(ip: str, sender: str, expected: str) -> None:
    result = check_spf(ip, sender, "client.example", RESOLVER)
    assert result.result == expected
    assert result.identity == "mailfrom"
    assert result.domain == sender.rpartition("@")[2]


def test_null_sender_is_checked_as_postmaster_at_helo() -> None:
    # RFC 7208 §2.4: for MAIL FROM:<> the identity is postmaster@<HELO domain>.
    assert check_spf("203.0.113.9", "", "helo.example", RESOLVER).result == "pass"
    result = check_spf("203.0.113.10", "", "helo.example", RESOLVER)
    assert (result.result, result.identity, result.domain) == ("fail", "helo", "helo.example")


def test_void_lookup_limit() -> None:
    # RFC 7208 §4.6.4: more than two lookups that find nothing is a permerror.
    resolver = StaticResolver({("void.example", "TXT"): [
        "v=spf1 a:a.void.example a:b.void.example a:c.void.example -all"]})
    assert check_spf("203.0.113.1", "x@void.example", "h", resolver).result == "permerror"


def test_lookup_limit_of_ten() -> None:
    # RFC 7208 §4.6.4: at most 10 DNS-querying terms.
    includes = " ".join(f"include:i{n}.loop.example" for n in range(11))
    records = {("loop.example", "TXT"): [f"v=spf1 {includes} -all"]}
    records.update({(f"i{n}.loop.example", "TXT"): ["v=spf1 ?all"] for n in range(11)})
    assert check_spf("203.0.113.1", "x@loop.example", "h",
                     StaticResolver(records)).result == "permerror"
