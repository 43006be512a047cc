"""Literals (RFC 9051 §4.3, §7.6; RFC 7888 LITERAL+/LITERAL-) and streamed APPEND."""

from __future__ import annotations

import datetime as dt

import pytest

from mailpost.imap import commands as c
from mailpost.imap import events as ev
from mailpost.imap.errors import LocalProtocolError
from mailpost.imap.protocol import IMAPServerProtocol, State
from mailpost.imap.responses import Bye, Tagged
from mailpost.imap.search import TextKey

from .imap_helpers import run, split_every


def machine(**options: object) -> IMAPServerProtocol:
    options.setdefault("authenticated", True)
    return IMAPServerProtocol(**options)  # type: ignore[arg-type]


# --- synchronising literals -----------------------------------------------------------------


def test_sync_literal_waits_for_the_decision_and_continues_after_plus() -> None:
    proto = machine(authenticated=False)
    proto.receive_data(b"a LOGIN {5}\r\n")
    request = proto.next_event()
    assert request == ev.LiteralRequest("a", "LOGIN", 5)
    assert proto.next_event() is ev.PAUSED
    assert proto.accept_literal() == b"+ Ready\r\n"
    assert proto.next_event() is ev.NEED_DATA
    for piece in (b"al", b"ice", b" {6}\r", b"\n"):
        proto.receive_data(piece)
        event = proto.next_event()
    assert event == ev.LiteralRequest("a", "LOGIN", 6)
    proto.accept_literal("go ahead")
    proto.receive_data(b"secret\r\n")
    assert proto.next_event() == c.Login("a", "alice", "secret")


def test_a_line_split_anywhere_still_announces_one_literal() -> None:
    stream = b"a SEARCH TEXT {3}\r\nabc\r\n"
    for size in (1, 2, 3, 7):
        transcript = run(split_every(stream, size))
        assert transcript.events[:2] == [
            ev.LiteralRequest("a", "SEARCH", 3),
            c.Search("a", TextKey("TEXT", "abc")),
        ]


def test_rejected_sync_literal_drops_the_command_without_a_continuation() -> None:
    transcript = run(b"a LOGIN {5}\r\nb NOOP\r\n", accept=lambda e: False)
    assert transcript.events[:2] == [ev.LiteralRequest("a", "LOGIN", 5), c.Noop("b")]
    assert b"+" not in bytes(transcript.wire)
    assert bytes(transcript.wire).startswith(b"a NO refused\r\n")


def test_send_is_refused_while_a_literal_decision_is_pending() -> None:
    proto = machine()
    proto.receive_data(b"a LOGIN {5}\r\n")
    proto.next_event()
    with pytest.raises(LocalProtocolError):
        proto.send(Tagged("a", "NO", "use reject_literal"))
    with pytest.raises(LocalProtocolError):
        proto.reject_literal(Tagged("b", "NO", "wrong tag"))
    proto.reject_literal(Tagged("a", "NO", "no"))
    with pytest.raises(LocalProtocolError):
        proto.accept_literal()


def test_quoted_string_ending_in_a_brace_is_not_a_literal() -> None:
    # RFC 7888 §3 checks the end of the line, but only outside quoted strings.
    event = run(b'a LOGIN user "pass {3}"\r\n').events[0]
    assert event == c.Login("a", "user", "pass {3}")
    bad = run(b'a LOGIN user "pass {3}\r\n').events[0]
    assert isinstance(bad, ev.BadCommand)


def test_zero_length_literals() -> None:
    transcript = run(b"a LOGIN {0}\r\n {0+}\r\n\r\n")
    assert transcript.commands() == [c.Login("a", "", "")]


# --- non-synchronising literals (LITERAL+ / LITERAL-) ---------------------------------------


def test_non_sync_literal_needs_no_decision() -> None:
    transcript = run(b"a LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n")
    assert transcript.events[0] == c.Login("a", "alice", "secret")
    assert not transcript.of(ev.LiteralRequest)


def test_literal_minus_refuses_big_non_sync_literals_and_skips_them() -> None:
    big = b"x" * 4097
    stream = b"a LOGIN {4097+}\r\n" + big + b" {1+}\r\ny\r\nb NOOP\r\n"
    transcript = run(stream, literal_plus=False)
    first = transcript.events[0]
    assert isinstance(first, ev.BadCommand) and first.code == "TOOBIG" and first.tag == "a"
    assert transcript.events[1] == c.Noop("b")
    ok = run(b"a LOGIN {4096+}\r\n" + b"x" * 4096 + b" p\r\n", literal_plus=False)
    assert ok.commands() == [c.Login("a", "x" * 4096, "p")]


def test_literal_over_the_size_limit_is_refused_without_continuation() -> None:
    transcript = run(b"a LOGIN {70000}\r\nb NOOP\r\n")
    first = transcript.events[0]
    assert isinstance(first, ev.BadCommand) and first.code == "TOOBIG"
    assert transcript.events[1] == c.Noop("b")
    assert b"+ " not in bytes(transcript.wire)


def test_non_sync_literal_over_the_limit_is_skipped_with_the_rest_of_the_command() -> None:
    stream = b"a LOGIN {70000+}\r\n" + b"z" * 70000 + b" {3+}\r\nabc\r\nb NOOP\r\n"
    transcript = run(split_every(stream, 4096))
    assert [type(e) for e in transcript.events[:2]] == [ev.BadCommand, c.Noop]
    assert transcript.protocol is not None and transcript.protocol.buffered == 0


def test_non_sync_literal_too_big_to_skip_is_fatal() -> None:
    transcript = run(b"a LOGIN {2000000+}\r\n" + b"z" * 100)
    fatal = transcript.events[0]
    assert isinstance(fatal, ev.Fatal)
    assert bytes(transcript.wire) == b"* BYE [TOOBIG] Literal too big\r\n"
    assert transcript.protocol is not None and transcript.protocol.state is State.CLOSED


def test_literal8_is_only_allowed_in_append() -> None:
    transcript = run(b"a LOGIN ~{3}\r\nb NOOP\r\n")
    assert isinstance(transcript.events[0], ev.BadCommand)  # refused before any "+"
    assert transcript.events[1] == c.Noop("b")
    skipped = run(b"a LOGIN ~{3+}\r\nabc def\r\nb NOOP\r\n").events
    assert isinstance(skipped[0], ev.BadCommand) and skipped[1] == c.Noop("b")


def test_nul_in_a_literal_is_bad() -> None:
    event = run(b"a LOGIN {3+}\r\na\x00c def\r\n").events[0]
    assert isinstance(event, ev.BadCommand) and "NUL" in event.text


def test_too_many_literals_in_one_command() -> None:
    stream = b"a ID (" + b"".join(b"{1+}\r\nk {1+}\r\nv " for _ in range(600)) + b")\r\n"
    event = run(stream).events[0]
    assert isinstance(event, ev.BadCommand) and event.code == "LIMIT"


# --- APPEND, streamed -----------------------------------------------------------------------

MESSAGE = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.edu.example\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)


def test_rfc_9051_append_example_streams_the_message() -> None:
    assert len(MESSAGE) == 326  # the octet count of the RFC 9051 §6.3.12 example
    stream = b"A003 APPEND saved-messages (\\Seen) {326}\r\n" + MESSAGE + b"\r\n"
    for size in (1, 17, 4096):
        transcript = run(split_every(stream, size))
        assert transcript.events[:3] == [
            ev.AppendMessage("A003", "saved-messages", ("\\Seen",), None, 326, True),
            ev.AppendData("A003", MESSAGE),
            ev.AppendDone("A003", "saved-messages", 1),
        ]


def test_append_never_holds_the_whole_message() -> None:
    proto = machine()
    proto.receive_data(b"a APPEND INBOX {5000000}\r\n")
    assert isinstance(proto.next_event(), ev.AppendMessage)
    proto.accept_literal()
    received = 0
    chunk = b"m" * 65536
    while received < 5_000_000:
        piece = chunk[: min(len(chunk), 5_000_000 - received)]
        proto.receive_data(piece)
        event = proto.next_event()
        assert isinstance(event, ev.AppendData) and event.data == piece
        assert proto.buffered == 0
        received += len(piece)
    proto.receive_data(b"\r\n")
    assert proto.next_event() == ev.AppendDone("a", "INBOX", 1)


def test_multiappend_with_dates_flags_and_a_mailbox_literal() -> None:
    stream = (
        b'a APPEND {5}\r\nDraft (\\Draft $X) "20-Mar-2018 03:07:37 +1100" {3}\r\nabc'
        b' "05-Feb-2024 10:00:00 -0000" {2+}\r\nde ~{3}\r\n\x00\x01\x02\r\n'
    )
    events = run(stream).events
    tz = dt.timezone(dt.timedelta(hours=11))
    assert events == [
        ev.LiteralRequest("a", "APPEND", 5),
        ev.AppendMessage("a", "Draft", ("\\Draft", "$X"),
                         dt.datetime(2018, 3, 20, 3, 7, 37, tzinfo=tz), 3, True, index=0),
        ev.AppendData("a", b"abc"),
        ev.AppendMessage("a", "Draft", (), dt.datetime(2024, 2, 5, 10, tzinfo=dt.UTC),
                         2, False, index=1),
        ev.AppendData("a", b"de"),
        ev.AppendMessage("a", "Draft", (), None, 3, True, binary=True, index=2),
        ev.AppendData("a", b"\x00\x01\x02"),
        ev.AppendDone("a", "Draft", 3),
        ev.ConnectionClosed(),
    ]


def test_append_utf8_data_item() -> None:
    # RFC 6855 §4: append-data =/ "UTF8" SP "(" literal8 ")"
    events = run("a APPEND INBOX UTF8 (~{7}\r\nSubj é)\r\n".encode()).events
    assert events[0] == ev.AppendMessage("a", "INBOX", (), None, 7, True, binary=True, utf8=True)
    assert events[1] == ev.AppendData("a", "Subj é".encode())
    assert events[2] == ev.AppendDone("a", "INBOX", 1)
    missing_paren = run(b"a APPEND INBOX UTF8 (~{1}\r\nx\r\n").events
    assert isinstance(missing_paren[2], ev.BadCommand)
    not_literal8 = run(b"a APPEND INBOX UTF8 ({1}\r\nx)\r\n").events
    assert isinstance(not_literal8[0], ev.BadCommand)


def test_nul_in_a_plain_append_literal_is_bad_after_the_data() -> None:
    events = run(b"a APPEND INBOX {3}\r\na\x00c\r\nb NOOP\r\n").events
    assert isinstance(events[2], ev.BadCommand) and events[2].tag == "a"
    assert events[3] == c.Noop("b")


def test_garbage_after_the_message_is_bad() -> None:
    events = run(b"a APPEND INBOX {3}\r\nabc junk\r\nb NOOP\r\n").events
    assert isinstance(events[2], ev.BadCommand)
    assert events[3] == c.Noop("b")


def test_rejected_sync_append_sends_no_continuation() -> None:
    transcript = run(b"a APPEND INBOX {4294967295}\r\nb NOOP\r\n", accept=lambda e: False)
    assert transcript.events[0] == ev.AppendMessage("a", "INBOX", (), None, 4294967295, True)
    assert transcript.events[1] == c.Noop("b")
    assert b"+" not in bytes(transcript.wire)


def test_rejected_non_sync_append_is_skipped() -> None:
    stream = b"a APPEND INBOX {10+}\r\n0123456789 {2+}\r\nxy\r\nb NOOP\r\n"
    transcript = run(split_every(stream, 3), accept=lambda e: False)
    assert [type(e) for e in transcript.events[:2]] == [ev.AppendMessage, c.Noop]
    assert not transcript.of(ev.AppendData)


def test_rejected_huge_non_sync_append_closes_with_bye() -> None:
    proto = machine()
    proto.receive_data(b"a APPEND INBOX {4294967295+}\r\n")
    assert isinstance(proto.next_event(), ev.AppendMessage)
    wire = proto.reject_literal(Tagged("a", "NO", "too big", "TOOBIG"))
    assert wire == b"a NO [TOOBIG] too big\r\n* BYE [TOOBIG] Literal too big to skip\r\n"
    assert proto.state is State.CLOSED


def test_reject_with_bye_closes() -> None:
    proto = machine()
    proto.receive_data(b"a APPEND INBOX {10}\r\n")
    proto.next_event()
    assert proto.reject_literal(Bye("shutting down")) == b"* BYE shutting down\r\n"
    assert proto.state is State.CLOSED


def test_append_before_authentication_is_capped_at_the_preauth_literal_size() -> None:
    transcript = run(b"a APPEND INBOX {9000}\r\n", authenticated=False)
    first = transcript.events[0]
    assert isinstance(first, ev.BadCommand) and first.code == "TOOBIG"
    small = run(b"a APPEND INBOX {3}\r\nabc\r\n", authenticated=False)
    assert isinstance(small.events[0], ev.AppendMessage)
