"""The Authentication-Results header field (RFC 8601) and removal of forged copies.

Theory of operation
-------------------
One field records every verdict this server reached, in the order the checks ran::

    Authentication-Results: mail.example.org;
    	spf=pass smtp.mailfrom=alice@example.com;
    	dkim=pass header.d=example.com header.s=mail-rsa header.a=rsa-sha256;
    	dmarc=pass (p=reject) header.from=example.com

The authserv-id is the server's host name (RFC 8601 §2.5). Property values come from the
message and the envelope, so they are reduced to what the grammar allows (§2.2: a token, a
quoted-string or an addr-spec) and comments are stripped of characters that would end them:
a crafted address cannot inject a second result or a new header line.

A mail client may believe the results that carry our authserv-id, so any such field that
arrived with the message is forged: §5 says a border MTA MUST delete it. :func:`strip_forged`
does that on the header block before our own field is prepended.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailpost.mailauth.dkim import DKIMResult
from mailpost.mailauth.dmarc import DMARCResult
from mailpost.mailauth.spf import SPFResult

FIELD_NAME = "Authentication-Results"
_SAFE_VALUE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]+")
_COMMENT_UNSAFE = re.compile(r"[^\x20-\x7e]|[()\\]")
_MAX_COMMENT = 80


@dataclass(frozen=True, slots=True)
class Verdicts:
    spf: SPFResult
    dkim: Sequence[DKIMResult]
    dmarc: DMARCResult
    dkim_note: str = ""  # why DKIM was not checked (a message too large)


def value(text: str) -> str:
    """``text`` as a pvalue: bare when it is token or addr-spec shaped, else quoted."""
    if _SAFE_VALUE.fullmatch(text):
        return text
    cleaned = "".join(c for c in text if " " <= c <= "~" and c not in '"\\')
    return f'"{cleaned}"'


def comment(text: str) -> str:
    cleaned = _COMMENT_UNSAFE.sub("", text).strip()[:_MAX_COMMENT]
    return f" ({cleaned})" if cleaned else ""


def _spf_part(spf: SPFResult) -> str:
    prop = "smtp.mailfrom" if spf.identity == "mailfrom" else "smtp.helo"
    subject = spf.sender if spf.identity == "mailfrom" else spf.domain
    return f"spf={spf.result} {prop}={value(subject)}"


def _dkim_parts(results: Sequence[DKIMResult], note: str) -> list[str]:
    if not results:
        return ["dkim=none" + comment(note)]
    parts = []
    for result in results:
        part = f"dkim={result.result}"
        if result.result != "pass":
            part += comment(result.reason)
        for prop, text in (("header.d", result.domain), ("header.s", result.selector),
                           ("header.a", result.algorithm)):
            if text:
                part += f" {prop}={value(text)}"
        parts.append(part)
    return parts


def _dmarc_part(dmarc: DMARCResult) -> str:
    part = f"dmarc={dmarc.result}"
    if dmarc.result in ("pass", "fail"):
        part += f" (p={dmarc.policy})"
    elif dmarc.reason:
        part += comment(dmarc.reason)
    if dmarc.from_domain:
        part += f" header.from={value(dmarc.from_domain)}"
    return part


def header_field(authserv_id: str, verdicts: Verdicts) -> bytes:
    """The complete field, folded one result per line and ending in CRLF."""
    parts = [_spf_part(verdicts.spf), *_dkim_parts(verdicts.dkim, verdicts.dkim_note),
             _dmarc_part(verdicts.dmarc)]
    return (f"{FIELD_NAME}: {authserv_id};\r\n\t" + ";\r\n\t".join(parts) + "\r\n").encode()


def header_end(data: bytes) -> int:
    """Offset just past the blank line that ends the header block; len(data) if none."""
    match = re.search(rb"\r?\n\r?\n", data)
    return match.end() if match else len(data)


def strip_forged(header_block: bytes, authserv_id: str) -> bytes:
    """``header_block`` without Authentication-Results fields that claim ``authserv_id``."""
    kept: list[bytes] = []
    dropping = False
    for line in header_block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):  # a continuation belongs to the field before it
            if not dropping:
                kept.append(line)
            continue
        dropping = _claims(line, authserv_id)
        if not dropping:
            kept.append(line)
    return b"".join(kept)


def _claims(line: bytes, authserv_id: str) -> bool:
    name, colon, rest = line.partition(b":")
    if not colon or name.strip().lower() != FIELD_NAME.lower().encode():
        return False
    # The authserv-id is the first word, possibly after a comment (RFC 8601 §2.2 CFWS).
    text = re.sub(r"\([^)]*\)", " ", rest.decode("utf-8", "replace"))
    first = text.strip().split(";", 1)[0].split()
    return bool(first) and first[0].rstrip(".").lower() == authserv_id.rstrip(".").lower()
