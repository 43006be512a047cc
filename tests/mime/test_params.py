"""Content-Type / Content-Disposition values, RFC 2231 and defaults (RFC 2045, 2183, 2231)."""

from __future__ import annotations

import pytest

from mailpost.mime import Param, decode_words, parse_message
from mailpost.mime.params import (
    parse_content_type,
    parse_disposition,
    parse_language,
    parse_token,
)


def params_of(raw: bytes) -> list[Param]:
    parsed = parse_content_type(raw)
    assert parsed is not None
    return parsed[2]


def test_media_type_and_parameters() -> None:
    assert parse_content_type(b'Text/HTML; Charset="UTF-8"; format=flowed') == (
        "text", "html", [Param("charset", "UTF-8"), Param("format", "flowed")])


@pytest.mark.parametrize("raw", [b"", b"text", b"garbage value", b"/plain", b"text/"])
def test_invalid_media_types_are_rejected(raw: bytes) -> None:
    assert parse_content_type(raw) is None


def test_lenient_parameter_syntax() -> None:
    params = params_of(
        b'application/pdf (a comment); name=my file.pdf ; ;; junk ; x="a;b\\"c"; '
        b'y="unterminated; z=1')
    assert params == [Param("name", "my file.pdf"), Param("junk", ""), Param("x", 'a;b"c'),
                      Param("y", "unterminated; z=1")]


def test_rfc2231_continuations_and_charsets() -> None:
    params = params_of(
        b"application/x; a*0*=iso-8859-1'de'%C4rger; a*1*=%20mehr; b*0=plain; b*1=.txt; "
        b"c*=x-unknown''%E4")
    assert params == [Param("a", "Ärger mehr", "utf-8", "de"), Param("b", "plain.txt"),
                      Param("c", "\udce4", "x-unknown", "")]


def test_what_would_make_the_stdlib_raise_is_dropped() -> None:
    # "n*" next to "n*0" makes decode_params compare None with an int; a 5000-digit section
    # number is beyond int(); neither may raise.
    params = params_of(
        b"a/b; n*=one; n*0=two; m*" + b"9" * 5000 + b"=x; ok=yes")
    assert params == [Param("ok", "yes"), Param("n", "two")]


def test_charset_labels_that_are_not_text_codecs_are_not_used() -> None:
    for label in (b"zlib_codec", b"base64", b"punycode", b"rot13"):
        params = params_of(b"a/b; n*=" + label + b"''%41")
        assert params[0].charset == label.decode()
        assert params[0].value == "A"


def test_eight_bit_values_survive_exactly() -> None:
    params = params_of(b'a/b; name="caf\xc3\xa9 \xe9.txt"')
    assert params[0].value.encode("utf-8", "surrogateescape") == b"caf\xc3\xa9 \xe9.txt"


def test_disposition_language_and_tokens() -> None:
    assert parse_disposition(b'Attachment; filename="a.txt"') == (
        "attachment", [Param("filename", "a.txt")])
    assert parse_disposition(b"; filename=a") is None
    assert parse_language(b"en, fi (Finnish), se") == ["en", "fi", "se"]
    assert parse_language(b"  ") is None
    assert parse_token(b" Base64 ") == "base64"
    assert parse_token(b"7bit (plain)") == "7bit"
    assert parse_token(b"?broken") is None
    assert parse_token(b"base 64") is None


def test_defaults() -> None:
    root = parse_message(b"Content-Type: text/plain; charset\r\n\r\nx")
    assert (root.media_type, root.subtype, root.params) == ("text", "plain",
                                                          [Param("charset", "")])
    invalid = parse_message(b"Content-Type: nonsense\r\n\r\nx")
    assert (invalid.media_type, invalid.subtype) == ("text", "plain")
    digest = parse_message(b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
                           b"--d\r\nContent-Type: bogus\r\n\r\nSubject: s\r\n\r\nx\r\n--d--\r\n")
    assert digest.children[0].is_message


def test_decode_words() -> None:
    assert decode_words(b"=?iso-8859-1?q?Gr=FC=DFe?= from =?utf-8?b?SsO2cmc=?=") == (
        "Grüße from Jörg")
    # A UTF-8 character split across two encoded words is joined before decoding.
    assert decode_words("=?UTF-8?B?4Lij?= =?UTF-8?B?4Liw?=") == "\u0e23\u0e30"
    assert decode_words(b"raw caf\xc3\xa9, =?x-unknown?q?a?=") == "raw café, a"
    assert decode_words(b"=?utf-8?b?####?=") == ""
