"""SEARCH keys: normalisation, nesting limits and parse(render(key)) == key."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailpost.imap import commands as c
from mailpost.imap import events as ev
from mailpost.imap.search import (
    AllKey,
    AndKey,
    DateKey,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    NotKey,
    ObjectIdKey,
    OrKey,
    SearchKey,
    SequenceKey,
    SizeKey,
    TextKey,
    render_search_key,
    uses_modseq,
    walk,
)
from mailpost.imap.seqset import SequenceSet

from .imap_helpers import one, run


def search(program: bytes, **options: object) -> SearchKey | ev.BadCommand:
    event = one(b"a SEARCH " + program + b"\r\n", **options)
    if isinstance(event, ev.BadCommand):
        return event
    assert isinstance(event, c.Search)
    return event.key


@pytest.mark.parametrize(
    ("program", "key"),
    [
        (b"ALL", AllKey()),
        (b"ANSWERED", FlagKey("\\Answered")),
        (b"UNDRAFT", FlagKey("\\Draft", False)),
        (b"DELETED UNDELETED", AndKey((FlagKey("\\Deleted"), FlagKey("\\Deleted", False)))),
        (b"RECENT", FlagKey("\\Recent")),
        (b"KEYWORD $Forwarded", FlagKey("$Forwarded")),
        (b"BCC x CC y TO z SUBJECT w",
         AndKey((HeaderKey("BCC", "x"), HeaderKey("CC", "y"), HeaderKey("TO", "z"),
                 HeaderKey("SUBJECT", "w")))),
        (b'HEADER "Message-ID" "<a@b>"', HeaderKey("MESSAGE-ID", "<a@b>")),
        (b"BODY hello", TextKey("BODY", "hello")),
        (b'BEFORE "2-Jan-2020"', DateKey("INTERNAL", "BEFORE", dt.date(2020, 1, 2))),
        (b"SENTON 29-feb-2024", DateKey("SENT", "ON", dt.date(2024, 2, 29))),
        (b"SENTBEFORE 1-Jan-1970 SENTSINCE 1-Jan-1970",
         AndKey((DateKey("SENT", "BEFORE", dt.date(1970, 1, 1)),
                 DateKey("SENT", "SINCE", dt.date(1970, 1, 1))))),
        (b"LARGER 9223372036854775807", SizeKey("LARGER", 2**63 - 1)),
        (b"1:*", SequenceKey(SequenceSet.parse("1:*"))),
        (b"UID 5,7:9", SequenceKey(SequenceSet.parse("5,7:9"), uid=True)),
        (b"EMAILID M6d99ac3275bb4e THREADID T64b478a75b7ea9",
         AndKey((ObjectIdKey("EMAILID", "M6d99ac3275bb4e"),
                 ObjectIdKey("THREADID", "T64b478a75b7ea9")))),
        (b"(ALL)", AllKey()),  # a parenthesised single key is that key
        (b"OR (SEEN FLAGGED) NOT (DRAFT)",
         OrKey(AndKey((FlagKey("\\Seen"), FlagKey("\\Flagged"))), NotKey(FlagKey("\\Draft")))),
        (b"NOT NOT SEEN", NotKey(NotKey(FlagKey("\\Seen")))),
    ],
)
def test_search_keys(program: bytes, key: SearchKey) -> None:
    assert search(program) == key


@pytest.mark.parametrize(
    "program",
    [b"LARGER 9223372036854775808", b"LARGER -1", b"UID", b"UID *x", b"HEADER x", b"EMAILID a.b",
     b"MODSEQ \"/flags/\" all 1", b"MODSEQ \"/other/x\" all 1", b"MODSEQ \"/flags/x\" some 1",
     b"ON 1-Jan-99", b"SEEN  DRAFT", b"(SEEN)DRAFT", b"OR SEEN", b"NOT"],
)
def test_invalid_search_programs(program: bytes) -> None:
    assert isinstance(search(program), ev.BadCommand)


def test_nesting_is_capped_without_recursion_errors() -> None:
    assert search(b"NOT " * 99 + b"ALL") is not None
    for program in (b"NOT " * 101 + b"ALL", b"OR " * 101 + b"ALL " * 102,
                    b"(" * 101 + b"ALL" + b")" * 101):
        result = search(program.strip())
        assert isinstance(result, ev.BadCommand) and result.code == "LIMIT"


def test_nesting_limit_is_configurable() -> None:
    assert isinstance(search(b"NOT NOT ALL", max_nesting=1), ev.BadCommand)
    assert search(b"NOT ALL", max_nesting=1) == NotKey(AllKey())


def test_walk_and_uses_modseq() -> None:
    key = OrKey(NotKey(ModSeqKey(5)), AndKey((AllKey(), FlagKey("\\Seen"))))
    assert [type(n) for n in walk(key)] == [OrKey, NotKey, ModSeqKey, AndKey, AllKey, FlagKey]
    assert uses_modseq(key) and not uses_modseq(AllKey())


def test_rendering_of_strings_that_need_quoting_or_literals() -> None:
    assert render_search_key(HeaderKey("FROM", 'a "b"')) == b'FROM "a \\"b\\""'
    assert render_search_key(TextKey("TEXT", "a\r\nb")) == b"TEXT {4+}\r\na\r\nb"
    assert render_search_key(FlagKey("\\Recent", False)) == b"OLD"
    assert render_search_key(ModSeqKey(7, "\\Seen", "priv")) == b'MODSEQ "/flags/\\\\Seen" priv 7'


# --- parse(render(key)) == key ---------------------------------------------------------------

atoms = st.from_regex(r"[A-Za-z$][A-Za-z0-9$_.-]{0,10}", fullmatch=True)
texts = st.text(st.characters(exclude_characters="\x00"), max_size=12)
seqsets = st.from_regex(r"(?:[1-9][0-9]{0,3}|\*)(?::(?:[1-9][0-9]{0,3}|\*))?", fullmatch=True)
leaves = st.one_of(
    st.just(AllKey()),
    st.builds(FlagKey, st.sampled_from(["\\Seen", "\\Answered", "\\Draft", "\\Recent"]) | atoms,
              st.booleans()),
    st.builds(HeaderKey, st.sampled_from(["FROM", "TO", "CC", "BCC", "SUBJECT", "X-SPAM"]),
              texts),
    st.builds(TextKey, st.sampled_from(["BODY", "TEXT"]), texts),
    st.builds(DateKey, st.sampled_from(["INTERNAL", "SENT"]),
              st.sampled_from(["BEFORE", "ON", "SINCE"]),
              st.dates(dt.date(1900, 1, 1), dt.date(2200, 12, 31))),
    st.builds(SizeKey, st.sampled_from(["LARGER", "SMALLER"]), st.integers(0, 2**63 - 1)),
    st.builds(SequenceKey, seqsets.map(SequenceSet.parse), st.booleans()),
    st.builds(ModSeqKey, st.integers(0, 2**63 - 1)),
    st.builds(lambda flag, kind, n: ModSeqKey(n, flag, kind),
              st.sampled_from(["\\Seen", "$Junk"]), st.sampled_from(["priv", "shared", "all"]),
              st.integers(0, 99)),
    st.builds(ObjectIdKey, st.sampled_from(["EMAILID", "THREADID"]),
              st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(NotKey, inner),
        st.builds(OrKey, inner, inner),
        st.lists(inner, min_size=2, max_size=4).map(lambda keys: AndKey(tuple(keys))),
    ),
    max_leaves=12,
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_parse_of_render_is_identity(key: SearchKey) -> None:
    transcript = run(b"a SEARCH " + render_search_key(key) + b"\r\n")
    assert transcript.commands() == [c.Search("a", key)]
