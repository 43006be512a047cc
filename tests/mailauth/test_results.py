"""The Authentication-Results field (RFC 8601) and the removal of forged copies."""

from __future__ import annotations

from mailpost.mailauth import results
from mailpost.mailauth.dkim import DKIMResult
from mailpost.mailauth.dmarc import DMARCResult
from mailpost.mailauth.spf import SPFResult

SPF = SPFResult("pass", "example.com", "mailfrom", "alice@example.com")
DKIM = [DKIMResult("pass", "example.com", "mail-rsa", "rsa-sha256"),
        DKIMResult("fail", "example.com", "mail-ed25519", "ed25519-sha256", "body hash (x)")]
DMARC = DMARCResult("pass", "example.com", "reject")


def test_field_lists_every_result() -> None:
    field = results.header_field("mx.example.org", results.Verdicts(SPF, DKIM, DMARC))
    assert field == (
        b"Authentication-Results: mx.example.org;\r\n"
        b"\tspf=pass smtp.mailfrom=alice@example.com;\r\n"
        b"\tdkim=pass header.d=example.com header.s=mail-rsa header.a=rsa-sha256;\r\n"
        b"\tdkim=fail (body hash x) header.d=example.com header.s=mail-ed25519"
        b" header.a=ed25519-sha256;\r\n"
        b"\tdmarc=pass (p=reject) header.from=example.com\r\n")


def test_no_signature_and_helo_identity() -> None:
    spf = SPFResult("none", "client.example", "helo", "postmaster@client.example")
    dmarc = DMARCResult("none", "example.com", reason="no policy published")
    field = results.header_field("mx", results.Verdicts(spf, [], dmarc, "too large"))
    assert b"spf=none smtp.helo=client.example;" in field
    assert b"dkim=none (too large);" in field
    assert b"dmarc=none (no policy published) header.from=example.com\r\n" in field


def test_hostile_values_cannot_inject_results_or_lines() -> None:
    spf = SPFResult("fail", "x", "mailfrom", 'a;dkim=pass"\r\nX-Evil: 1 @x')
    dkim = [DKIMResult("fail", "x", "s", "a", "reason) dkim=pass (\r\nX: y")]
    field = results.header_field("mx", results.Verdicts(spf, dkim, DMARC))
    assert field.count(b"\r\n") == 4  # the three folds and the end: no injected line
    assert b"smtp.mailfrom=\"a;dkim=passX-Evil: 1 @x\";" in field
    assert b"(reason dkim=pass X: y)" in field


def test_strip_forged_removes_only_our_authserv_id() -> None:
    block = (b"Received: from a\r\n"
             b"Authentication-Results: MX.example.org; dkim=pass\r\n\theader.d=bank.example\r\n"
             b"Authentication-Results: (comment) mx.example.org.; spf=pass\r\n"
             b"Authentication-Results: other.example; spf=fail\r\n"
             b"Subject: hi\r\n\r\nAuthentication-Results: mx.example.org; in the body\r\n")
    end = results.header_end(block)
    cleaned = results.strip_forged(block[:end], "mx.example.org") + block[end:]
    assert cleaned == (b"Received: from a\r\n"
                       b"Authentication-Results: other.example; spf=fail\r\n"
                       b"Subject: hi\r\n\r\nAuthentication-Results: mx.example.org; in the body\r\n")


def test_header_end() -> None:
    assert results.header_end(b"A: b\r\n\r\nbody") == 8
    assert results.header_end(b"A: b\n\nbody") == 6
    assert results.header_end(b"A: b\r\n") == 6
