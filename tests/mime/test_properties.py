"""Properties over generated input: nothing raises, every invariant holds (Hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailpost.mime import InvalidSection, envelope, parse_message, parse_section, section
from mailpost.mime.address import parse_address_list
from mailpost.mime.delimiters import DelimiterFinder
from mailpost.mime.params import parse_content_type, parse_disposition
from tests.mime import CORPUS as CORPUS_DIR
from tests.mime.imapsyntax import read_envelope
from tests.mime.samples import ALL
from tests.mime.treecheck import check_everything

CORPUS = sorted(CORPUS_DIR.glob("*.eml"))
SEEDS = [path.read_bytes() for path in CORPUS[::8]] + list(ALL.values())
BOUNDARIES = [b"a", b"ab", b"b", b"a b", b"=_x", b""]
common = settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@common
@given(st.binary(max_size=2000))
def test_random_bytes_parse(data: bytes) -> None:
    check_everything(data, parse_message(data))


def _fragment() -> st.SearchStrategy[bytes]:
    boundary = st.sampled_from(BOUNDARIES)
    return st.one_of(
        boundary.map(lambda b: b"Content-Type: multipart/mixed; boundary=\"" + b + b"\""),
        boundary.map(lambda b: b"--" + b),
        boundary.map(lambda b: b"--" + b + b"--"),
        boundary.map(lambda b: b"--" + b + b" \t junk"),
        st.sampled_from([
            b"", b"Content-Type: message/rfc822", b"Content-Type: multipart/digest; boundary=a",
            b"Content-Type: message/global", b"Content-Transfer-Encoding: base64",
            b"Content-Transfer-Encoding: quoted-printable", b"Content-Type: text/plain",
            b"Subject: s", b"From: A <a@b>", b"To: g: x@y;", b" folded", b"QUJD=", b"body",
            b"Content-Disposition: attachment; filename*0*=utf-8''%C3; filename*1*=%A4",
        ]),
        st.binary(max_size=12),
    )


@st.composite
def structured_messages(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(_fragment(), max_size=60))
    endings = draw(st.lists(st.sampled_from([b"\r\n", b"\n"]), min_size=len(lines),
                            max_size=len(lines)))
    return b"".join(line + ending for line, ending in zip(lines, endings, strict=True))


@common
@given(structured_messages())
def test_random_mime_structure_parses(data: bytes) -> None:
    check_everything(data, parse_message(data))


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "duplicate", "byte"]))
        if kind == "insert":
            data[at:at] = draw(_fragment()) + b"\r\n"
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 200))]
        elif kind == "duplicate":
            data[at:at] = data[at:at + draw(st.integers(1, 500))]
        elif at < len(data):
            data[at] = draw(st.integers(0, 255))
    return bytes(data)


@common
@given(mutated_messages())
def test_mutated_messages_parse(data: bytes) -> None:
    check_everything(data, parse_message(data))


def _reference_delimiter(data: bytes, pos: int,
                         stack: tuple[bytes, ...]) -> tuple[int, int] | None:
    """Line by line, the longest (then innermost) boundary starting the first matching line."""
    line = pos
    while line < len(data):
        best = None
        for level in reversed(range(len(stack))):
            if data.startswith(b"--" + stack[level], line) and (
                    best is None or len(stack[level]) > len(stack[best])):
                best = level
        if best is not None:
            return line, best
        newline = data.find(b"\n", line)
        if newline < 0:
            return None
        line = newline + 1
    return None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"--a", b"--ab", b"--b", b"x", b"\n", b"\r\n", b"--a--"]),
                max_size=40),
       st.lists(st.tuples(st.integers(0, 6),
                          st.lists(st.sampled_from([b"a", b"ab", b"b"]), min_size=1,
                                   max_size=3)),
                max_size=6))
def test_delimiter_finder_matches_a_line_by_line_reference(
        pieces: list[bytes], queries: list[tuple[int, list[bytes]]]) -> None:
    data = b"".join(pieces)
    line_starts = [0] + [i + 1 for i, octet in enumerate(data) if octet == 10]
    finder = DelimiterFinder(data)
    pos = 0
    for skip, stack in queries:  # the parser only ever moves forward
        later = [start for start in line_starts if start >= pos]
        pos = later[min(skip, len(later) - 1)]
        found = finder.find(pos, tuple(stack))
        got = None if found is None else (found.line_start, found.level)
        assert got == _reference_delimiter(data, pos, tuple(stack))


@common
@given(st.text(max_size=200))
def test_address_lists_never_raise(value: str) -> None:
    for address in parse_address_list(value):
        assert address.host is not None or address.name is None
    data = b"From: " + value.encode("utf-8", "surrogatepass").replace(b"\n", b" ") + b"\r\n\r\n"
    read_envelope(envelope(parse_message(data)))


@common
@given(st.binary(max_size=300))
def test_structured_values_never_raise(raw: bytes) -> None:
    parse_content_type(raw)
    parse_disposition(raw)
    parse_content_type(b"a/b; " + raw)


@common
@given(st.text(alphabet="0123456789.HEADERFIELDSNOTMIXT ()\"", max_size=40))
def test_section_specs_parse_or_raise_invalid_section(spec: str) -> None:
    data = ALL["mixed"]
    root = parse_message(data)
    try:
        parsed = parse_section(spec)
    except InvalidSection:
        return
    assert isinstance(section(data, root, parsed), bytes)
