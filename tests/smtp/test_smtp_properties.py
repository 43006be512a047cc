"""Property tests for the SMTP protocol machine (hypothesis).

1. Any split of a byte stream into reads yields the same events as feeding it whole.
2. Random bytes, in any state, never raise and never grow the buffer past its bound.
3. Dot-stuffed DATA (and chunked BDAT) gives back exactly the CRLF-canonical message.
4. The smuggling matrix (security catalogue S1): a body holding a fake end of data,
   followed by a whole second transaction in the same write, yields at most one
   EndOfData and never a MAIL FROM for the spoofed sender, however the write is split.
"""

from __future__ import annotations

import base64

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailpost.smtp import events as ev
from mailpost.smtp import replies
from mailpost.smtp.framing import DotDecoder
from mailpost.smtp.lines import AUTH_LINE_LIMIT
from mailpost.smtp.protocol import SMTPServerProtocol
from mailpost.smtp.replies import Reply
from mailpost.smtp.transcript import Exchange, content_of, events_of, feed, standard_reply

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHALLENGE = Reply.make(334, None, "")


def answer(event: ev.Event) -> Reply:
    """A deterministic peer: refuses STARTTLS (so the stream stays plaintext), runs SASL."""
    if isinstance(event, ev.StartTLS):
        return replies.TLS_NOT_AVAILABLE
    if isinstance(event, ev.Auth):
        return CHALLENGE
    if isinstance(event, ev.AuthResponse):
        return replies.AUTH_FAILED
    return standard_reply(event)


def fresh(max_line_length: int = 256, max_message_size: int = 4096) -> SMTPServerProtocol:
    proto = SMTPServerProtocol(
        max_line_length=max_line_length, max_message_size=max_message_size, max_errors=50
    )
    proto.greeting(Reply.make(220, None, "ready"))
    return proto


def until_closed(events: list[ev.Event]) -> list[ev.Event]:
    """A session stops at the first ConnectionClosed; later polls only repeat it."""
    for index, event in enumerate(events):
        if isinstance(event, ev.ConnectionClosed):
            return events[: index + 1]
    return events


def feed_in_pieces(proto: SMTPServerProtocol, data: bytes, cuts: list[int]) -> list[Exchange]:
    exchanges: list[Exchange] = []
    start = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
        if cut > start:
            exchanges += feed(proto, data[start:cut], answer)
            start = cut
    return exchanges


# --- strategies -------------------------------------------------------------------------------

text_lines = st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
dotted_lines = st.one_of(
    text_lines,
    text_lines.map(lambda b: b"." + b),
    text_lines.map(lambda b: b"Received: " + b),
    st.just(b"."),
    st.just(b""),
)
canonical_messages = st.lists(dotted_lines, max_size=30).map(
    lambda lines: b"".join(line + b"\r\n" for line in lines)
)


def received_fields(message: bytes) -> int:
    """Reference count of Received: fields in the header section of a canonical message."""
    header = message.split(b"\r\n\r\n", 1)[0] if not message.startswith(b"\r\n") else b""
    return sum(line[:9].lower() == b"received:" for line in header.split(b"\r\n"))


def stuff(message: bytes) -> bytes:
    """RFC 5321 §4.5.2 on the sending side."""
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)


@st.composite
def bdat_commands(draw: st.DrawFn) -> bytes:
    payload = draw(st.binary(max_size=40))
    last = draw(st.booleans())
    return b"BDAT %d%s\r\n" % (len(payload), b" LAST" if last else b"") + payload


@st.composite
def data_sections(draw: st.DrawFn) -> bytes:
    body = draw(st.lists(st.sampled_from([b"x", b".", b"\r", b"\n", b"\r\n", b"..", b"abc"])))
    return b"DATA\r\n" + b"".join(body) + b"\r\n.\r\n"


commands = st.one_of(
    st.sampled_from(
        [
            b"EHLO client.example\r\n",
            b"HELO client.example\r\n",
            b"MAIL FROM:<a@b.example>\r\n",
            b"MAIL FROM:<> SIZE=100 BODY=8BITMIME\r\n",
            b"RCPT TO:<c@d.example>\r\n",
            b"RCPT TO:<postmaster>\r\n",
            b"RSET\r\n",
            b"NOOP\r\n",
            b"VRFY joe\r\n",
            b"HELP\r\n",
            b"STARTTLS\r\n",
            b"AUTH PLAIN\r\n",
            b"AUTH PLAIN =\r\n",
            b"*\r\n",
            base64.b64encode(b"\0u\0p") + b"\r\n",
            b"BOGUS\r\n",
            b"NOOP\n",
            b"MAIL FROM:<a\x00b@c>\r\n",
            b"NOOP " + b"x" * 300 + b"\r\n",
        ]
    ),
    bdat_commands(),
    data_sections(),
    st.binary(max_size=30),
)
sessions = st.lists(commands, max_size=25).map(b"".join)


# --- 1. chunking does not matter -------------------------------------------------------------


@SETTINGS
@given(stream=sessions, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_gives_the_same_events(stream: bytes, cuts: list[int]) -> None:
    whole = fresh()
    expected = until_closed(events_of(feed_in_pieces(whole, stream, []) + feed(whole, b"", answer)))
    split = fresh()
    got = until_closed(events_of(feed_in_pieces(split, stream, cuts) + feed(split, b"", answer)))
    assert got == expected


# --- 2. random input is harmless and bounded -------------------------------------------------

PREFIXES = [
    b"",
    b"EHLO c.example\r\n",
    b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n",
    b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n",
    b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 500\r\n",
    b"EHLO c.example\r\nAUTH LOGIN\r\n",
]


@SETTINGS
@given(
    prefix=st.sampled_from(PREFIXES),
    pieces=st.lists(st.binary(min_size=1, max_size=2048), max_size=20),
)
def test_random_bytes_in_every_state_are_harmless(prefix: bytes, pieces: list[bytes]) -> None:
    proto = fresh(max_line_length=128)
    feed_in_pieces(proto, prefix, [])
    for piece in pieces:
        exchanges = feed(proto, piece, answer)
        assert proto.buffered <= AUTH_LINE_LIMIT
        for exchange in exchanges:
            if exchange.reply is not None:  # replies never carry a bare CR or LF
                assert exchange.wire.count(b"\r\n") == len(exchange.reply.lines)
                bare = exchange.wire.replace(b"\r\n", b"")
                assert b"\r" not in bare and b"\n" not in bare
    closing = feed(proto, b"", answer)
    assert events_of(closing)[-1:] == [ev.ConnectionClosed()]


# --- 3. round trip of dot transparency -------------------------------------------------------


def envelope() -> SMTPServerProtocol:
    proto = fresh(max_message_size=10**6)
    feed(proto, b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    return proto


@SETTINGS
@given(message=canonical_messages, cuts=st.lists(st.integers(0, 5000), max_size=8))
def test_data_round_trip(message: bytes, cuts: list[int]) -> None:
    proto = envelope()
    exchanges = feed_in_pieces(proto, b"DATA\r\n" + stuff(message) + b".\r\n", cuts)
    assert content_of(exchanges) == message
    assert [e for e in events_of(exchanges) if isinstance(e, ev.EndOfData)] == [
        ev.EndOfData(len(message), received_fields(message))
    ]


@SETTINGS
@given(message=canonical_messages, sizes=st.lists(st.integers(1, 50), min_size=1, max_size=10))
def test_bdat_round_trip(message: bytes, sizes: list[int]) -> None:
    proto = envelope()
    wire = b""
    rest = message
    for size in sizes:
        piece, rest = rest[:size], rest[size:]
        wire += b"BDAT %d\r\n" % len(piece) + piece
    wire += b"BDAT %d LAST\r\n" % len(rest) + rest
    exchanges = feed(proto, wire)
    assert content_of(exchanges) == message
    assert events_of(exchanges)[-1] == ev.EndOfData(len(message), received_fields(message))


# --- 3b. the bulk DATA decoder agrees with a line-by-line model ------------------------------


def reference_decode(data: bytes) -> tuple[bytes, bool, int]:
    """RFC 5321 §4.1.1.4 / §4.5.2 read one line at a time: (content, smuggling, consumed)."""
    out: list[bytes] = []
    previous_bare = smuggling = False
    pos = 0
    while True:
        eol = min(i for i in (data.find(b"\r", pos), data.find(b"\n", pos)) if i >= 0)
        terminator = b"\r\n" if data[eol : eol + 2] == b"\r\n" else data[eol : eol + 1]
        line, pos = data[pos:eol], eol + len(terminator)
        bare = terminator != b"\r\n"
        if line == b".":
            if not bare and not previous_bare:
                return b"".join(out), smuggling, pos
            smuggling = True
        elif not smuggling:
            out.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
        previous_bare = bare


soup = st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"x", b"..", b"\x00"]), max_size=40)


@SETTINGS
@given(pieces=soup, cuts=st.lists(st.integers(0, 200), max_size=8))
def test_dot_decoder_matches_the_line_model(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces) + b"\r\n.\r\n"
    expected_content, expected_smuggling, expected_consumed = reference_decode(data)
    decoder = DotDecoder()
    buffer = bytearray()
    content = b""
    consumed = 0
    points = sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]
    start = 0
    for point in points:
        buffer += data[start:point]
        start = max(start, point)
        result = decoder.decode(buffer)
        del buffer[: result.consumed]
        consumed += result.consumed
        content += result.output
        if result.ended:
            break
    assert (content, decoder.smuggling, consumed) == (
        expected_content,
        expected_smuggling,
        expected_consumed,
    )
    assert len(buffer) + (len(data) - start) == len(data) - consumed


# --- 4. the smuggling matrix -----------------------------------------------------------------

SMUGGLING_VARIANTS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\r\n",
    b"\r.\n",
    b"\r.\r",
    b"\n.\r",
    b"\r\n.\n",
    b"\r\n.\r",
    b"\r\n\x00.\r\n",
    b"\r\n.\r\r\n",
    b"\r\r\n.\r\r\n",
]
SPOOFED = (
    b"MAIL FROM:<spoof@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
    b"From: spoof@b.example\r\n\r\nspoofed\r\n.\r\n"
)


@SETTINGS
@given(
    body=canonical_messages,
    variant=st.sampled_from(SMUGGLING_VARIANTS),
    tail=st.sampled_from([b"", b"QUIT\r\n", b"NOOP\r\n"]),
    cuts=st.lists(st.integers(0, 5000), max_size=6),
)
def test_smuggling_matrix(body: bytes, variant: bytes, tail: bytes, cuts: list[int]) -> None:
    proto = envelope()
    feed(proto, b"DATA\r\n")
    wire = stuff(body) + b"end" + variant + SPOOFED + tail
    events = events_of(feed_in_pieces(proto, wire, cuts))
    spoofed_mail = [e for e in events if isinstance(e, ev.MailFrom) and "spoof" in e.address]
    first_end = next((e for e in events if isinstance(e, ev.EndOfData | ev.Invalid)), None)
    assert first_end is not None
    if variant != b"\r\n\x00.\r\n":
        assert first_end == ev.Invalid(replies.SMUGGLING_REJECTED)
    assert len([e for e in events if isinstance(e, ev.EndOfData)]) <= 1
    assert spoofed_mail == []
