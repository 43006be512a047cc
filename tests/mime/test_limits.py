"""Hostile structure and sizes (security catalogue M1, M2): bounded time, no exception."""

from __future__ import annotations

import time

from mailpost.mime import (
    Part,
    body_structure,
    envelope,
    from_json,
    parse_message,
    section,
    to_json,
)
from mailpost.mime.parse import DEPTH_CEILING
from tests.mime.imapsyntax import read_body, read_envelope
from tests.mime.treecheck import check_offsets, check_sections


def depth(root: Part) -> int:
    deepest, stack = 0, [(root, 0)]
    while stack:
        part, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in part.children)
    return deepest


def timed_parse(data: bytes, **limits: int) -> tuple[Part, float]:
    started = time.perf_counter()
    root = parse_message(data, **limits)
    return root, time.perf_counter() - started


def multipart_nesting(levels: int, width: int = 5) -> bytes:
    """``levels`` nested multiparts; with ``width`` 0 the boundaries b1, b10, b100... are
    prefixes of each other, which RFC 2046 forbids and the longest-match rule must settle."""
    names = [b"b%0*d" % (width, i) for i in range(levels)]
    opening = b"".join(b"Content-Type: multipart/mixed; boundary=%s\r\n\r\n--%s\r\n" % (n, n)
                       for n in names)
    closing = b"".join(b"\r\n--%s--" % n for n in reversed(names))
    return opening + b"Content-Type: text/plain\r\n\r\ninnermost" + closing + b"\r\n"


def test_multipart_nested_10000_deep() -> None:
    data = multipart_nesting(10_000)
    root, seconds = timed_parse(data)
    assert seconds < 5
    assert depth(root) == 100
    (deepest,) = [part for part in root.walk() if part.opaque]
    assert (deepest.media_type, deepest.subtype) == ("application", "octet-stream")
    assert data[deepest.body_start:].startswith(b"--b00100\r\nContent-Type: multipart/mixed")
    assert data[:deepest.end].endswith(b"--b00101--\r\n--b00100--")
    assert data[deepest.end:].startswith(b"\r\n--b00099--")
    check_offsets(data, root)
    read_body(body_structure(root))
    path = ".".join(["1"] * 100)
    assert section(data, root, path) == data[deepest.body_start:deepest.end]
    assert section(data, root, path + ".1") == b""


def test_nesting_with_prefix_boundaries() -> None:
    data = multipart_nesting(10_000, width=0)
    root, seconds = timed_parse(data)
    assert seconds < 5
    assert depth(root) <= 100
    check_offsets(data, root)
    check_sections(data, root)
    read_body(body_structure(root))


def test_depth_limit_is_capped_whatever_the_caller_asks() -> None:
    data = multipart_nesting(10_000)
    root, seconds = timed_parse(data, max_depth=10**9)
    assert seconds < 10
    assert depth(root) == DEPTH_CEILING
    read_body(body_structure(root))
    assert from_json(to_json(root)) == root


def test_message_rfc822_chain_100000_deep() -> None:
    data = b"Content-Type: message/rfc822\r\n\r\n" * 100_000 + b"Subject: bottom\r\n\r\nx"
    root, seconds = timed_parse(data)
    assert seconds < 5
    assert depth(root) == 100
    check_offsets(data, root)
    read_body(body_structure(root))
    read_envelope(envelope(root))


def test_100000_sibling_parts() -> None:
    data = (b"Content-Type: multipart/mixed; boundary=p\r\n\r\n"
            + b"--p\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 100_000 + b"--p--\r\n")
    root, seconds = timed_parse(data)
    assert seconds < 5
    assert len(root.children) == 10_000 - 1  # the root counts as a part
    assert sum(1 for _ in root.walk()) == 10_000
    assert root.end == len(data)
    read_body(body_structure(root, False), extended=False)
    assert section(data, root, "9999") == b"x"
    assert section(data, root, "10000") == b""


def test_part_limit_makes_containers_opaque() -> None:
    data = (b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
            b"Content-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\nx\r\n--i--\r\n--o--\r\n")
    root = parse_message(data, max_parts=2)
    (inner,) = root.children
    assert inner.opaque and inner.media_type == "application"
    assert section(data, root, "1").startswith(b"--i\r\n")


def test_ten_megabyte_header_line() -> None:
    data = b"Subject: " + b"a" * 10_000_000 + b"\r\nContent-Type: text/html\r\n\r\nbody"
    root, seconds = timed_parse(data)
    assert seconds < 2
    assert root.subtype == "html"
    assert root.envelope is not None and root.envelope.subject is not None
    assert 60_000 < len(root.envelope.subject) <= 64 * 1024
    read_envelope(envelope(root))


def test_fifty_thousand_header_fields() -> None:
    data = (b"X-Spam: yes\r\n" * 50_000 + b"To: a@example.org\r\n" * 50_000
            + b"Content-Type: text/html\r\n\r\nbody")
    root, seconds = timed_parse(data)
    assert seconds < 2
    assert root.envelope is not None and root.envelope.to == "a@example.org"
    started = time.perf_counter()
    assert section(data, root, "HEADER.FIELDS (TO)").count(b"\r\n") == 50_001
    assert len(section(data, root, "HEADER.FIELDS.NOT (TO)")) == 13 * 50_000 + 25 + 2
    assert time.perf_counter() - started < 2


def test_fifty_thousand_addresses_in_one_field() -> None:
    data = b"To: " + b", ".join(b"u%d@example.org" % i for i in range(50_000)) + b"\r\n\r\nx"
    root, seconds = timed_parse(data)
    started = time.perf_counter()
    rendered = envelope(root)
    assert time.perf_counter() - started + seconds < 2
    read_envelope(rendered)  # the value was cut at 64 KiB: fewer addresses, still valid


def test_ten_thousand_rfc2231_parameters() -> None:
    params = b"".join(b";\r\n p%d*%d*=utf-8''%%41" % (i % 7, i) for i in range(10_000))
    data = b"Content-Type: text/plain" + params + b"\r\n\r\nx"
    root, seconds = timed_parse(data)
    assert seconds < 2
    read_body(body_structure(root))


def test_nul_in_header_name_and_truncated_utf8() -> None:
    data = (b"Sub\x00ject: x\r\nSubject: caf\xc3\r\nContent-\x00Type: text/html\r\n"
            b"Content-Description: \xff\xfe\x00\r\n\r\nbody")
    root = parse_message(data)
    assert root.subtype == "plain"
    for utf8 in (False, True):
        read_envelope(envelope(root, utf8=utf8), utf8=utf8)
        read_body(body_structure(root, utf8=utf8), utf8=utf8)


def test_very_long_boundary() -> None:
    boundary = b"B" * 5000
    data = (b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n--" + boundary
            + b"\r\n\r\none\r\n--" + boundary + b"\r\n\r\ntwo\r\n--" + boundary + b"--\r\n")
    root, seconds = timed_parse(data)
    assert seconds < 1
    assert [section(data, root, n) for n in ("1", "2")] == [b"one", b"two"]


def test_many_distinct_boundaries() -> None:
    parts = b"".join(b"--o\r\nContent-Type: multipart/mixed; boundary=in%d\r\n\r\n"
                     b"--in%d\r\n\r\nx\r\n--in%d--\r\n" % (i, i, i) for i in range(3000))
    data = b"Content-Type: multipart/mixed; boundary=o\r\n\r\n" + parts + b"--o--\r\n"
    root, seconds = timed_parse(data)
    assert seconds < 3
    assert len(root.children) == 3000
    check_sections(data, root)
