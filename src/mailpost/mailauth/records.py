"""The DNS records an operator publishes for a mail domain, as zone-file lines.

Theory of operation
-------------------
:func:`dns_records` lists, for one domain served by this host:

* ``MX`` pointing at the configured host name (RFC 5321 §5.1);
* SPF (RFC 7208): the domain authorises its MX hosts (``mx``) and nothing else (``-all``), and
  the host name gets its own record for the HELO identity (§2.3);
* DKIM (RFC 6376 §3.6.2): one TXT record per key under ``data_dir/dkim/<domain>``;
* DMARC (RFC 7489 §6.3): ``p=quarantine`` with aggregate reports to postmaster;
* MTA-STS (RFC 8461 §3.1) and TLS reporting (RFC 8460 §3), with the policy host as a CNAME;
* service discovery: SRV records of RFC 6186 and RFC 8314 §5.1 for IMAPS, POP3S and
  submission (implicit TLS and STARTTLS), and the autoconfig/autodiscover names mail
  clients probe.

Ports are the standard public ones, not the listener addresses: a server usually listens
behind a port mapping, and clients only ever look for the standard ports.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mailpost.mailauth import dkim

TTL = 3600
_TXT_CHUNK = 255  # RFC 1035 §3.3: one character-string holds at most 255 octets


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    rdtype: str
    value: str  # the presentation form (TXT already quoted)

    def zone_line(self) -> str:
        return f"{self.name}.\t{TTL}\tIN\t{self.rdtype}\t{self.value}"


def txt(text: str) -> str:
    """A TXT value in presentation form, split into 255-octet strings (RFC 7208 §3.3)."""
    chunks = [text[i:i + _TXT_CHUNK] for i in range(0, len(text), _TXT_CHUNK)] or [""]
    return " ".join(f'"{chunk}"' for chunk in chunks)


def dkim_records(domain: str, data_dir: Path) -> list[Record]:
    return [Record(dkim.record_name(key.selector, domain), "TXT", txt(key.txt_record()))
            for key in dkim.load_keys(data_dir, domain)]


def mta_sts_policy(hostname: str) -> str:
    """The policy file to serve at https://mta-sts.<domain>/.well-known/mta-sts.txt."""
    return f"version: STSv1\nmode: enforce\nmx: {hostname}\nmax_age: 604800\n"


def mta_sts_id(hostname: str) -> str:
    """RFC 8461 §3.1 id: derived from the policy, so it changes exactly when the policy does."""
    return hashlib.sha256(mta_sts_policy(hostname).encode()).hexdigest()[:20]


def dns_records(domain: str, hostname: str, data_dir: Path) -> list[Record]:
    """Every record for ``domain`` served by ``hostname``."""
    domain = dkim.checked_name(domain, "domain")
    host = hostname.rstrip(".")
    policy_id = mta_sts_id(host)
    records = [
        Record(domain, "MX", f"10 {host}."),
        Record(domain, "TXT", txt("v=spf1 mx -all")),
        Record(host, "TXT", txt("v=spf1 a -all")),
        *dkim_records(domain, data_dir),
        Record(f"_dmarc.{domain}", "TXT",
               txt(f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}")),
        Record(f"_mta-sts.{domain}", "TXT", txt(f"v=STSv1; id={policy_id}")),
        Record(f"mta-sts.{domain}", "CNAME", f"{host}."),
        Record(f"_smtp._tls.{domain}", "TXT",
               txt(f"v=TLSRPTv1; rua=mailto:postmaster@{domain}")),
        Record(f"_submissions._tcp.{domain}", "SRV", f"0 1 465 {host}."),
        Record(f"_submission._tcp.{domain}", "SRV", f"10 1 587 {host}."),
        Record(f"_imaps._tcp.{domain}", "SRV", f"0 1 993 {host}."),
        Record(f"_imap._tcp.{domain}", "SRV", "0 0 0 ."),  # RFC 8314 §5.1: prefer TLS
        Record(f"_pop3s._tcp.{domain}", "SRV", f"10 1 995 {host}."),
        Record(f"_pop3._tcp.{domain}", "SRV", "0 0 0 ."),
        Record(f"autoconfig.{domain}", "CNAME", f"{host}."),
        Record(f"autodiscover.{domain}", "CNAME", f"{host}."),
        Record(f"_autodiscover._tcp.{domain}", "SRV", f"0 1 443 {host}."),
    ]
    return records
