"""Security catalogue §2.4, rows I1-I8 and I11, at the level of the protocol machine."""

from __future__ import annotations

import time
import tracemalloc
import zlib

import pytest

from mailpost.imap import commands as c
from mailpost.imap import events as ev
from mailpost.imap.protocol import IMAPServerProtocol, State
from mailpost.imap.responses import Continuation, Tagged

from .imap_helpers import one, run


def machine(**options: object) -> IMAPServerProtocol:
    return IMAPServerProtocol(**options)  # type: ignore[arg-type]


# --- I1: huge synchronising literals: no "+", no allocation ---------------------------------


@pytest.mark.parametrize("size", [4294967295, 9223372036854775807])
def test_i1_huge_append_literal_is_refused_before_the_continuation(size: int) -> None:
    proto = machine(authenticated=True)
    proto.receive_data(b"a APPEND INBOX {%d}\r\n" % size)
    event = proto.next_event()
    assert isinstance(event, ev.AppendMessage) and event.size == size
    wire = proto.reject_literal(Tagged("a", "NO", "too big", "TOOBIG"))
    assert wire == b"a NO [TOOBIG] too big\r\n"
    assert proto.buffered == 0 and proto.state is State.COMMAND


def test_i1_size_beyond_63_bits_is_bad() -> None:
    transcript = run(b"a APPEND INBOX {99999999999999999999}\r\nb NOOP\r\n")
    first = transcript.events[0]
    assert isinstance(first, ev.BadCommand) and first.tag == "a"
    assert transcript.events[1] == c.Noop("b")
    assert b"+" not in bytes(transcript.wire)


def test_i1_huge_login_literal_before_authentication() -> None:
    tracemalloc.start()
    try:
        transcript = run(b"a LOGIN {4294967295}\r\n", authenticated=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    first = transcript.events[0]
    assert isinstance(first, ev.BadCommand) and first.code == "TOOBIG"
    assert bytes(transcript.wire) == b"a BAD [TOOBIG] Literal too big\r\n"
    assert peak < 1_000_000


# --- I2: huge non-synchronising literals: BYE [TOOBIG] --------------------------------------


def test_i2_huge_non_sync_literal_closes_with_bye() -> None:
    transcript = run(b"a LOGIN {4294967295+}\r\n" + b"x" * 1000)
    assert isinstance(transcript.events[0], ev.Fatal)
    assert bytes(transcript.wire) == b"* BYE [TOOBIG] Literal too big\r\n"


def test_i2_literal_minus_refuses_non_sync_literals_over_4096() -> None:
    transcript = run(b"a APPEND INBOX {4294967295+}\r\n", literal_plus=False)
    assert isinstance(transcript.events[0], ev.Fatal)
    assert bytes(transcript.wire).startswith(b"* BYE [TOOBIG]")
    small = run(b"a APPEND INBOX {5000+}\r\n" + b"m" * 5000 + b"\r\nb NOOP\r\n",
                literal_plus=False)
    assert small.events[0].code == "TOOBIG"  # type: ignore[union-attr]
    assert small.events[1] == c.Noop("b")


# --- I3: LOGIN with literals, escapes, LOGINDISABLED, pre-auth budget -----------------------


def test_i3_login_with_two_synchronising_literals() -> None:
    proto = machine()
    proto.receive_data(b"a LOGIN {5}\r\n")
    assert proto.next_event() == ev.LiteralRequest("a", "LOGIN", 5)
    assert proto.accept_literal() == b"+ Ready\r\n"
    proto.receive_data(b"alice {6}\r\n")
    assert proto.next_event() == ev.LiteralRequest("a", "LOGIN", 6)
    proto.accept_literal()
    proto.receive_data(b"secret\r\n")
    assert proto.next_event() == c.Login("a", "alice", "secret")
    assert one(b'a LOGIN "al\\"ice" "se\\\\cret"\r\n', authenticated=False) == (
        c.Login("a", 'al"ice', "se\\cret")
    )


def test_i3_logindisabled_refuses_the_literal_without_continuation() -> None:
    proto = machine()
    proto.receive_data(b"a LOGIN {5}\r\n")
    proto.next_event()
    wire = proto.reject_literal(Tagged("a", "NO", "TLS first", "PRIVACYREQUIRED"))
    assert wire == b"a NO [PRIVACYREQUIRED] TLS first\r\n"


def test_i3_literals_count_towards_the_preauth_command_budget() -> None:
    stream = b"a LOGIN {8192+}\r\n" + b"u" * 8192 + b" {8192+}\r\n" + b"p" * 8192 + b"\r\n"
    first = run(stream, authenticated=False).events[0]
    assert isinstance(first, ev.BadCommand) and first.code == "TOOBIG"


# --- I4: nesting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"a NOOP " + b"(" * 4000 + b")" * 4000,
        b"a NOOP " + b"(" * 4000,
        b"a SEARCH " + b"NOT " * 10000 + b"ALL",
        b"a SEARCH " + b"OR " * 10000 + b"ALL",
        b"a SEARCH " + b"(" * 4000 + b"ALL" + b")" * 4000,
        b"a SEARCH " + b"(" * 4000,
        b'a LIST "" ' + b"(" * 4000,
    ],
)
def test_i4_deep_nesting_is_bad_and_fast(line: bytes) -> None:
    started = time.perf_counter()
    event = one(line + b"\r\n")
    assert isinstance(event, ev.BadCommand) and event.tag == "a"
    assert time.perf_counter() - started < 1.0


def test_i4_preauth_nesting_is_one_level() -> None:
    assert isinstance(one(b"a SEARCH NOT NOT ALL\r\n", authenticated=False), ev.BadCommand)


def test_i4_unterminated_line_holds_bounded_memory() -> None:
    proto = machine(authenticated=True)
    for _ in range(50):
        proto.receive_data(b"(" * 100_000)
        assert proto.next_event() is ev.NEED_DATA
        assert proto.buffered <= 100_000 + 65536


# --- I5: over-long lines ---------------------------------------------------------------------


def test_i5_hundred_megabyte_line_is_dropped_as_it_arrives() -> None:
    proto = machine(authenticated=True)
    proto.receive_data(b"a1 FETCH ")
    chunk = b"1" * 1_000_000
    for _ in range(100):
        proto.receive_data(chunk)
        assert proto.next_event() is ev.NEED_DATA
        assert proto.buffered < 1_100_000
    proto.receive_data(b"\r\nb NOOP\r\n")
    event = proto.next_event()
    assert isinstance(event, ev.BadCommand) and event.tag == "a1" and event.code == "LIMIT"
    proto.send(event.response)
    assert proto.next_event() == c.Noop("b")


def test_i5_one_megabyte_line_and_the_preauth_cap() -> None:
    line = b"a NOOP " + b"x" * 1_000_000 + b"\r\n"
    assert one(line).code == "LIMIT"  # type: ignore[union-attr]
    assert one(b"a LOGIN " + b"x" * 8200 + b" y\r\n", authenticated=False).code == "LIMIT"  # type: ignore[union-attr]
    accepted = one(b"a LOGIN " + b"x" * 8000 + b" y\r\n", authenticated=False)
    assert isinstance(accepted, c.Login)


def test_i5_over_long_line_ending_in_a_non_sync_literal_skips_the_literal() -> None:
    stream = b"a LOGIN " + b"x" * 70000 + b" {5+}\r\nhello\r\nb NOOP\r\n"
    events = run(stream).events
    assert isinstance(events[0], ev.BadCommand) and events[0].tag == "a"
    assert events[1] == c.Noop("b")


# --- I6: sequence numbers --------------------------------------------------------------------


@pytest.mark.parametrize("line", [b"a FETCH 0 FLAGS", b"a FETCH 4294967296 FLAGS",
                                  b"a UID FETCH 0:5 FLAGS", b"a FETCH 1:99999999999 FLAGS"])
def test_i6_numbers_outside_32_bits_are_bad(line: bytes) -> None:
    assert isinstance(one(line + b"\r\n"), ev.BadCommand)


def test_i6_wide_and_repetitive_sets_parse_cheaply() -> None:
    event = one(b"a UID FETCH 1:4294967295 FLAGS\r\n")
    assert isinstance(event, c.Fetch)
    assert event.sequence_set.select_by_uid([1, 10]) == [(1, 1), (2, 10)]
    repeats = b",".join([b"1"] * 100_000)
    started = time.perf_counter()
    event = one(b"a FETCH " + repeats + b" FLAGS\r\n", max_line_length=300_000,
                max_command_size=300_000)
    assert isinstance(event, c.Fetch)
    assert event.sequence_set.select_by_msn([7]) == [(1, 7)]
    assert time.perf_counter() - started < 2.0
    assert isinstance(one(b"a FETCH " + repeats + b" FLAGS\r\n"), ev.BadCommand)  # 64 KiB cap


# --- I7: mailbox names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "decoded"),
    [
        (b"../x", "../x"), (b"/etc/passwd", "/etc/passwd"), (b"a/../../b", "a/../../b"),
        (b"INBOX/..", "INBOX/.."), (b".", "."), (b'""', ""), (b"a//b", "a//b"),
        (b"inbox", "INBOX"), (b"InBoX", "INBOX"), (b"&-", "&"), (b'"x" ', None),
    ],
)
def test_i7_names_are_parsed_verbatim_never_interpreted(name: bytes, decoded: str | None) -> None:
    event = one(b"a CREATE " + name + b"\r\n")
    if decoded is None:
        assert isinstance(event, ev.BadCommand)
    else:
        assert event == c.Create("a", decoded)


@pytest.mark.parametrize(
    "name",
    [b"{3}\r\na\x00b", b"{3}\r\na\rb", b"{3}\r\na\nb", b"&", b"&Jjo!", b"&AGEAYgBj-", b"&U/BTFw-",
     b"&AAA-", b"&AB8-", "caf\u00e9".encode(), b'"caf\xc3"'],
)
def test_i7_bad_names_are_rejected(name: bytes) -> None:
    assert isinstance(one(b"a CREATE " + name + b"\r\n"), ev.BadCommand)


def test_i7_long_names_parse_and_are_left_to_the_session() -> None:
    event = one(b"a CREATE " + b"n" * 10_000 + b"\r\n")
    assert isinstance(event, c.Create) and len(event.mailbox) == 10_000


# --- I8: NUL ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b'a LOGIN "a\x00" b', b"a LOGIN {2}\r\na\x00 b", b'a SEARCH TEXT "\x00"',
     b"a APPEND INBOX {2}\r\na\x00"],
)
def test_i8_nul_is_bad(line: bytes) -> None:
    events = run(line + b"\r\n", authenticated=False).events
    assert any(isinstance(e, ev.BadCommand) for e in events)
    assert not any(isinstance(e, (c.Login, c.Search, ev.AppendDone)) for e in events)


def test_i8_nul_is_allowed_in_literal8_appends() -> None:
    events = run(b"a APPEND INBOX ~{2}\r\na\x00\r\n").events
    assert events[1] == ev.AppendData("a", b"a\x00")
    assert events[2] == ev.AppendDone("a", "INBOX", 1)


# --- I11: a compression bomb is bounded by the line cap on inflated octets -------------------


def test_i11_compression_bomb_is_one_bad_line_with_bounded_buffering() -> None:
    proto = machine(authenticated=True)
    proto.receive_data(b"a COMPRESS DEFLATE\r\n")
    assert proto.next_event() == c.Compress("a", "DEFLATE")
    proto.send(Tagged("a", "OK", "DEFLATE active"))
    compressor = zlib.compressobj(wbits=-15)
    bomb = compressor.compress(b"b NOOP " + b"a" * 50_000_000 + b"\r\nc NOOP\r\n")
    bomb += compressor.flush()
    assert len(bomb) < 100_000
    inflater = zlib.decompressobj(wbits=-15)
    pending = proto.take_unconsumed() + bomb
    events: list[object] = []
    while pending or inflater.unconsumed_tail:
        # What the session does: inflate in bounded steps, feed, drain to NEED_DATA.
        data = inflater.decompress(inflater.unconsumed_tail or pending, 65536)
        pending = b""
        proto.receive_data(data)
        while (event := proto.next_event()) not in (ev.NEED_DATA, ev.PAUSED):
            events.append(event)
            if isinstance(event, ev.BadCommand):
                proto.send(event.response)
            elif isinstance(event, c.Noop):
                proto.send(Tagged(event.tag, "OK"))
        assert proto.buffered <= 65536 * 2
    assert events[0] == ev.BadCommand("b", "Line too long", "LIMIT")
    assert events[1:] == [c.Noop("c")]


def test_continuations_to_commands_are_checked() -> None:
    proto = machine(authenticated=True)
    proto.receive_data(b"a NOOP\r\n")
    proto.next_event()
    with pytest.raises(Exception, match="continuation"):
        proto.send(Continuation("no"))
