"""RETR/TOP body encoding: dot-stuffing (catalogue P5), line endings, the TOP limit."""

from __future__ import annotations

import pytest

from mailpost.pop3.body import BodyEncoder


def encode(message: bytes, body_lines: int | None = None, chunk: int = 0) -> bytes:
    encoder = BodyEncoder(body_lines)
    pieces = [message] if chunk <= 0 else [message[i:i + chunk]
                                           for i in range(0, len(message), chunk)]
    return b"".join(encoder.feed(piece) for piece in pieces) + encoder.finish()


@pytest.mark.parametrize(("message", "wire"), [
    (b"", b".\r\n"),
    (b"a\r\n", b"a\r\n.\r\n"),
    (b"no final newline", b"no final newline\r\n.\r\n"),
    (b".\r\n", b"..\r\n.\r\n"),
    (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"..double\r\n.x\r\n", b"...double\r\n..x\r\n.\r\n"),
    (b"a.b\r\n x.\r\n", b"a.b\r\n x.\r\n.\r\n"),
    (b"bare\nlf\n.dot\n", b"bare\r\nlf\r\n..dot\r\n.\r\n"),
    (b"bare\rcr\r", b"bare\r\ncr\r\n.\r\n"),
    (b"mixed\r\r\n\n", b"mixed\r\n\r\n\r\n.\r\n"),
])
def test_retr_encoding(message: bytes, wire: bytes) -> None:
    assert encode(message) == wire
    for chunk in (1, 2, 3):
        assert encode(message, chunk=chunk) == wire, chunk


def test_a_crlf_split_between_chunks_stays_one_line_ending() -> None:
    encoder = BodyEncoder()
    assert encoder.feed(b"a\r") == b"a"
    assert encoder.feed(b"\n.b\r\n") == b"\r\n..b\r\n"
    assert encoder.finish() == b".\r\n"


def test_a_dot_that_continues_a_line_across_chunks_is_not_stuffed() -> None:
    encoder = BodyEncoder()
    assert encoder.feed(b"abc") + encoder.feed(b".def\r\n") == b"abc.def\r\n"


MESSAGE = b"From: a\r\nSubject: s\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n"


@pytest.mark.parametrize(("lines", "wire"), [
    (0, b"From: a\r\nSubject: s\r\n\r\n.\r\n"),
    (1, b"From: a\r\nSubject: s\r\n\r\nline 1\r\n.\r\n"),
    (2, b"From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\n.\r\n"),
    (3, b"From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n"),
    (50, b"From: a\r\nSubject: s\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n"),
])
def test_top_sends_headers_blank_line_and_n_body_lines(lines: int, wire: bytes) -> None:
    for chunk in (0, 1, 2, 5, 7):
        assert encode(MESSAGE, lines, chunk) == wire, chunk


@pytest.mark.parametrize(("message", "lines", "wire"), [
    (b"Subject: only headers\r\n", 0, b"Subject: only headers\r\n.\r\n"),
    (b"Subject: no newline", 3, b"Subject: no newline\r\n.\r\n"),
    (b"\r\nbody first\r\nsecond\r\n", 1, b"\r\nbody first\r\n.\r\n"),
    (b"H: v\r\n\r\n\r\n\r\nx\r\n", 2, b"H: v\r\n\r\n\r\n\r\n.\r\n"),
    (b"H: v\r\n\r\nunterminated", 5, b"H: v\r\n\r\nunterminated\r\n.\r\n"),
    (b"H: v\n\nbody\nmore\n", 1, b"H: v\r\n\r\nbody\r\n.\r\n"),
])
def test_top_edge_cases(message: bytes, lines: int, wire: bytes) -> None:
    for chunk in (0, 1, 3):
        assert encode(message, lines, chunk) == wire, chunk


def test_top_reports_completion_so_the_reader_can_stop() -> None:
    encoder = BodyEncoder(1)
    encoder.feed(b"H: v\r\n\r\nfirst\r\n")
    assert encoder.complete
    assert encoder.feed(b"second\r\n") == b""
    assert encoder.finish() == b".\r\n"


def test_retr_is_never_complete_before_its_end() -> None:
    encoder = BodyEncoder()
    encoder.feed(b"H: v\r\n\r\n" + b"x\r\n" * 100)
    assert not encoder.complete


def test_negative_line_count_is_refused() -> None:
    with pytest.raises(ValueError):
        BodyEncoder(-1)
