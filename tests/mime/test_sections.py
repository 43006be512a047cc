"""BODY[<section>] extraction: RFC 9051 §6.4.5.1 semantics on the samples."""

from __future__ import annotations

import pytest

from mailpost.mime import (
    InvalidSection,
    SectionSpec,
    find_part,
    parse_message,
    parse_section,
    section,
)
from tests.mime import samples
from tests.mime.samples import crlf


def get(data: bytes, spec: str) -> bytes:
    return section(data, parse_message(data), spec)


def test_whole_message_header_and_text() -> None:
    data = samples.RFC9051_MINUTES
    assert get(data, "") == data
    header = get(data, "HEADER")
    assert len(header) == 342  # the {342} of RFC 9051 §8's BODY[HEADER]
    assert header.endswith(b"CHARSET=US-ASCII\r\n\r\n")
    assert get(data, "TEXT") == data[342:]


def test_part_1_of_a_non_multipart_message_is_its_body() -> None:
    data = samples.NO_CONTENT_TYPE
    assert get(data, "1") == b"Hello\r\n"
    assert get(data, "1.MIME") == get(data, "HEADER")
    assert get(data, "2") == b""
    assert get(data, "1.1") == b""
    assert get(data, "1.HEADER") == b""


def test_parts_of_a_multipart() -> None:
    data = samples.NESTED
    assert get(data, "1.1") == b"plain"
    assert get(data, "1.2.1") == b'<img src="cid:i1">'
    assert get(data, "1.2.2") == b"iVBORw0KGgo="
    assert get(data, "1.2.2.MIME") == crlf(
        "Content-Type: image/png\nContent-ID: <i1>\nContent-Transfer-Encoding: base64\n\n")
    assert get(data, "1.2.3") == b""
    assert get(data, "2") == b""
    assert get(data, "1.2").startswith(b"--L3\r\nContent-Type: text/html")


def test_a_part_without_mime_header_has_just_its_blank_line() -> None:
    data = samples.MISSING_CLOSE
    assert get(data, "1.MIME") == b"\r\n"
    assert get(data, "1") == b"no content type here"
    assert get(data, "2") == b"last part, no close delimiter\r\n"


def test_encapsulated_message() -> None:
    data = samples.MIXED
    inner_header = crlf("From: carol@example.com\nSubject: inner\n"
                        "Date: Wed, 3 Jan 2024 12:00:00 +0000\n\n")
    assert get(data, "3.HEADER") == inner_header
    assert get(data, "3.TEXT") == b"Inner body."
    assert get(data, "3") == inner_header + b"Inner body."
    assert get(data, "3.MIME") == crlf(
        "Content-Type: message/rfc822\nContent-Description: forwarded\n\n")
    # The message inside is not multipart: its only part is its body, whose MIME header is
    # the encapsulated header (Dovecot does the same).
    assert get(data, "3.1") == b"Inner body."
    assert get(data, "3.1.MIME") == inner_header
    assert get(data, "3.2") == b""
    assert get(data, "3.HEADER.FIELDS (SUBJECT)") == b"Subject: inner\r\n\r\n"
    # HEADER and TEXT need a message part.
    assert get(data, "1.HEADER") == b""
    assert get(data, "2.TEXT") == b""


def test_encapsulated_multipart_message() -> None:
    data = samples.DOVECOT_FEATURES
    assert get(data, "2.1") == b"<p>hi</p>\r\n"
    assert get(data, "2.2") == b"hi again\r\n"
    assert get(data, "2.2.MIME") == crlf(
        "Content-Type: text/plain\nContent-Transfer-Encoding: ?broken\n\n")
    assert get(data, "2.TEXT").startswith(b"Inner preamble\r\n--in\r\n")
    assert get(data, "2.TEXT").endswith(b"--in--\r\nInner epilogue\r\n")


def test_digest_numbering() -> None:
    data = samples.DIGEST
    assert get(data, "1.HEADER") == b"From: a@example.org\r\nSubject: one\r\n\r\n"
    assert get(data, "1.TEXT") == b"first"
    assert get(data, "1.1") == b"first"
    assert get(data, "2.HEADER.FIELDS (subject)") == b"Subject: two\r\n\r\n"
    assert get(data, "1.MIME") == b"\r\n"


def test_header_fields_keep_order_folding_and_the_blank_line() -> None:
    data = crlf("Subject: one\nX-Long: a\n  b\n\tc\nFrom: x@y\nsubject : two\n"
                "Not a field line\n\nbody\n")
    assert get(data, "HEADER.FIELDS (X-LONG SUBJECT)") == crlf(
        "Subject: one\nX-Long: a\n  b\n\tc\nsubject : two\n\n")
    assert get(data, 'HEADER.FIELDS ("From")') == b"From: x@y\r\n\r\n"
    assert get(data, "HEADER.FIELDS.NOT (Subject X-Long)") == crlf(
        "From: x@y\nNot a field line\n\n")
    assert get(data, "HEADER.FIELDS (Missing)") == b"\r\n"
    # A name must match the whole field name, not a prefix of it.
    assert get(data, "HEADER.FIELDS (Subj)") == b"\r\n"


def test_header_fields_of_a_message_without_blank_line() -> None:
    data = b"Subject: only a header\r\nFrom: x@y\r\n"
    assert get(data, "HEADER") == data
    assert get(data, "TEXT") == b""
    assert get(data, "HEADER.FIELDS (FROM)") == b"From: x@y\r\n"


def test_parse_section() -> None:
    assert parse_section("") == SectionSpec()
    assert parse_section("1.2.3") == SectionSpec((1, 2, 3))
    assert parse_section("4.2.mime") == SectionSpec((4, 2), "MIME")
    assert parse_section("header.fields.not (a \"B c\")") == SectionSpec(
        (), "HEADER.FIELDS.NOT", (b"a", b"B c"))
    assert parse_section("2.HEADER.FIELDS (From)") == SectionSpec((2,), "HEADER.FIELDS",
                                                                  (b"From",))


@pytest.mark.parametrize("spec", [
    "0", "1.0", "1.", ".1", "1..2", "MIME", "HEADER.FIELDS", "HEADER.FIELDS ()", "HEADERS",
    "TEXT (a)", "1.MIME.TEXT", "1 2", "HEADER.FIELDS(a)", "1234567890",
])
def test_malformed_sections_raise(spec: str) -> None:
    with pytest.raises(InvalidSection):
        parse_section(spec)


def test_section_spec_objects_are_accepted_directly() -> None:
    data = samples.NESTED
    root = parse_message(data)
    assert section(data, root, SectionSpec((1, 1))) == b"plain"
    with pytest.raises(InvalidSection):
        section(data, root, SectionSpec((), "MIME"))


def test_find_part() -> None:
    root = parse_message(samples.MIXED)
    assert find_part(root, (1,)) is root.children[0]
    assert find_part(root, (3,)) is root.children[2]
    assert find_part(root, (3, 1)) is root.children[2].children[0]
    assert find_part(root, (4,)) is None
    assert find_part(root, (1, 1)) is None
