"""Modified UTF-7 (RFC 9051 Appendix A.1): round trips and canonical-only decoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailpost.imap import mutf7
from mailpost.imap.errors import MUTF7Error

ROUND_TRIPS = [
    ("INBOX", "INBOX"),
    ("", ""),
    ("&", "&-"),
    ("a&b", "a&-b"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("台北日本語", "&U,BTF2XlZyyKng-"),  # RFC 9051 App. A.1: one shift, no superfluous one
    ("☺!", "&Jjo-!"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("tab\there", "tab&AAk-here"),  # a control character is not printable: it is encoded
    ("😀", "&2D3eAA-"),  # astral plane: a UTF-16 surrogate pair
    ("+,-/\\~", "+,-/\\~"),  # UTF-7's problem characters stand for themselves here
]


@pytest.mark.parametrize(("text", "wire"), ROUND_TRIPS)
def test_encode_and_decode_match_the_rfc_forms(text: str, wire: str) -> None:
    assert mutf7.encode(text) == wire
    assert mutf7.decode(wire) == text


NON_CANONICAL = [
    "&Jjo!",  # RFC 9051 App. A.1: no shift back to US-ASCII before "!"
    "&U,BTFw-&ZeVnLIqe-",  # RFC 9051 App. A.1: superfluous shift
    "&AGEAYgBj-",  # "abc" in base64: printable ASCII must represent itself
    "&ACY-",  # "&" in base64: it must be "&-"
    "&AC0-",  # "-" in base64
    "abc&",  # unterminated shift
    "&U,BTFw",  # unterminated shift
    "&U/BTFw-",  # "/" is not in the modified base64 alphabet
    "&U=BTFw-",  # no padding in modified base64
    "&A-",  # truncated: one sextet cannot hold an octet
    "&AAAA-",  # three octets: not whole UTF-16 units
    "&2D0-",  # a lone high surrogate
    "&AOQ-&AOQ-",  # two shifts in a row: should be one
    "&APy-",  # "ü" with non-zero padding bits (the canonical form is "&APw-")
    "caf\u00e9",  # 8-bit / non-ASCII input is never modified UTF-7
    "a\x01b",  # control characters must be encoded, not sent raw
]


@pytest.mark.parametrize("wire", NON_CANONICAL)
def test_non_canonical_or_invalid_forms_are_rejected(wire: str) -> None:
    with pytest.raises(MUTF7Error):
        mutf7.decode(wire)


def test_the_canonical_neighbour_of_a_rejected_form_is_accepted() -> None:
    assert mutf7.decode("&APw-") == "ü"


def test_lone_surrogates_cannot_be_encoded() -> None:
    with pytest.raises(MUTF7Error):
        mutf7.encode("a\ud800b")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_decode_inverts_encode_for_any_text(text: str) -> None:
    wire = mutf7.encode(text)
    assert wire.isascii() and all(" " <= ch <= "~" for ch in wire)
    assert mutf7.decode(wire) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("&-AaZz09+,/!ÿ"), max_size=20))
def test_whatever_decodes_is_the_one_canonical_encoding(wire: str) -> None:
    try:
        text = mutf7.decode(wire)
    except MUTF7Error:
        return
    assert mutf7.encode(text) == wire
