"""The streaming 8-bit header detector behind RFC 6855 §4 (no server needed)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailpost.imap.handlers.append_headers import HeaderScanner


def scan(*chunks: bytes) -> HeaderScanner:
    scanner = HeaderScanner()
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner


@pytest.mark.parametrize(("message", "eight_bit"), [
    (b"Subject: plain\r\n\r\nbody", False),
    (b"Subject: caf\xc3\xa9\r\n\r\nbody", True),
    (b"Subject: plain\r\n\r\ncaf\xc3\xa9 in the body only", False),
    (b"\r\nno header section at all: \xff", False),
    (b"Subject: lone LF separator\n\n\xff", False),
    (b"Subject: headers only, never ended \xe2\x82\xac", True),
    (b"", False),
])
def test_verdict(message: bytes, eight_bit: bool) -> None:
    assert scan(message).eight_bit is eight_bit


def test_separator_split_across_chunks_ends_the_header() -> None:
    scanner = scan(b"Subject: x\r\n\r", b"\n\xc3\xa9")
    assert scanner.header_complete
    assert not scanner.eight_bit


def test_header_continues_until_the_empty_line() -> None:
    scanner = scan(b"Subject: x\r\n", b"X-Name: \xc3\xa9\r\n", b"\r\nbody")
    assert scanner.eight_bit
    clean = scan(b"Subject: x\r\n", b"X-Name: y\r\n", b"\r\n\xff")
    assert clean.header_complete and not clean.eight_bit


def _reference(message: bytes) -> bool:
    end = re.search(rb"\r?\n\r?\n", b"\r\n" + message)
    header = message if end is None else message[: max(0, end.start() - 2)]
    return re.search(rb"[\x80-\xff]", header) is not None


_octets = st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"\xc3\xa9", b":", b" "]),
                   max_size=40).map(b"".join)


@given(message=_octets, cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_any_chunking_gives_the_verdict_of_the_whole(message: bytes, cuts: list[int]) -> None:
    points = sorted({min(cut, len(message)) for cut in cuts})
    chunks = [message[a:b] for a, b in zip([0, *points], [*points, len(message)], strict=True)]
    assert scan(*chunks).eight_bit == scan(message).eight_bit == _reference(message)
