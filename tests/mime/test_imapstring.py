"""IMAP string rendering (RFC 9051 §4.3 and §9; RFC 6855 §3)."""

from __future__ import annotations

import pytest

from mailpost.mime import NIL, is_quotable, literal, nstring, quoted, string


def test_nil() -> None:
    assert nstring(None) == NIL == b"NIL"
    assert nstring("") == b'""'


def test_plain_ascii_is_quoted_with_escapes() -> None:
    assert string("hello world") == b'"hello world"'
    assert string('say "hi" \\o/') == b'"say \\"hi\\" \\\\o/"'
    assert quoted(b"\t") == b'"\t"'


@pytest.mark.parametrize("value", [b"a\r\nb", b"a\nb", b"a\rb"])
def test_line_breaks_force_a_literal(value: bytes) -> None:
    assert string(value) == b"{%d}\r\n" % len(value) + value
    assert string(value, utf8=True) == b"{%d}\r\n" % len(value) + value


def test_eight_bit_is_a_literal_unless_utf8_is_accepted() -> None:
    text = "Grüße"
    octets = text.encode()
    assert string(text) == b"{7}\r\n" + octets
    assert string(text, utf8=True) == b'"' + octets + b'"'


def test_malformed_utf8_is_a_literal_even_with_utf8() -> None:
    latin1 = "Gr\xfc\xdfe".encode("latin-1")
    assert not is_quotable(latin1, utf8=True)
    assert string(latin1, utf8=True) == b"{5}\r\n" + latin1
    # The same octets carried in a str as surrogates come out unchanged.
    assert string(latin1.decode("utf-8", "surrogateescape"), utf8=True) == b"{5}\r\n" + latin1


def test_nul_is_never_sent() -> None:
    assert not is_quotable(b"a\x00b", utf8=True)
    assert literal(b"a\x00b") == b"{3}\r\na\x80b"
    assert string(b"a\x00b") == b"{3}\r\na\x80b"
