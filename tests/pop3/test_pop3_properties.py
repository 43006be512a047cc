"""Property tests for the POP3 core (hypothesis).

1. Any split of a byte stream into reads yields the same events and the same output bytes.
2. Random bytes never raise, never grow the buffer past its bound, and before login (no TLS)
   give nothing but -ERR, CAPA, STLS or QUIT.
3. RETR dot-stuffing round-trips: a client that unstuffs the response gets the message back
   (CRLF-canonical), whatever the chunking; the terminator appears only at the end.
4. TOP equals a line-by-line reference implementation.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailpost.pop3 import events as ev
from mailpost.pop3.body import BodyEncoder
from mailpost.pop3.protocol import POP3ServerProtocol
from mailpost.pop3.replies import Continuation, Reply
from mailpost.smtp.lines import AUTH_LINE_LIMIT
from tests.pop3.transcript import Exchange, feed, standard_reply

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def answer(proto: POP3ServerProtocol, event: ev.Event) -> Reply | Continuation:
    """A deterministic peer that keeps the stream in plaintext (STLS refused)."""
    if isinstance(event, ev.Stls):
        return Reply(False, "no TLS today")
    return standard_reply(proto, event)


def feed_in_pieces(proto: POP3ServerProtocol, data: bytes, cuts: list[int]) -> list[Exchange]:
    exchanges: list[Exchange] = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        if cut > start:
            exchanges += feed(proto, data[start:cut], answer)
            start = cut
        if exchanges and isinstance(exchanges[-1].event, ev.ConnectionClosed):
            break  # the session is over: nothing more is read
    return exchanges


COMMANDS = st.sampled_from([
    b"CAPA", b"USER alice", b"PASS secret word", b"AUTH PLAIN", b"AUTH PLAIN AGEAYg==", b"*",
    b"AGEAYg==", b"STAT", b"LIST", b"LIST 1", b"UIDL", b"UIDL 2", b"RETR 1", b"TOP 1 2",
    b"DELE 1", b"RSET", b"NOOP", b"STLS", b"APOP a b", b"RETR -1", b"FOO", b"", b"QUIT",
    b"X" * 300, b"STAT\n", b"\x00",
])
SESSIONS = st.lists(COMMANDS, max_size=20).map(
    lambda lines: b"".join(line if line.endswith(b"\n") else line + b"\r\n" for line in lines))


@SETTINGS
@given(SESSIONS, st.lists(st.integers(min_value=0), max_size=8), st.booleans())
def test_chunking_does_not_change_events_or_output(data: bytes, cuts: list[int],
                                                    insecure: bool) -> None:
    whole = feed_in_pieces(POP3ServerProtocol(allow_insecure_auth=insecure), data, [])
    pieces = feed_in_pieces(POP3ServerProtocol(allow_insecure_auth=insecure), data, cuts)
    assert [x.event for x in pieces] == [x.event for x in whole]
    assert b"".join(x.wire for x in pieces) == b"".join(x.wire for x in whole)


@SETTINGS
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0), max_size=8))
def test_random_bytes_before_login_only_get_err(data: bytes, cuts: list[int]) -> None:
    proto = POP3ServerProtocol()
    for exchange in feed_in_pieces(proto, data, cuts):
        assert proto.buffered <= AUTH_LINE_LIMIT
        event = exchange.event
        if isinstance(event, ev.Invalid):
            assert exchange.wire.startswith(b"-ERR ")
        else:
            assert isinstance(event, ev.Capa | ev.Stls | ev.Quit | ev.ConnectionClosed)
    feed(proto, b"", answer)  # EOF never raises either


@SETTINGS
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0), max_size=8))
def test_random_bytes_after_login_never_raise(data: bytes, cuts: list[int]) -> None:
    proto = POP3ServerProtocol(tls_active=True, max_errors=1000)
    feed(proto, b"USER a\r\nPASS b\r\n", answer)
    for exchange in feed_in_pieces(proto, data, cuts):
        assert proto.buffered <= AUTH_LINE_LIMIT
        assert re.match(rb"(\+OK|-ERR)( |\r\n)", exchange.wire) or isinstance(
            exchange.event, ev.ConnectionClosed)


# --- bodies ---------------------------------------------------------------------------------------

LINES = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                 max_size=25)
MESSAGES = st.builds(lambda lines, end: b"\r\n".join(lines) + end, LINES,
                     st.sampled_from([b"", b"\r\n"]))


def encode(message: bytes, body_lines: int | None, cuts: list[int]) -> bytes:
    encoder = BodyEncoder(body_lines)
    out, start = [], 0
    for cut in [*sorted({c % (len(message) + 1) for c in cuts}), len(message)]:
        out.append(encoder.feed(message[start:cut]))
        start = cut
    return b"".join(out) + encoder.finish()


def unstuff(wire: bytes) -> bytes:
    """What a client does (RFC 1939 §3): read lines up to ".", drop one leading dot."""
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    lines = wire.split(b"\r\n")[:-2]  # drop the terminator line and the empty tail
    for line in lines:
        assert line != b".", "a terminator inside the body"
        assert b"\r" not in line and b"\n" not in line, "a bare CR or LF"
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


@SETTINGS
@given(MESSAGES, st.lists(st.integers(min_value=0), max_size=10))
def test_dot_stuffing_round_trip(message: bytes, cuts: list[int]) -> None:
    expected = message if not message or message.endswith(b"\r\n") else message + b"\r\n"
    assert unstuff(encode(message, None, cuts)) == expected


@SETTINGS
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=10))
def test_any_bytes_encode_to_clean_lines(message: bytes, cuts: list[int]) -> None:
    wire = encode(message, None, cuts)
    canonical = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    expected = canonical if not canonical or canonical.endswith(b"\r\n") else canonical + b"\r\n"
    assert unstuff(wire) == expected
    assert wire == encode(message, None, [])


def reference_top(message: bytes, count: int) -> bytes:
    lines = message.split(b"\r\n") if message else []
    if message.endswith(b"\r\n"):
        lines = lines[:-1]
    out: list[bytes] = []
    body_seen = None
    for line in lines:
        if body_seen is None:
            out.append(line)
            if line == b"":
                body_seen = 0
        elif body_seen < count:
            out.append(line)
            body_seen += 1
    return b"".join(line + b"\r\n" for line in out)


@SETTINGS
@given(MESSAGES, st.integers(min_value=0, max_value=30),
       st.lists(st.integers(min_value=0), max_size=10))
def test_top_matches_a_reference(message: bytes, count: int, cuts: list[int]) -> None:
    assert unstuff(encode(message, count, cuts)) == reference_top(message, count)
