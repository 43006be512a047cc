"""Stored flag texts decode to shared sets: one object per combination, bounded."""

from __future__ import annotations

import pytest

from mailpost.store.sqlite import names


def test_equal_texts_share_one_set() -> None:
    first = names.decode_flags("\\Answered \\Seen")
    again = names.decode_flags("\\Answered \\Seen")
    assert first == {"\\Answered", "\\Seen"}
    assert first is again
    assert names.decode_flags("") == frozenset()
    assert names.decode_flags(names.encode_flags(first)) == first


def test_the_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(names, "_FLAG_SETS", {})
    monkeypatch.setattr(names, "_FLAG_SETS_LIMIT", 8)
    for number in range(50):
        assert names.decode_flags(f"$k{number}") == {f"$k{number}"}
        assert len(names._FLAG_SETS) <= 8
