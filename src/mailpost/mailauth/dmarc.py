"""DMARC (RFC 7489): does an authenticated domain align with the visible From domain?

Theory of operation
-------------------
1. The Author Domain is the domain of the RFC 5322 From address (§6.6.1). A message with
   several From domains is checked once per domain and the strictest failing policy wins, as
   §6.6.1 describes; a message without any is a ``permerror`` and gets no DMARC treatment.
2. The policy record is the single ``v=DMARC1`` TXT record at ``_dmarc.<author domain>``, else
   at ``_dmarc.<organizational domain>`` (§6.6.3). The Organizational Domain (§3.2) comes from
   the Public Suffix List bundled with the ``publicsuffixlist`` package, so no lookup leaves the
   machine for it; a name under an unlisted suffix falls back to the list's default rule ``*``
   (so ``mail.example.test`` belongs to ``example.test``).
3. DMARC passes when SPF passed for an aligned MAIL FROM domain or a DKIM signature passed
   for an aligned ``d=`` domain (§3.1, §4.2). Relaxed alignment compares Organizational
   Domains, strict alignment the exact names (§3.1.1, §3.1.2).
4. On failure the requested policy is ``p`` (``sp`` for a subdomain, §6.3), softened one step
   for messages outside the ``pct`` sample (§6.6.4). What to do with it is the caller's choice.

DNS trouble during policy discovery is a ``temperror`` and the message is delivered (the
"fail open" option of §6.6.3): refusing mail because of someone else's DNS outage would lose
more legitimate mail than it stops forged mail.
"""

from __future__ import annotations

import email.utils
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

from publicsuffixlist import PublicSuffixList

from mailpost.mailauth.dkim import DKIMResult
from mailpost.mailauth.dns import DNSTempError, Resolver, normalise_name
from mailpost.mailauth.spf import SPFResult

POLICIES = ("none", "quarantine", "reject")
_TAG = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*([^;]*?)\s*(?:;|$)")


@dataclass(frozen=True, slots=True)
class DMARCRecord:
    policy: str  # p=
    subdomain_policy: str  # sp= (defaults to p=, §6.3)
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100


@dataclass(frozen=True, slots=True)
class DMARCResult:
    result: str  # "pass", "fail", "none", "temperror", "permerror" (RFC 8601 §2.7.1)
    from_domain: str
    policy: str = "none"  # the policy requested for a failing message, after sampling
    reason: str = ""

    @property
    def wants_reject(self) -> bool:
        return self.result == "fail" and self.policy == "reject"

    @property
    def wants_quarantine(self) -> bool:
        return self.result == "fail" and self.policy in ("quarantine", "reject")


@cache
def _suffix_list() -> PublicSuffixList:
    return PublicSuffixList()  # parses the bundled list once (about 50 ms)


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label; the name itself when it is a suffix."""
    name = normalise_name(domain)
    return str(_suffix_list().privatesuffix(name) or name)


def aligned(authenticated: str, author: str, mode: str) -> bool:
    """RFC 7489 §3.1: strict means identical names, relaxed means the same org domain."""
    authenticated, author = normalise_name(authenticated), normalise_name(author)
    if not authenticated or not author:
        return False
    if mode == "s":
        return authenticated == author
    return organizational_domain(authenticated) == organizational_domain(author)


def parse_record(text: str) -> DMARCRecord | None:
    """The policy of one TXT record; None when it is not a usable DMARC record (§6.3)."""
    tags: dict[str, str] = {}
    for match in _TAG.finditer(text):
        tags.setdefault(match.group(1).lower(), match.group(2))
    if tags.get("v") != "DMARC1" or not text.lstrip().startswith("v"):
        return None
    policy = tags.get("p", "").lower()
    subdomain = tags.get("sp", policy).lower()
    if policy not in POLICIES or subdomain not in POLICIES:
        # §6.6.3 step 6: with a reporting address act as p=none; otherwise ignore the record.
        if "rua" not in tags:
            return None
        policy = subdomain = "none"
    return DMARCRecord(policy, subdomain, _mode(tags.get("adkim")), _mode(tags.get("aspf")),
                       _percent(tags.get("pct")))


def _mode(value: str | None) -> str:
    return "s" if value is not None and value.strip().lower() == "s" else "r"


def _percent(value: str | None) -> int:
    if value is None or not value.strip().isdigit():
        return 100
    return min(100, int(value.strip()))


def discover_policy(author: str, resolver: Resolver) -> tuple[DMARCRecord, bool] | None:
    """The applicable record and whether it came from the org domain (§6.6.3); raises
    DNSTempError when a lookup fails."""
    author = normalise_name(author)
    record = _record_at(author, resolver)
    if record is not None:
        return record, False
    organization = organizational_domain(author)
    if organization != author:
        record = _record_at(organization, resolver)
        if record is not None:
            return record, True
    return None


def _record_at(domain: str, resolver: Resolver) -> DMARCRecord | None:
    texts = [text for text in resolver.lookup(f"_dmarc.{domain}", "TXT")
             if text.lstrip().startswith("v=DMARC1")]
    if len(texts) != 1:  # §6.6.3 step 5: none, or several, means no DMARC processing
        return None
    return parse_record(texts[0])


def evaluate(from_domains: Sequence[str], spf: SPFResult | None, dkim: Sequence[DKIMResult],
             resolver: Resolver, sample: Callable[[], float] = random.random) -> DMARCResult:
    """The DMARC verdict for a message whose From field names ``from_domains``."""
    if not from_domains:
        return DMARCResult("permerror", "", reason="no single usable From address")
    results = [_evaluate_one(domain, spf, dkim, resolver, sample) for domain in from_domains]
    failing = [result for result in results if result.result == "fail"]
    if failing:
        return max(failing, key=lambda result: POLICIES.index(result.policy))
    for wanted in ("temperror", "pass"):
        for result in results:
            if result.result == wanted:
                return result
    return results[0]


def _evaluate_one(author: str, spf: SPFResult | None, dkim: Sequence[DKIMResult],
                  resolver: Resolver, sample: Callable[[], float]) -> DMARCResult:
    try:
        found = discover_policy(author, resolver)
    except DNSTempError as exc:
        return DMARCResult("temperror", author, reason=str(exc))
    if found is None:
        return DMARCResult("none", author, reason="no policy published")
    record, inherited = found
    spf_ok = (spf is not None and spf.result == "pass" and spf.identity == "mailfrom"
              and aligned(spf.domain, author, record.aspf))
    dkim_ok = any(result.result == "pass" and aligned(result.domain, author, record.adkim)
                  for result in dkim)
    if spf_ok or dkim_ok:
        return DMARCResult("pass", author, record.policy)
    policy = record.subdomain_policy if inherited else record.policy
    if record.pct < 100 and sample() * 100 >= record.pct:
        # §6.6.4: outside the sample, reject becomes quarantine and quarantine becomes none.
        policy = POLICIES[max(0, POLICIES.index(policy) - 1)]
    return DMARCResult("fail", author, policy, "neither SPF nor DKIM aligned")


def author_domains(header_block: bytes) -> list[str]:
    """The domains of the addresses in every From field of ``header_block`` (§6.6.1)."""
    values = [value for name, value in _header_fields(header_block) if name == "from"]
    domains: list[str] = []
    for _, address in email.utils.getaddresses(values):
        domain = normalise_name(address.rpartition("@")[2]) if "@" in address else ""
        if domain and domain not in domains:
            domains.append(domain)
    return domains


def _header_fields(header_block: bytes) -> list[tuple[str, str]]:
    """(lower-case name, unfolded value) for each field of a header block."""
    text = header_block.decode("utf-8", "replace")
    fields: list[tuple[str, str]] = []
    for line in re.split(r"\r?\n", text):
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip().lower(), value.strip()))
    return fields
