"""RFC 5321 path parsing (mailpost.smtp.address)."""

from __future__ import annotations

import pytest

from mailpost.smtp.address import (
    NULL_PATH,
    AddressError,
    Path,
    parse_domain,
    parse_path,
    quote_local_part,
)


def mail_path(text: str, *, utf8: bool = False) -> Path:
    path, rest = parse_path(text, allow_null=True, allow_postmaster=False, utf8=utf8)
    assert rest == ""
    return path


def rcpt_path(text: str, *, utf8: bool = False) -> Path:
    path, rest = parse_path(text, allow_null=False, allow_postmaster=True, utf8=utf8)
    assert rest == ""
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<user@example.com>", Path("user", "example.com")),
        ("<User.Name+tag@Example.COM>", Path("User.Name+tag", "example.com")),
        ("user@example.com", Path("user", "example.com")),
        ('<"a b"@x.example>', Path("a b", "x.example", quoted=True)),
        ('<"a\\"b\\\\c"@x.example>', Path('a"b\\c', "x.example", quoted=True)),
        ('<"a>b"@x.example>', Path("a>b", "x.example", quoted=True)),
        ("<u@[192.0.2.1]>", Path("u", "[192.0.2.1]")),
        ("<u@[IPv6:2001:DB8::1]>", Path("u", "[IPv6:2001:db8::1]")),
        ("<u@[x-tag:some.thing]>", Path("u", "[x-tag:some.thing]")),
        ("<@A.example,@b.example:u@c.example>", Path("u", "c.example", ("a.example", "b.example"))),
        ("<>", NULL_PATH),
    ],
)
def test_valid_paths(text: str, expected: Path) -> None:
    assert mail_path(text) == expected


def test_parameters_after_the_path_are_returned() -> None:
    path, rest = parse_path(
        "<a@b.example>  SIZE=10 BODY=7BIT", allow_null=True, allow_postmaster=False, utf8=False
    )
    assert path == Path("a", "b.example")
    assert rest == "SIZE=10 BODY=7BIT"
    _, rest = parse_path("a@b.example SIZE=1", allow_null=True, allow_postmaster=False, utf8=False)
    assert rest == "SIZE=1"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<",
        "<a@b.example",
        "<a@b.example>x",
        "<a.@b.example>",
        "<.a@b.example>",
        "<a..b@b.example>",
        "<a b@b.example>",
        "<a@b@c.example>",
        "<@b.example>",
        "<a@>",
        "<@>",
        "<a@b..example>",
        "<a@-b.example>",
        "<a@b-.example>",
        "<a@b.example.>",
        "<a@b_c.example>",
        "<a@[300.1.1.1]>",
        "<a@[1.2.3]>",
        "<a@[IPv6:zz::1]>",
        "<a@[IPv6:fe80::1%eth0]>",
        "<a@[tag:]>",
        "<a@[1.2.3.4>",
        '<"unterminated@b.example>',
        '<"a"b@c.example>',
        '<"a\x01b"@c.example>',
        "<@a.example:>",
        "<@a.example,b.example:u@c.example>",
        "<@[1.2.3.4]:u@c.example>",
        "<postmaster>",
    ],
)
def test_invalid_paths(text: str) -> None:
    with pytest.raises(AddressError):
        mail_path(text)


def test_null_path_only_where_allowed() -> None:
    with pytest.raises(AddressError):
        rcpt_path("<>")


def test_postmaster_without_domain_for_rcpt_only() -> None:
    assert rcpt_path("<POSTMASTER>") == Path("postmaster", "")
    assert rcpt_path("<POSTMASTER>").address == "postmaster"
    assert rcpt_path("<Postmaster@Example.com>").address == "Postmaster@example.com"


def test_length_limits() -> None:
    """RFC 5321 §4.5.3.1: local part 64, domain 255, path 256 octets."""
    assert mail_path(f"<{'a' * 64}@b.example>").local_part == "a" * 64
    with pytest.raises(AddressError):
        mail_path(f"<{'a' * 65}@b.example>")
    label = "d" * 63
    with pytest.raises(AddressError):
        parse_domain(f"{'d' * 64}.example", utf8=False, allow_literal=False)
    long_domain = ".".join([label] * 3) + "." + "e" * 61  # 253 octets
    assert parse_domain(long_domain, utf8=False, allow_literal=False) == long_domain
    with pytest.raises(AddressError):
        parse_domain(long_domain + ".abc", utf8=False, allow_literal=False)
    with pytest.raises(AddressError):
        mail_path(f"<{'a' * 64}@{long_domain}>")  # 64 + 1 + 253 + 2 > 256


def test_utf8_needs_the_flag() -> None:
    with pytest.raises(AddressError):
        mail_path("<jösé@exämple.test>")
    assert mail_path("<jösé@Exämple.test>", utf8=True) == Path("jösé", "exämple.test")
    with pytest.raises(AddressError):
        mail_path("<a\u0085b@x.example>", utf8=True)  # C1 control characters stay forbidden
    assert len("jösé".encode()) == 6


def test_normalised_address_removes_needless_quotes() -> None:
    """RFC 5321 §4.1.2: a quoted form equivalent to an unquoted one is the same mailbox."""
    assert mail_path('<"joe"@X.example>').address == "joe@x.example"
    assert mail_path('<"a b"@x.example>').address == '"a b"@x.example'
    assert mail_path('<"a\\"b"@x.example>').address == '"a\\"b"@x.example'
    assert quote_local_part("") == '""'
    assert mail_path("<>").address == ""


@pytest.mark.parametrize(
    ("text", "trick"),
    [
        ("<rt@remote.example>", False),
        ("<rt%remote.example@[192.0.2.1]>", True),
        ("<remote.example!rt@relay.example>", True),
        ('<"rt@remote.example"@relay.example>', True),
        ("<@relay.example:rt@remote.example>", True),
        ('<"plain"@relay.example>', False),
    ],
)
def test_routing_tricks_are_reported(text: str, trick: bool) -> None:
    """Security catalogue R1: '%', '!', quoted '@' and source routes."""
    assert mail_path(text).routing_trick is trick
