"""Sequence sets (RFC 9051 §9 sequence-set, RFC 5182 "$"): parsing, rendering, resolution."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailpost.imap.errors import SequenceRangeError
from mailpost.imap.seqset import STAR, IntervalSet, SequenceSet


@pytest.mark.parametrize(
    ("text", "ranges", "saved"),
    [
        ("1", ((1, 1),), False),
        ("1:*", ((1, STAR),), False),
        ("*:4", ((4, STAR),), False),
        ("5:2", ((2, 5),), False),  # RFC 9051 §9: 2:4 and 4:2 are equivalent
        ("*", ((STAR, STAR),), False),
        ("2,4:7,9,12:*", ((2, 2), (4, 7), (9, 9), (12, STAR)), False),
        ("$", (), True),
        ("1,$", ((1, 1),), True),
        ("1:4294967295", ((1, 4294967295),), False),
    ],
)
def test_parse(text: str, ranges: tuple[tuple[int, int], ...], saved: bool) -> None:
    parsed = SequenceSet.parse(text)
    assert parsed.ranges == ranges
    assert parsed.saved is saved


@pytest.mark.parametrize(
    "text", ["0", "4294967296", "1:0", "01", "1,", ",1", "1::2", "a", "", "1:2:3", "-1", "$$"]
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        SequenceSet.parse(text)


def test_str_renders_the_normalised_form() -> None:
    assert str(SequenceSet.parse("5:2,*,7:*,$")) == "2:5,*,7:*,$"


def test_from_numbers_compresses_runs() -> None:
    assert str(SequenceSet.from_numbers([9, 1, 2, 3, 7, 3])) == "1:3,7,9"


UIDS = [3, 5, 10]  # msn 1 -> uid 3, msn 2 -> uid 5, msn 3 -> uid 10


def test_select_by_msn() -> None:
    assert SequenceSet.parse("2:*").select_by_msn(UIDS) == [(2, 5), (3, 10)]
    assert SequenceSet.parse("*:1").select_by_msn(UIDS) == [(1, 3), (2, 5), (3, 10)]


@pytest.mark.parametrize("text", ["4", "1:4", "4:*"])
def test_msn_beyond_the_mailbox_is_an_error(text: str) -> None:
    with pytest.raises(SequenceRangeError):
        SequenceSet.parse(text).select_by_msn(UIDS)


def test_star_in_an_empty_mailbox_is_an_error_for_msns_only() -> None:
    with pytest.raises(SequenceRangeError):
        SequenceSet.parse("*").select_by_msn([])
    assert SequenceSet.parse("1:*").select_by_uid([]) == []


def test_uid_range_past_the_last_uid_includes_the_last_message() -> None:
    # RFC 9051 §9 seq-range: "3291:* includes the UID of the last message ... even if that
    # value is less than 3291"; catalogue I6: UID 559:* with max UID 10 returns UID 10.
    assert SequenceSet.parse("559:*").select_by_uid(UIDS) == [(3, 10)]


def test_select_by_uid_skips_missing_uids() -> None:
    assert SequenceSet.parse("4:9,1").select_by_uid(UIDS) == [(2, 5)]


def test_saved_result_is_merged_in() -> None:
    saved = IntervalSet.from_numbers([10])
    assert SequenceSet.parse("$").select_by_uid(UIDS, saved) == [(3, 10)]
    assert SequenceSet.parse("1,$").select_by_msn(UIDS, IntervalSet.from_numbers([3])) == [
        (1, 3),
        (3, 10),
    ]
    assert SequenceSet.parse("$").select_by_uid(UIDS, IntervalSet()) == []


def test_huge_ranges_and_many_repeats_stay_cheap() -> None:
    uids = list(range(1, 100_001))
    started = time.perf_counter()
    assert len(SequenceSet.parse("1:4294967295").select_by_uid(uids)) == 100_000
    many = SequenceSet.parse(",".join(["1"] * 100_000))
    assert many.select_by_msn(uids) == [(1, 1)]
    assert IntervalSet.from_numbers([1, 2, 3, 5]).intervals == ((1, 3), (5, 5))
    assert time.perf_counter() - started < 2.0


def test_interval_set_membership_and_size() -> None:
    intervals = IntervalSet.from_ranges([(5, 9), (1, 2), (3, 3), (20, 20)])
    assert intervals.intervals == ((1, 3), (5, 9), (20, 20))
    assert 4 not in intervals and 9 in intervals and 20 in intervals and 21 not in intervals
    assert len(intervals) == 9
    assert str(intervals) == "1:3,5:9,20"


numbers = st.integers(min_value=1, max_value=2**32 - 1) | st.just(STAR)
ranges = st.tuples(numbers, numbers)
seqsets = st.builds(
    lambda rs, saved: SequenceSet.parse(
        ",".join([*(f"{_n(a)}:{_n(b)}" for a, b in rs), *(["$"] if saved else [])])
    ),
    st.lists(ranges, min_size=1, max_size=8),
    st.booleans(),
)


def _n(number: int) -> str:
    return "*" if number == STAR else str(number)


@settings(max_examples=200, deadline=None)
@given(seqsets)
def test_parse_of_render_is_identity(seqset: SequenceSet) -> None:
    assert SequenceSet.parse(str(seqset)) == seqset


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(1, 60), unique=True, max_size=30).map(sorted),
    st.lists(st.tuples(st.integers(1, 70) | st.just(STAR), st.integers(1, 70) | st.just(STAR)),
             min_size=1, max_size=5),
)
def test_uid_resolution_matches_a_brute_force_model(
    uids: list[int], written: list[tuple[int, int]]
) -> None:
    seqset = SequenceSet.parse(",".join(f"{_n(a)}:{_n(b)}" for a, b in written))
    largest = uids[-1] if uids else 0
    wanted: set[int] = set()
    for a, b in written:
        low, high = sorted(largest if n == STAR else n for n in (a, b))
        wanted.update(range(low, high + 1))
    expected = [(i + 1, uid) for i, uid in enumerate(uids) if uid in wanted]
    assert seqset.select_by_uid(uids) == expected
