"""ENVELOPE rules of RFC 9051 §7.5.2 and the address parser behind them."""

from __future__ import annotations

import pytest

from mailpost.mime import envelope, parse_message
from mailpost.mime.address import GROUP_END, Address, parse_address_list
from tests.mime.imapsyntax import read_envelope
from tests.mime.samples import crlf


def env(header: str, **options: bool) -> str:
    data = crlf(header + "\n\nbody\n")
    rendered = envelope(parse_message(data), **options)
    read_envelope(rendered, utf8=options.get("utf8", False))
    return rendered.decode("utf-8")


def test_absent_fields_are_nil() -> None:
    assert env("X-Nothing: here") == "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_present_but_empty_strings_are_empty_and_empty_addresses_nil() -> None:
    assert env("Date:\nSubject: \nFrom:\nTo:  \nIn-Reply-To:\nMessage-ID:") == (
        '("" "" NIL NIL NIL NIL NIL NIL "" "")')


def test_sender_and_reply_to_default_to_from() -> None:
    rendered = env("From: a@example.org\nSender:\nReply-To: (just a comment)")
    assert rendered == ('(NIL NIL ((NIL NIL "a" "example.org")) ((NIL NIL "a" "example.org")) '
                        '((NIL NIL "a" "example.org")) NIL NIL NIL NIL NIL)')
    explicit = env("From: a@example.org\nSender: s@example.org\nReply-To: r@example.org")
    assert '((NIL NIL "s" "example.org")) ((NIL NIL "r" "example.org"))' in explicit


def test_values_are_unfolded_not_decoded() -> None:
    rendered = env("Subject: =?utf-8?q?caf=C3=A9?=\n =?utf-8?q?_au_lait?=\n\tend")
    assert rendered.startswith('(NIL "=?utf-8?q?caf=C3=A9?= =?utf-8?q?_au_lait?=\tend" ')


def test_first_occurrence_wins() -> None:
    assert env("Subject: first\nSubject: second").startswith('(NIL "first" ')


def test_groups_and_routes() -> None:
    rendered = env("To: A Group:Ed Jones <c@a.test>,joe@where.test;, "
                   "<@relay.test,@hop.test:user@final.test>")
    assert ('(NIL NIL "A Group" NIL)("Ed Jones" NIL "c" "a.test")(NIL NIL "joe" "where.test")'
            '(NIL NIL NIL NIL)(NIL "@relay.test,@hop.test" "user" "final.test")') in rendered


def test_quoting_removed_from_names_and_local_parts() -> None:
    rendered = env('From: "Joe Q. Public" <"joe q"@example.com>')
    assert '(("Joe Q. Public" NIL "joe q" "example.com"))' in rendered


def test_envelope_of_a_message_part_is_that_of_the_message_inside() -> None:
    data = crlf("Content-Type: message/rfc822\n\nSubject: inner\n\nbody\n")
    root = parse_message(data)
    assert envelope(root) == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
    assert envelope(root.children[0]).startswith(b'(NIL "inner" ')


@pytest.mark.parametrize(("value", "expected"), [
    ("Terry Gray <gray@cac.washington.edu>",
     [Address("Terry Gray", None, "gray", "cac.washington.edu")]),
    ("user@host (Real Name)", [Address("Real Name", None, "user", "host")]),
    ("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
     [Address("Pete", None, "pete", "silly.test")]),
    ("John Q. Public <j@x.test>", [Address("John Q. Public", None, "j", "x.test")]),
    ("undisclosed-recipients:;",
     [Address(None, None, "undisclosed-recipients", None), GROUP_END]),
    ("unlisted-recipients:; (no To-header on input)",
     [Address(None, None, "unlisted-recipients", None), GROUP_END]),
    ("g: a@b.test", [Address(None, None, "g", None), Address(None, None, "a", "b.test"),
                     GROUP_END]),
    ("root", [Address(None, None, "root", "MISSING_DOMAIN")]),
    ("<>", [Address(None, None, "MISSING_MAILBOX", "MISSING_DOMAIN")]),
    ("a@[192.0.2.1]", [Address(None, None, "a", "[192.0.2.1]")]),
    ("a@b.test,, c@d.test", [Address(None, None, "a", "b.test"),
                             Address(None, None, "c", "d.test")]),
    ("=?utf-8?q?J=C3=B6rg?= <j@x.test>",
     [Address("=?utf-8?q?J=C3=B6rg?=", None, "j", "x.test")]),
    ("", []),
    ("  (only a comment) ", []),
    # An unterminated quoted string runs to the end of the value.
    ('"unterminated <x@y.test>', [Address(None, None, "unterminated <x@y.test>",
                                           "MISSING_DOMAIN")]),
])
def test_address_parser(value: str, expected: list[Address]) -> None:
    assert parse_address_list(value) == expected
