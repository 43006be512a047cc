"""BINARY / BINARY.SIZE: transfer decoding (RFC 3516, RFC 9051 §6.4.5, RFC 2045 §6.7-§6.8)."""

from __future__ import annotations

import base64

import pytest

from mailpost.mime import (
    UnknownTransferEncoding,
    binary,
    binary_size,
    find_part,
    parse_message,
)
from tests.mime import samples
from tests.mime.samples import crlf


def single(encoding: str, body: bytes, media: str = "application/octet-stream") -> bytes:
    return (f"Content-Type: {media}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n".encode()
            + body)


def decoded(data: bytes) -> bytes:
    root = parse_message(data)
    assert binary_size(data, root) == len(binary(data, root))
    return binary(data, root)


def test_base64_part_of_the_rfc_example() -> None:
    data = samples.RFC9051_TWO_PARTS
    root = parse_message(data)
    part = find_part(root, (2,))
    assert part is not None
    # The part is TEXT/PLAIN, so the decoded octets' bare LFs (0x0A) are sent as CRLF.
    payload = bytes(i % 251 for i in range(3306))
    expected = payload.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    assert binary(data, part) == expected
    assert binary_size(data, part) == len(expected) > 3306


def test_quoted_printable_text() -> None:
    data = samples.ALTERNATIVE
    root = parse_message(data)
    assert binary(data, root.children[0]) == "Café au lait.".encode()
    assert binary(data, root.children[1]) == "<p>Café au lait.</p>".encode()


def test_quoted_printable_soft_breaks_and_transport_padding() -> None:
    body = b"soft=\r\nbreak  \r\nhard=3D=41 \t\r\nbad=ZZ\r\n"
    assert decoded(single("quoted-printable", body)) == b"softbreak\r\nhard=A\r\nbad=ZZ\r\n"


@pytest.mark.parametrize(("body", "expected"), [
    (b"QUJD\r\nREVG\r\n", b"ABCDEF"),
    (b"QU JD!!\r\n", b"ABC"),           # characters outside the alphabet are ignored
    (b"QUI=\r\nQUJD\r\n", b"AB"),        # decoding stops at padding
    (b"QUJDRA", b"ABCD"),                # missing padding is supplied
    (b"QUJDR", b"ABC"),                  # a lone trailing sextet carries no octet
    (b"", b""),
])
def test_lenient_base64(body: bytes, expected: bytes) -> None:
    assert decoded(single("base64", body)) == expected


def test_identity_encodings_return_the_body() -> None:
    payload = bytes(range(1, 256))
    for encoding in ("7bit", "8bit", "binary", "BINARY"):
        assert decoded(single(encoding, payload)) == payload
    assert decoded(b"Content-Type: image/gif\r\n\r\n" + payload) == payload


def test_text_gets_crlf_line_ends() -> None:
    body = base64.b64encode(b"one\ntwo\r\nthree\n")
    data = single("base64", body, "text/plain")
    assert decoded(data) == b"one\r\ntwo\r\nthree\r\n"
    assert decoded(single("8bit", b"a\nb\r\n", "text/plain")) == b"a\r\nb\r\n"
    # Not text: octets are kept as they are.
    assert decoded(single("8bit", b"a\nb\r\n")) == b"a\nb\r\n"


@pytest.mark.parametrize("encoding", ["x-uuencode", "8bits", "gzip"])
def test_unknown_encoding_is_reported(encoding: str) -> None:
    data = single(encoding, b"whatever")
    root = parse_message(data)
    with pytest.raises(UnknownTransferEncoding) as raised:
        binary(data, root)
    assert raised.value.encoding == encoding
    with pytest.raises(UnknownTransferEncoding):
        binary_size(data, root)


def test_containers_are_returned_undecoded() -> None:
    data = samples.MIXED
    root = parse_message(data)
    assert binary(data, root) == data[root.body_start:]
    message = root.children[2]
    assert binary(data, message) == crlf(
        "From: carol@example.com\nSubject: inner\nDate: Wed, 3 Jan 2024 12:00:00 +0000\n\n"
        "Inner body.")
