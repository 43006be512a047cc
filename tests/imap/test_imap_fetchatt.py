"""FETCH attributes: names in responses, implicit \\Seen, and parse(render(att)) == att."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailpost.imap import commands as c
from mailpost.imap.fetchatt import (
    SIMPLE_ITEMS,
    BinarySection,
    BinarySize,
    BodySection,
    FetchAttribute,
    FetchItem,
    Partial,
    Section,
    render_fetch_att,
    response_name,
    sets_seen,
)
from mailpost.imap.seqset import SequenceSet

from .imap_helpers import one


def test_response_names_drop_peek_and_the_partial_length() -> None:
    att = BodySection(Section((), "HEADER.FIELDS", ("From", "X Y")), Partial(0, 100), peek=True)
    assert render_fetch_att(att) == 'BODY.PEEK[HEADER.FIELDS (From "X Y")]<0.100>'
    assert response_name(att) == 'BODY[HEADER.FIELDS (From "X Y")]<0>'
    binary = BinarySection((1, 2), Partial(10, 5), peek=True)
    assert response_name(binary) == "BINARY[1.2]<10>"
    assert response_name(BinarySize((3,))) == "BINARY.SIZE[3]"
    assert response_name(BodySection(Section((4,), "MIME"))) == "BODY[4.MIME]"
    assert response_name(FetchItem("RFC822.SIZE")) == "RFC822.SIZE"


def test_which_items_set_seen() -> None:
    assert sets_seen(BodySection(Section()))
    assert not sets_seen(BodySection(Section(), peek=True))
    assert sets_seen(BinarySection((1,)))
    assert not sets_seen(BinarySection((1,), peek=True))
    assert sets_seen(FetchItem("RFC822")) and sets_seen(FetchItem("RFC822.TEXT"))
    assert not sets_seen(FetchItem("RFC822.HEADER")) and not sets_seen(BinarySize(()))


def test_deep_part_paths_are_limited() -> None:
    deep = b".".join([b"1"] * 101)
    event = one(b"a FETCH 1 BODY[" + deep + b"]\r\n")
    assert getattr(event, "code", None) == "LIMIT"


parts = st.lists(st.integers(1, 2**32 - 1), max_size=4).map(tuple)
partials = st.none() | st.builds(Partial, st.integers(0, 2**63 - 1), st.integers(1, 2**63 - 1))
field_names = st.lists(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,8}", fullmatch=True),
                       min_size=1, max_size=3).map(tuple)
sections = st.one_of(
    st.builds(Section, parts),
    st.builds(lambda p, t: Section(p, t), parts, st.sampled_from(["HEADER", "TEXT"])),
    st.builds(lambda p, t, f: Section(p, t, f), parts,
              st.sampled_from(["HEADER.FIELDS", "HEADER.FIELDS.NOT"]), field_names),
    st.builds(lambda p: Section(p, "MIME"), parts.filter(bool)),
)
attributes = st.one_of(
    st.sampled_from(sorted(SIMPLE_ITEMS)).map(FetchItem),
    st.builds(BodySection, sections, partials, st.booleans()),
    st.builds(BinarySection, parts, partials, st.booleans()),
    st.builds(BinarySize, parts),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(attributes, min_size=1, max_size=5).map(tuple))
def test_parse_of_render_is_identity(atts: tuple[FetchAttribute, ...]) -> None:
    line = "a FETCH 1:* (" + " ".join(render_fetch_att(a) for a in atts) + ")\r\n"
    assert one(line.encode()) == c.Fetch("a", SequenceSet.parse("1:*"), atts)
