"""The once-at-write check that a body can be sent unchanged (store.lineform), and the POP3
encoder's fast path that trusts it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailpost.pop3.body import BodyEncoder
from mailpost.store.lineform import WireFormCheck

# Bodies made mostly of the octets that matter: line endings and dots.
BODIES = st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"xy"]),
                  max_size=30).map(b"".join)
CUTS = st.lists(st.integers(min_value=0, max_value=40), max_size=6)


def reference_ready(body: bytes) -> bool:
    """The definition, written the slow and obvious way."""
    if re.search(rb"\r(?!\n)|(?<!\r)\n", body):
        return False
    if body.startswith(b".") or b"\n." in body:
        return False
    return body == b"" or body.endswith(b"\r\n")


def check(body: bytes, cuts: list[int]) -> bool:
    form = WireFormCheck()
    start = 0
    for cut in sorted(set(cuts)):
        form.feed(body[start:cut])
        start = max(start, cut)
    form.feed(body[start:])
    return form.ready


@given(BODIES, CUTS)
def test_check_agrees_with_the_definition_however_the_body_is_cut(body: bytes,
                                                                   cuts: list[int]) -> None:
    assert check(body, cuts) is reference_ready(body)


@given(BODIES)
def test_a_ready_body_encodes_to_itself_on_both_paths(body: bytes) -> None:
    slow = BodyEncoder()
    slow_wire = slow.feed(body) + slow.finish()
    fast = BodyEncoder()
    fast_wire = fast.feed(body, wire_ready=True) + fast.finish()
    if reference_ready(body):
        assert slow_wire == fast_wire == body + b".\r\n"
    else:
        assert slow_wire != body + b".\r\n"


@pytest.mark.parametrize(("body", "ready"), [
    (b"", True),
    (b"Subject: x\r\n\r\nhello\r\n", True),
    (b"Subject: x\r\n\r\nno final line ending", False),
    (b"Subject: x\r\n\r\n.leading dot\r\n", False),
    (b".at the very start\r\n", False),
    (b"bare\nlf\r\n", False),
    (b"bare\rcr\r\n", False),
    (b"ends with cr\r", False),
    (b"a. dot inside\r\n", True),
])
def test_examples(body: bytes, ready: bool) -> None:
    assert check(body, []) is ready
    assert check(body, list(range(len(body)))) is ready  # one octet at a time


def test_the_fast_path_is_not_taken_for_top() -> None:
    encoder = BodyEncoder(body_lines=0)
    assert encoder.feed(b"H: v\r\n\r\nbody\r\n", wire_ready=True) == b"H: v\r\n\r\n"
