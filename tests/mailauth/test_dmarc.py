"""DMARC policy discovery, alignment and the resulting verdict (RFC 7489)."""

from __future__ import annotations

import pytest

from mailpost.mailauth import dmarc
from mailpost.mailauth.dkim import DKIMResult
from mailpost.mailauth.dns import StaticResolver
from mailpost.mailauth.spf import SPFResult

RESOLVER = StaticResolver({
    ("_dmarc.example.com", "TXT"): ["v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@x"],
    ("_dmarc.strict.example", "TXT"): ["v=DMARC1; p=quarantine; adkim=s; aspf=s"],
    ("_dmarc.relaxed.co.uk", "TXT"): ["v=DMARC1; p=reject"],
    ("_dmarc.sub.example.com", "TXT"): ["v=DMARC1; p=none"],
    ("_dmarc.flaky.example", "TXT"): None,
    ("_dmarc.twice.example", "TXT"): ["v=DMARC1; p=reject", "v=DMARC1; p=none"],
    ("_dmarc.half.example", "TXT"): ["v=DMARC1; p=reject; pct=50"],
})
NO_SPF = SPFResult("fail", "attacker.example", "mailfrom", "x@attacker.example")


def spf_pass(domain: str) -> SPFResult:
    return SPFResult("pass", domain, "mailfrom", f"bounce@{domain}")


def dkim_pass(domain: str) -> list[DKIMResult]:
    return [DKIMResult("pass", domain, "sel", "rsa-sha256")]


@pytest.mark.parametrize(("name", "organization"), [
    ("example.com", "example.com"),
    ("a.b.example.com", "example.com"),
    ("mail.example.co.uk", "example.co.uk"),
    ("mail.example.test", "example.test"),  # unlisted suffix: the default rule "*"
    ("co.uk", "co.uk"),
])
def test_organizational_domain(name: str, organization: str) -> None:
    assert dmarc.organizational_domain(name) == organization


def test_relaxed_alignment_accepts_a_subdomain_and_strict_does_not() -> None:
    assert dmarc.aligned("mail.example.com", "example.com", "r")
    assert dmarc.aligned("example.com", "news.example.com", "r")
    assert not dmarc.aligned("mail.example.com", "example.com", "s")
    assert dmarc.aligned("Example.COM.", "example.com", "s")
    assert not dmarc.aligned("example.co.uk", "other.co.uk", "r")  # a public suffix is no org


def test_pass_through_aligned_dkim_or_aligned_spf() -> None:
    by_dkim = dmarc.evaluate(["example.com"], NO_SPF, dkim_pass("mail.example.com"), RESOLVER)
    assert (by_dkim.result, by_dkim.policy) == ("pass", "reject")
    by_spf = dmarc.evaluate(["example.com"], spf_pass("bounces.example.com"), [], RESOLVER)
    assert by_spf.result == "pass"


def test_unaligned_authentication_fails_with_the_published_policy() -> None:
    result = dmarc.evaluate(["example.com"], spf_pass("attacker.example"),
                            dkim_pass("attacker.example"), RESOLVER)
    assert (result.result, result.policy, result.from_domain) == ("fail", "reject",
                                                                  "example.com")
    assert result.wants_reject and result.wants_quarantine


def test_strict_alignment() -> None:
    sub = dmarc.evaluate(["strict.example"], NO_SPF, dkim_pass("mail.strict.example"), RESOLVER)
    assert (sub.result, sub.policy) == ("fail", "quarantine")
    assert not sub.wants_reject and sub.wants_quarantine
    exact = dmarc.evaluate(["strict.example"], NO_SPF, dkim_pass("strict.example"), RESOLVER)
    assert exact.result == "pass"


def test_policy_found_at_the_organizational_domain_uses_sp() -> None:
    # _dmarc.news.example.com does not exist: fall back to example.com, whose sp= applies.
    result = dmarc.evaluate(["news.example.com"], NO_SPF, [], RESOLVER)
    assert (result.result, result.policy) == ("fail", "quarantine")
    assert ("_dmarc.example.com", "TXT") in RESOLVER.queries


def test_own_record_of_a_subdomain_wins() -> None:
    result = dmarc.evaluate(["sub.example.com"], NO_SPF, [], RESOLVER)
    assert (result.result, result.policy) == ("fail", "none")
    assert not result.wants_quarantine


def test_public_suffix_below_the_org_domain() -> None:
    result = dmarc.evaluate(["mail.relaxed.co.uk"], NO_SPF, [], RESOLVER)
    assert (result.result, result.policy) == ("fail", "reject")  # sp defaults to p


def test_no_policy_dns_trouble_and_bad_records() -> None:
    assert dmarc.evaluate(["nothing.example"], NO_SPF, [], RESOLVER).result == "none"
    assert dmarc.evaluate(["flaky.example"], NO_SPF, [], RESOLVER).result == "temperror"
    assert dmarc.evaluate(["twice.example"], NO_SPF, [], RESOLVER).result == "none"
    assert dmarc.evaluate([], NO_SPF, [], RESOLVER).result == "permerror"


def test_pct_sampling_softens_the_policy_outside_the_sample() -> None:
    inside = dmarc.evaluate(["half.example"], NO_SPF, [], RESOLVER, sample=lambda: 0.1)
    outside = dmarc.evaluate(["half.example"], NO_SPF, [], RESOLVER, sample=lambda: 0.9)
    assert (inside.policy, outside.policy) == ("reject", "quarantine")


def test_several_author_domains_take_the_strictest_failure() -> None:
    result = dmarc.evaluate(["sub.example.com", "example.com"], NO_SPF, [], RESOLVER)
    assert (result.result, result.policy, result.from_domain) == ("fail", "reject",
                                                                  "example.com")


@pytest.mark.parametrize(("text", "expected"), [
    ("v=DMARC1; p=reject", dmarc.DMARCRecord("reject", "reject")),
    ("v=DMARC1;p=quarantine;sp=none;adkim=s;aspf=s;pct=20",
     dmarc.DMARCRecord("quarantine", "none", "s", "s", 20)),
    ("v=DMARC1; p=bogus; rua=mailto:a@b", dmarc.DMARCRecord("none", "none")),
    ("v=DMARC1; p=bogus", None),
    ("v=spf1 -all", None),
    ("p=reject; v=DMARC1", None),  # v= must come first (§6.4)
])
def test_parse_record(text: str, expected: dmarc.DMARCRecord | None) -> None:
    assert dmarc.parse_record(text) == expected


def test_author_domains_from_the_header_block() -> None:
    block = (b"Received: from x\r\nFrom: \"Alice\" <alice@Example.COM>,\r\n"
             b" bob@other.example\r\nSubject: hi\r\n\r\n")
    assert dmarc.author_domains(block) == ["example.com", "other.example"]
    assert dmarc.author_domains(b"Subject: no author\r\n\r\n") == []
