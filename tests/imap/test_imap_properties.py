"""Properties of the protocol machine (hypothesis).

1. Any split of a byte stream into reads gives the same events and the same answers.
2. Arbitrary bytes never raise, and the machine never buffers more than one read plus one
   line; lines that cannot start with a tag produce nothing but BadCommand (or Fatal).
(Round trips are in test_imap_search, test_imap_fetchatt, test_imap_seqset, test_imap_mutf7.)
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailpost.imap import events as ev
from mailpost.imap.protocol import IMAPServerProtocol

from .imap_helpers import run

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PIECES = [
    b"a1 CAPABILITY\r\n",
    b"a2 LOGIN {5}\r\nalice {6+}\r\nsecret\r\n",
    b'a3 SELECT "&ZeVnLIqe-" (CONDSTORE)\r\n',
    b"a4 FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS ({4}\r\nDate)]<0.10>)\r\n",
    b"a5 APPEND INBOX (\\Seen) {10}\r\n0123456789 {3+}\r\nabc ~{2}\r\n\x00\x01\r\n",
    b"a6 IDLE\r\nDONE\r\n",
    b"a7 SEARCH CHARSET UTF-8 OR (FROM {3+}\r\nbob NOT SEEN) UID 1:5\r\n",
    b"a8 APPEND INBOX UTF8 (~{4}\r\nabcd)\r\n",
    b"a9 NOOP extra\r\n",
    b"* garbage\r\n",
    b"b1 LOGIN {70000+}\r\n" + b"x" * 70000 + b" y\r\n",
    b"b2 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n",
    b"b3 STORE 1 +FLAGS.SILENT (\\Deleted)\r\n",
    b"b4 " + b"L" * 70000 + b"\r\n",
    b"b5 APPEND INBOX {3}\r\na\x00c\r\n",
    b"b6 ID NIL\nb7 NOOP\r\n",
]


@st.composite
def chunked_streams(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    stream = b"".join(draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=6)))
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    bounds = [0, *cuts, len(stream)]
    return stream, [stream[a:b] for a, b in itertools.pairwise(bounds)]


@SETTINGS
@given(chunked_streams())
def test_any_chunking_gives_the_same_events(case: tuple[bytes, list[bytes]]) -> None:
    stream, chunks = case
    whole = run(stream)
    split = run(chunks)
    assert split.events == whole.events
    assert split.wire == whole.wire
    assert whole.events[-1] == ev.ConnectionClosed()


@SETTINGS
@given(st.binary(max_size=3000), st.integers(1, 700), st.booleans())
def test_arbitrary_bytes_never_raise_and_stay_bounded(
    data: bytes, read_size: int, authenticated: bool
) -> None:
    proto = IMAPServerProtocol(
        authenticated=authenticated, max_line_length=2048, max_literal_size=1024,
        max_command_size=4096, max_preauth_line=1024, max_preauth_literal=512,
        max_preauth_command=2048,
    )
    for start in range(0, len(data), read_size):
        proto.receive_data(data[start : start + read_size])
        _answer_everything(proto)
        assert proto.buffered <= read_size + 4096 + 2


def _answer_everything(proto: IMAPServerProtocol) -> None:
    from .imap_helpers import standard_answer

    while True:
        event = proto.next_event()
        if isinstance(event, (ev.Sentinel, ev.ConnectionClosed)):
            return
        if isinstance(event, (ev.LiteralRequest, ev.AppendMessage)):
            proto.accept_literal()
            continue
        response = standard_answer(event)
        if response is not None:
            proto.send(response)


untagged_lines = st.lists(
    st.tuples(st.sampled_from(list(b'*+( %"\\{)')), st.binary(max_size=120)).map(
        lambda pair: bytes([pair[0]]) + pair[1].replace(b"\n", b"").replace(b"\r", b"")
    ),
    min_size=1,
    max_size=8,
)


@SETTINGS
@given(untagged_lines, st.integers(1, 64))
def test_lines_without_a_tag_only_produce_bad_commands(lines: list[bytes], size: int) -> None:
    stream = b"".join(line + b"\r\n" for line in lines)
    chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
    events = run(chunks).events
    assert events[-1] == ev.ConnectionClosed()
    assert all(isinstance(e, (ev.BadCommand, ev.Fatal)) for e in events[:-1])
    assert all(e.tag is None for e in events if isinstance(e, ev.BadCommand))
