"""Name validation and size parsing in mailpost.admin.ops (no store needed)."""

from __future__ import annotations

import pytest

from mailpost.admin.ops import (
    AdminError,
    format_size,
    format_usage,
    parse_size,
    validate_address,
    validate_alias,
    validate_domain,
    validate_password,
)

# --- domains ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("example.org", "example.org"),
    ("Mail.Example.ORG", "mail.example.org"),
    (" example.org ", "example.org"),
    ("a-b.c0.example", "a-b.c0.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("1.example.org", "1.example.org"),
    (".".join(["a" * 63] * 3) + ".org", ".".join(["a" * 63] * 3) + ".org"),
])
def test_valid_domains(text: str, expected: str) -> None:
    assert validate_domain(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"),
    ("localhost", "at least one dot"),
    ("example..org", "1-63"),
    (".example.org", "1-63"),
    ("example.org.", "1-63"),
    ("-example.org", "hyphen"),
    ("example-.org", "hyphen"),
    ("exa_mple.org", "letters, digits"),
    ("exa mple.org", "letters, digits"),
    ("a" * 64 + ".org", "1-63"),
    (".".join(["a" * 63] * 4) + ".org", "253"),
    ("bücher.example", "xn--"),
    ("192.0.2.1", "all digits"),
    ("[192.0.2.1]", "letters, digits"),
    ("user@example.org", "letters, digits"),
])
def test_invalid_domains(text: str, reason: str) -> None:
    with pytest.raises(AdminError, match="domain") as info:
        validate_domain(text)
    assert reason in str(info.value)


# --- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("alice@example.org", "alice@example.org"),
    ("Alice.Smith@Example.ORG", "alice.smith@example.org"),
    ("a+tag@example.org", "a+tag@example.org"),
    ("!#$%&'*+-/=?^_`{|}~@example.org", "!#$%&'*+-/=?^_`{|}~@example.org"),
    ('"john"@example.org', "john@example.org"),
    ('"John.Doe"@example.org', "john.doe@example.org"),
    ('"john doe"@example.org', '"john doe"@example.org'),
    ('"a@b"@example.org', '"a@b"@example.org'),
    ('"a\\"b"@example.org', '"a\\"b"@example.org'),
    ('"a..b"@example.org', '"a..b"@example.org'),
    ("x" * 64 + "@example.org", "x" * 64 + "@example.org"),
])
def test_valid_addresses(text: str, expected: str) -> None:
    assert validate_address(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("alice", "local-part@domain"),
    ("alice@", "nothing after the @"),
    ("@example.org", "nothing before the @"),
    ("a@b@example.org", "the part before @"),
    ("a b@example.org", "the part before @"),
    (".alice@example.org", "the part before @"),
    ("alice.@example.org", "the part before @"),
    ("al..ice@example.org", "the part before @"),
    ("al(ice)@example.org", "the part before @"),
    ('""@example.org', "the part before @"),
    ('"a"b"@example.org', "the part before @"),
    ("\"tab\there\"@example.org", "the part before @"),
    ("x" * 65 + "@example.org", "longer than 64"),
    ("álice@example.org", "the part before @"),
    ("alice@localhost", "at least one dot"),
    ("alice@exa_mple.org", "domain"),
])
def test_invalid_addresses(text: str, reason: str) -> None:
    with pytest.raises(AdminError, match="invalid") as info:
        validate_address(text)
    assert reason in str(info.value)


def test_address_longer_than_254_octets() -> None:
    domain = ".".join(["d" * 63] * 3) + ".org"  # 195 octets
    local = "x" * 59  # 59 + 1 + 195 = 255
    with pytest.raises(AdminError, match="longer than 254"):
        validate_address(f"{local}@{domain}")
    assert validate_address(f"{local[1:]}@{domain}") == f"{local[1:]}@{domain}"


def test_admin_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_address("nope")


@pytest.mark.parametrize(("text", "expected"), [
    ("@Example.org", "@example.org"),
    ("Postmaster@example.org", "postmaster@example.org"),
])
def test_alias_accepts_catch_all(text: str, expected: str) -> None:
    assert validate_alias(text) == expected


@pytest.mark.parametrize("text", ["@", "@localhost", "@@example.org"])
def test_alias_rejects_bad_catch_all(text: str) -> None:
    with pytest.raises(AdminError):
        validate_alias(text)


# --- passwords -------------------------------------------------------------------------------


def test_password_accepted_as_given() -> None:
    assert validate_password(" spaces and ünïcode ") == " spaces and ünïcode "


@pytest.mark.parametrize(("password", "reason"), [
    ("", "empty password"),
    ("a\x00b", "control characters"),
    ("line\nbreak", "control characters"),
    ("del\x7f", "control characters"),
    ("x" * 1025, "longer than 1024"),
])
def test_password_rejected(password: str, reason: str) -> None:
    with pytest.raises(AdminError, match=reason):
        validate_password(password)


# --- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("1000", 1000),
    ("1", 1),
    ("1K", 1024),
    ("500M", 500 * 1024**2),
    ("500m", 500 * 1024**2),
    ("2G", 2 * 1024**3),
    ("3T", 3 * 1024**4),
    ("10KB", 10 * 1024),
    ("10KiB", 10 * 1024),
    ("10 M", 10 * 1024**2),
    ("42B", 42),
    (" 7G ", 7 * 1024**3),
    ("0", None),
    ("0M", None),
    ("none", None),
    ("None", None),
    ("unlimited", None),
])
def test_parse_size(text: str, expected: int | None) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "-1", "1.5G", "5P", "M", "ten", "5 G B", "1e6",
                                  "\u0661\u0662"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(AdminError, match="invalid size"):
        parse_size(text)


def test_parse_size_rejects_absurdly_large() -> None:
    with pytest.raises(AdminError, match="too large"):
        parse_size("99999999999T")


@pytest.mark.parametrize("size", [None, 1, 1000, 1024, 1536, 500 * 1024**2, 2 * 1024**3,
                                  5 * 1024**4, 1024**4 + 1])
def test_format_size_round_trips(size: int | None) -> None:
    assert parse_size(format_size(size)) == size


def test_format_size_spelling() -> None:
    assert format_size(None) == "unlimited"
    assert format_size(500 * 1024**2) == "500M"
    assert format_size(1536) == "1536"
    assert format_size(1024**3 * 3) == "3G"


@pytest.mark.parametrize(("size", "expected"), [
    (0, "0"), (1023, "1023"), (1536, "1.5K"), (23 * 1024**2 + 400 * 1024, "23.4M"),
    (3 * 1024**3, "3.0G"),
])
def test_format_usage(size: int, expected: str) -> None:
    assert format_usage(size) == expected
