"""The bounded copy of an incoming message that the MX session keeps for the checks."""

from __future__ import annotations

from mailpost.mailauth.inbound import HEAD_BYTES, MessageTap


def test_small_message_is_kept_whole() -> None:
    tap = MessageTap(limit=10)
    for chunk in (b"abc", b"defg", b"hij"):
        tap.feed(chunk)
    assert tap.complete and bytes(tap.data) == b"abcdefghij"


def test_large_message_keeps_only_its_head() -> None:
    tap = MessageTap(limit=HEAD_BYTES * 2)
    chunk = b"x" * 65536
    for _ in range(2 * HEAD_BYTES // len(chunk) + 1):
        tap.feed(chunk)
    assert not tap.complete
    assert len(tap.data) == HEAD_BYTES
    assert tap.size == (2 * HEAD_BYTES // len(chunk) + 1) * len(chunk)


def test_limit_below_the_head_size_still_keeps_the_head() -> None:
    tap = MessageTap(limit=4)
    tap.feed(b"Subject: x\r\n\r\nbody")
    assert not tap.complete and bytes(tap.data) == b"Subject: x\r\n\r\nbody"
