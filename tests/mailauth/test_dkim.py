"""DKIM keys, signing and verification against a table-driven resolver (no network)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mailpost.mailauth import dkim
from mailpost.mailauth.dns import StaticResolver

MESSAGE = (b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\nSubject: hello\r\n"
           b"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\n"
           b"Hello Bob.\r\n")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str]]]:
    data_dir = tmp_path_factory.mktemp("var")
    return data_dir, dkim.keygen("Example.COM", "mail", data_dir)


def published(records: list[tuple[str, str]], only: str | None = None) -> StaticResolver:
    return StaticResolver({(name, "TXT"): [value] for name, value in records
                           if only is None or f"k={only};" in value})


def test_keygen_makes_private_rsa_and_ed25519_keys(
        keys: tuple[Path, list[tuple[str, str]]]) -> None:
    data_dir, records = keys
    names = [name for name, _ in records]
    assert names == ["mail-rsa._domainkey.example.com", "mail-ed25519._domainkey.example.com"]
    assert records[0][1].startswith("v=DKIM1; k=rsa; p=MIIBIjAN")  # 2048-bit SPKI prefix
    assert records[1][1].startswith("v=DKIM1; k=ed25519; p=")
    for selector in ("mail-rsa", "mail-ed25519"):
        mode = (data_dir / "dkim" / "example.com" / f"{selector}.key").stat().st_mode
        assert stat.S_IMODE(mode) == 0o600
    assert [key.algorithm for key in dkim.load_keys(data_dir, "example.com")] == [
        "ed25519", "rsa"]


def test_keygen_refuses_to_replace_a_key(keys: tuple[Path, list[tuple[str, str]]]) -> None:
    with pytest.raises(dkim.DKIMKeyError, match="already exists"):
        dkim.keygen("example.com", "mail", keys[0])


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "-bad.example", "x" * 64 + ".com"])
def test_names_that_are_not_dns_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(dkim.DKIMKeyError):
        dkim.keygen(name, "mail", tmp_path)
    with pytest.raises(dkim.DKIMKeyError):
        dkim.keygen("example.org", name, tmp_path)


def test_sign_then_verify_passes_with_both_algorithms(
        keys: tuple[Path, list[tuple[str, str]]]) -> None:
    data_dir, records = keys
    signed = dkim.sign(MESSAGE, "example.com", data_dir)
    assert signed.endswith(MESSAGE)
    assert signed.count(b"DKIM-Signature:") == 2
    results = dkim.verify(signed, published(records))
    assert {(r.result, r.algorithm, r.domain) for r in results} == {
        ("pass", "rsa-sha256", "example.com"), ("pass", "ed25519-sha256", "example.com")}


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_each_algorithm_verifies_on_its_own(keys: tuple[Path, list[tuple[str, str]]],
                                            algorithm: str) -> None:
    data_dir, records = keys
    results = dkim.verify(dkim.sign(MESSAGE, "example.com", data_dir),
                          published(records, only=algorithm))
    by_selector = {r.selector: r.result for r in results}
    other = "ed25519" if algorithm == "rsa" else "rsa"
    assert by_selector == {f"mail-{algorithm}": "pass", f"mail-{other}": "permerror"}


def test_changed_body_or_header_fails(keys: tuple[Path, list[tuple[str, str]]]) -> None:
    data_dir, records = keys
    signed = dkim.sign(MESSAGE, "example.com", data_dir)
    for tampered in (signed.replace(b"Hello Bob.", b"Hello Eve."),
                     signed.replace(b"Subject: hello", b"Subject: invoice")):
        assert [r.result for r in dkim.verify(tampered, published(records))] == ["fail", "fail"]


def test_relaxed_canonicalization_survives_whitespace_changes(
        keys: tuple[Path, list[tuple[str, str]]]) -> None:
    data_dir, records = keys
    signed = dkim.sign(MESSAGE, "example.com", data_dir)
    rewritten = signed.replace(b"Subject: hello", b"Subject:   hello").replace(
        b"Hello Bob.\r\n", b"Hello Bob.  \r\n\r\n")
    assert [r.result for r in dkim.verify(rewritten, published(records))] == ["pass", "pass"]


def test_dns_failure_is_a_temporary_error(keys: tuple[Path, list[tuple[str, str]]]) -> None:
    data_dir, _ = keys
    resolver = StaticResolver({("mail-rsa._domainkey.example.com", "TXT"): None,
                               ("mail-ed25519._domainkey.example.com", "TXT"): None})
    results = dkim.verify(dkim.sign(MESSAGE, "example.com", data_dir), resolver)
    assert [r.result for r in results] == ["temperror", "temperror"]


def test_domain_without_keys_is_not_signed(tmp_path: Path) -> None:
    assert dkim.sign(MESSAGE, "example.org", tmp_path) == MESSAGE
    assert dkim.sign(MESSAGE, "../../etc", tmp_path) == MESSAGE


def test_unsigned_message_has_no_results() -> None:
    assert dkim.verify(MESSAGE, StaticResolver()) == []


def test_signature_count_is_bounded(keys: tuple[Path, list[tuple[str, str]]]) -> None:
    data_dir, records = keys
    signed = dkim.sign(MESSAGE, "example.com", data_dir)
    signatures = signed[:-len(MESSAGE)]
    many = signatures * 6 + MESSAGE  # 12 signatures
    resolver = published(records)
    assert len(dkim.verify(many, resolver)) == dkim.MAX_SIGNATURES
    assert len(resolver.queries) == dkim.MAX_SIGNATURES


class _BrokenResolver:
    def lookup(self, name: str, rdtype: str) -> list[str]:
        raise RuntimeError("resolver bug")


def test_an_unexpected_error_costs_a_verdict_not_the_message(
        keys: tuple[Path, list[tuple[str, str]]]) -> None:
    signed = dkim.sign(MESSAGE, "example.com", keys[0])
    results = dkim.verify(signed, _BrokenResolver())
    assert [(r.result, r.reason) for r in results] == [
        ("permerror", "unverifiable: RuntimeError")] * 2
