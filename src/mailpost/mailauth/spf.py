"""SPF (RFC 7208): may this client IP send mail for the MAIL FROM (or HELO) domain?

Theory of operation
-------------------
The evaluation itself — record selection, mechanisms, macros, the limits of ten
DNS-querying terms (§4.6.4) and two void lookups (§4.6.4) — is pyspf's, a long-standing
implementation by the RFC's community. What this module adds:

* every lookup goes through a :class:`~mailpost.mailauth.dns.Resolver` (pyspf's own hook is a
  module global, so :class:`_Query` overrides its per-query ``dns`` method instead);
* the identity: MAIL FROM, or ``postmaster@HELO`` for the null reverse-path (§2.4);
* the result as a small value object, with the domain that was checked so that DMARC can test
  its alignment (RFC 7489 §3.1.2).

The call blocks on DNS; run it in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import spf as pyspf  # type: ignore[import-untyped]

from mailpost.mailauth.dns import DNSTempError, Resolver, normalise_name

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")
# RFC 7208 §4.6.4 asks for an overall bound on the time an evaluation may take (at least 20 s).
LOOKUP_SECONDS = 20


@dataclass(frozen=True, slots=True)
class SPFResult:
    result: str  # one of RESULTS
    domain: str  # the domain whose policy was evaluated
    identity: str  # "mailfrom" or "helo" (RFC 8601 §2.7.2 smtp.mailfrom / smtp.helo)
    sender: str  # the address that was checked
    explanation: str = ""


class _Query(pyspf.query):  # type: ignore[misc]
    """pyspf's evaluator with its DNS lookups answered by a :class:`Resolver`."""

    def __init__(self, resolver: Resolver, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolver = resolver

    def dns(self, name: str, qtype: str, cnames: Any = None, ignore_void: bool = False) -> Any:
        name = normalise_name(str(name))
        if not name or any(not 0 < len(label) < 64 for label in name.split(".")):
            return []  # not a valid DNS name: the same as no records (pyspf's behaviour)
        try:
            values = self.resolver.lookup(name, qtype) if qtype != "SPF" else []
        except DNSTempError as exc:
            raise pyspf.TempError(str(exc)) from exc
        if not values and not ignore_void:
            # RFC 7208 §4.6.4: more than two void lookups is a permerror.
            self.void_lookups += 1
            if self.void_lookups > pyspf.MAX_VOID_LOOKUPS:
                raise pyspf.PermError(f"Void lookup limit of {pyspf.MAX_VOID_LOOKUPS} exceeded")
        return [_library_form(qtype, value) for value in values]


def _library_form(qtype: str, value: str) -> Any:
    """The shape pyspf expects for each record type (what its own dnspython hook returns)."""
    if qtype == "TXT":
        return (value.encode("utf-8"),)
    if qtype == "MX":
        preference, _, exchange = value.partition(" ")
        return (int(preference), exchange)
    return value


def check_spf(client_ip: str, mail_from: str, helo: str, resolver: Resolver) -> SPFResult:
    """Evaluate the SPF policy for the MAIL FROM identity (RFC 7208 §2.4, §4).

    An empty reverse-path is checked as ``postmaster@HELO`` (§2.4). A MAIL FROM without a
    domain is checked against the HELO domain as well.
    """
    identity = "mailfrom"
    sender = mail_from
    if not mail_from or "@" not in mail_from:
        identity = "helo"
        sender = f"postmaster@{helo}"
    domain = normalise_name(sender.rpartition("@")[2])
    try:
        query = _Query(resolver, i=client_ip, s=sender, h=helo, timeout=LOOKUP_SECONDS,
                       querytime=LOOKUP_SECONDS)
        result, _code, explanation = query.check()
    except (ValueError, UnicodeError) as exc:  # a malformed IP or domain
        return SPFResult("permerror", domain, identity, sender, str(exc))
    except Exception as exc:  # noqa: BLE001 - hostile input must cost a verdict, not the mail
        return SPFResult("permerror", domain, identity, sender, type(exc).__name__)
    result = str(result).lower()
    if result not in RESULTS:  # pyspf's "ambiguous" and the like: be conservative
        result = "permerror"
    return SPFResult(result, domain, identity, sender, str(explanation or ""))
