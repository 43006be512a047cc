"""The SMTP protocol machine: greeting, commands, sequence, syntax, limits and reply handling."""

from __future__ import annotations

import pytest

from mailpost.smtp import events as ev
from mailpost.smtp import replies
from mailpost.smtp.protocol import NEED_DATA, PAUSED, LocalProtocolError, SMTPServerProtocol, State
from mailpost.smtp.replies import Reply
from mailpost.smtp.transcript import codes_of, events_of, feed

BANNER = Reply.make(220, None, "mx.example.test ESMTP")


def state_of(proto: SMTPServerProtocol) -> State:
    """Read the state through a call, so that type narrowing does not stick across steps."""
    return proto.state


def ready(**limits: int) -> SMTPServerProtocol:
    proto = SMTPServerProtocol(**limits)  # type: ignore[arg-type]
    proto.greeting(BANNER)
    return proto


def greeted(**limits: int) -> SMTPServerProtocol:
    proto = ready(**limits)
    assert codes_of(feed(proto, b"EHLO client.example\r\n")) == [250]
    return proto


def replies_to(proto: SMTPServerProtocol, data: bytes) -> list[tuple[int, str | None]]:
    return [(x.reply.code, x.reply.enhanced) for x in feed(proto, data) if x.reply]


# --- greeting --------------------------------------------------------------------------------


def test_greeting_serialises_and_opens_the_command_state() -> None:
    proto = SMTPServerProtocol()
    assert state_of(proto) is State.GREETING
    assert proto.greeting(BANNER) == b"220 mx.example.test ESMTP\r\n"
    assert state_of(proto) is State.COMMAND


def test_second_greeting_is_a_local_error() -> None:
    proto = ready()
    with pytest.raises(LocalProtocolError):
        proto.greeting(BANNER)


def test_greeting_must_be_220_or_a_refusal() -> None:
    with pytest.raises(LocalProtocolError):
        SMTPServerProtocol().greeting(replies.OK)


def test_client_talking_before_the_greeting_is_held_and_flagged() -> None:
    proto = SMTPServerProtocol()
    proto.receive_data(b"EHLO early\r\n")
    assert proto.next_event() is PAUSED
    assert proto.spoke_before_greeting
    proto.greeting(BANNER)
    assert proto.next_event() == ev.Hello("early", True)


def test_554_greeting_accepts_only_quit() -> None:
    """RFC 5321 §3.1: after a 554 banner, 503 to everything until QUIT."""
    proto = SMTPServerProtocol()
    proto.greeting(Reply.make(554, "5.3.2", "No service"))
    assert state_of(proto) is State.REFUSED
    assert replies_to(proto, b"EHLO x\r\nMAIL FROM:<a@b>\r\nBOGUS\r\n") == [(503, "5.5.1")] * 3
    exchanges = feed(proto, b"QUIT\r\n")
    assert events_of(exchanges) == [ev.Quit(), ev.ConnectionClosed()]
    assert state_of(proto) is State.CLOSED


def test_421_greeting_closes() -> None:
    proto = SMTPServerProtocol()
    proto.greeting(replies.SERVICE_CLOSING)
    proto.receive_data(b"EHLO x\r\n")
    assert proto.next_event() == ev.ConnectionClosed()


# --- HELO / EHLO -----------------------------------------------------------------------------


def test_helo_and_ehlo_events_and_case_insensitive_verbs() -> None:
    proto = ready()
    assert events_of(feed(proto, b"helo a.example\r\n")) == [ev.Hello("a.example", False)]
    assert proto.hello == ev.Hello("a.example", False)
    assert events_of(feed(proto, b"EhLo b.example\r\n")) == [ev.Hello("b.example", True)]
    assert proto.hello == ev.Hello("b.example", True)


@pytest.mark.parametrize("line", [b"EHLO\r\n", b"EHLO \r\n", b"HELO a b\r\n"])
def test_hello_needs_exactly_one_argument(line: bytes) -> None:
    assert replies_to(ready(), line) == [(501, "5.5.4")]


def test_refused_hello_keeps_the_previous_one() -> None:
    proto = greeted()
    feed(proto, b"EHLO bad.example\r\n", lambda e: Reply.make(550, "5.7.1", "no"))
    assert proto.hello == ev.Hello("client.example", True)


def test_ehlo_resets_the_transaction() -> None:
    """RFC 5321 §4.1.4: a later EHLO acts as RSET."""
    proto = greeted()
    feed(proto, b"MAIL FROM:<a@b.example>\r\n")
    assert proto.in_transaction
    feed(proto, b"EHLO again.example\r\n")
    assert not proto.in_transaction


# --- MAIL / RCPT / DATA sequence -------------------------------------------------------------


def test_mail_requires_hello() -> None:
    assert replies_to(ready(), b"MAIL FROM:<a@b.example>\r\n") == [(503, "5.5.1")]


def test_rcpt_requires_mail_and_data_requires_rcpt() -> None:
    proto = greeted()
    assert replies_to(proto, b"RCPT TO:<a@b.example>\r\nDATA\r\n") == [(503, "5.5.1")] * 2
    feed(proto, b"MAIL FROM:<a@b.example>\r\n")
    assert replies_to(proto, b"DATA\r\n") == [(503, "5.5.1")]


def test_nested_mail_is_a_bad_sequence() -> None:
    proto = greeted()
    assert replies_to(proto, b"MAIL FROM:<a@b.example>\r\nMAIL FROM:<c@d.example>\r\n") == [
        (250, "2.1.0"),
        (503, "5.5.1"),
    ]


def test_refused_mail_opens_no_transaction() -> None:
    proto = greeted()
    feed(proto, b"MAIL FROM:<a@b.example>\r\n", lambda e: Reply.make(550, "5.7.1", "no"))
    assert not proto.in_transaction
    assert replies_to(proto, b"RCPT TO:<c@d.example>\r\n") == [(503, "5.5.1")]


def test_refused_recipients_do_not_count() -> None:
    proto = greeted()
    feed(proto, b"MAIL FROM:<a@b.example>\r\n")
    unknown = Reply.make(550, "5.1.1", "unknown")
    feed(proto, b"RCPT TO:<x@b.example>\r\n", lambda e: unknown)
    assert proto.recipient_count == 0
    assert replies_to(proto, b"DATA\r\n") == [(503, "5.5.1")]
    feed(proto, b"RCPT TO:<y@b.example>\r\n")
    assert proto.recipient_count == 1
    assert events_of(feed(proto, b"DATA\r\n")) == [ev.Data()]


@pytest.mark.parametrize(
    ("line", "address"),
    [
        (b"MAIL FROM:<a@b.example>", "a@b.example"),
        (b"MAIL FROM: <a@b.example>", "a@b.example"),
        (b"MAIL FROM:a@b.example", "a@b.example"),
        (b"mail from:<Joe.User@MAIL.Example>", "Joe.User@mail.example"),
        (b"MAIL FROM:<>", ""),
        (b'MAIL FROM:<"joe"@b.example>', "joe@b.example"),
        (b'MAIL FROM:<"a b"@b.example>', '"a b"@b.example'),
    ],
)
def test_mail_from_forms(line: bytes, address: str) -> None:
    proto = greeted()
    [event] = events_of(feed(proto, line + b"\r\n"))
    assert isinstance(event, ev.MailFrom)
    assert event.address == address
    assert proto.mail_from == event


@pytest.mark.parametrize(
    "line",
    [
        b"MAIL FROM<a@b.example>",
        b"MAIL TO:<a@b.example>",
        b"MAIL FROM:<a@b.example",
        b"MAIL FROM:<a b@c.example>",
        b"MAIL FROM:<a@-bad.example>",
        b"MAIL FROM:<postmaster>",
        b"MAIL FROM:",
    ],
)
def test_malformed_sender_is_501_5_1_7(line: bytes) -> None:
    assert replies_to(greeted(), line + b"\r\n") == [(501, "5.1.7")]


@pytest.mark.parametrize(
    "line", [b"RCPT TO:<>", b"RCPT TO:<a@>", b"RCPT FROM:<a@b.example>", b"RCPT TO:<@x:>"]
)
def test_malformed_recipient_is_501_5_1_3(line: bytes) -> None:
    proto = greeted()
    feed(proto, b"MAIL FROM:<a@b.example>\r\n")
    assert replies_to(proto, line + b"\r\n") == [(501, "5.1.3")]


def test_rcpt_postmaster_without_domain_and_parsed_path() -> None:
    proto = greeted()
    feed(proto, b"MAIL FROM:<>\r\n")
    [event] = events_of(feed(proto, b"RCPT TO:<PostMaster>\r\n"))
    assert isinstance(event, ev.RcptTo)
    assert event.address == "postmaster"
    [routed] = events_of(feed(proto, b"RCPT TO:<@relay.example:u@dest.example>\r\n"))
    assert isinstance(routed, ev.RcptTo)
    assert routed.address == "u@dest.example"
    assert routed.path.source_route == ("relay.example",)
    assert routed.path.routing_trick


def test_mail_and_rcpt_parameters_reach_the_events() -> None:
    proto = greeted()
    [mail] = events_of(
        feed(proto, b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8bitmime RET=HDRS ENVID=x+2By\r\n")
    )
    assert isinstance(mail, ev.MailFrom)
    assert mail.params == ev.MailParams(size=1000, body="8BITMIME", ret="HDRS", envid="x+y")
    [rcpt] = events_of(
        feed(proto, b"RCPT TO:<c@d.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@d.example\r\n")
    )
    assert isinstance(rcpt, ev.RcptTo)
    assert rcpt.params == ev.RcptParams(("SUCCESS", "FAILURE"), "rfc822;c@d.example")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (b"FOO=1", (555, "5.5.4")),
        (b"SIZE=1 SIZE=2", (501, "5.5.4")),
        (b"SIZE=abc", (501, "5.5.4")),
        (b"ENVID=a+0D+0Ab", (501, "5.5.4")),
        (b"SIZE=999999999999", (552, "5.3.4")),
        (b"NOTIFY=NEVER", (555, "5.5.4")),
    ],
)
def test_mail_parameter_errors(params: bytes, expected: tuple[int, str]) -> None:
    proto = greeted(max_message_size=1_000_000)
    assert replies_to(proto, b"MAIL FROM:<a@b.example> " + params + b"\r\n") == [expected]
    assert not proto.in_transaction


# --- character checks (security catalogue S6) ------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"MAIL FROM:<a\x00b@c.example>", b"NOOP\rRSET", b"HELO a\tb", b"NOOP \x7f", b"NOOP \xff"],
)
def test_control_and_8bit_characters_are_rejected(line: bytes) -> None:
    proto = greeted()
    assert replies_to(proto, line + b"\r\n") == [(501, "5.5.2")]
    assert not proto.in_transaction


def test_utf8_addresses_need_smtputf8() -> None:
    """RFC 6531 §3.5: 550 5.6.7 for MAIL, 553 5.6.7 for RCPT."""
    proto = greeted()
    sender = "MAIL FROM:<jösé@exämple.test>".encode()
    assert replies_to(proto, sender + b"\r\n") == [(550, "5.6.7")]
    feed(proto, b"MAIL FROM:<a@b.example>\r\n")
    assert replies_to(proto, "RCPT TO:<ü@b.example>\r\n".encode()) == [(553, "5.6.7")]
    feed(proto, b"RSET\r\n")
    [mail] = events_of(feed(proto, sender + b" SMTPUTF8\r\n"))
    assert isinstance(mail, ev.MailFrom)
    assert mail.address == "jösé@exämple.test"
    [rcpt] = events_of(feed(proto, "RCPT TO:<ü@b.example>\r\n".encode()))
    assert isinstance(rcpt, ev.RcptTo)
    assert rcpt.address == "ü@b.example"


def test_invalid_utf8_in_mail_is_rejected() -> None:
    assert replies_to(greeted(), b"MAIL FROM:<\xc3(@b.example> SMTPUTF8\r\n") == [(501, "5.5.2")]


# --- other commands --------------------------------------------------------------------------


def test_unknown_and_unimplemented_verbs() -> None:
    assert replies_to(greeted(), b"BOGUS\r\nTURN\r\n\r\n") == [
        (500, "5.5.1"),
        (502, "5.5.1"),
        (500, "5.5.1"),
    ]


def test_rset_noop_vrfy_expn_help_events() -> None:
    proto = greeted()
    feed(proto, b"MAIL FROM:<a@b.example>\r\n")
    exchanges = feed(proto, b"RSET\r\nNOOP hello\r\nVRFY joe\r\nEXPN list\r\nHELP\r\nHELP MAIL\r\n")
    assert events_of(exchanges) == [
        ev.Reset(),
        ev.Noop(),
        ev.Vrfy("joe"),
        ev.Expn("list"),
        ev.Help(""),
        ev.Help("MAIL"),
    ]
    assert not proto.in_transaction


@pytest.mark.parametrize("line", [b"RSET x", b"QUIT now", b"DATA x", b"VRFY", b"EXPN "])
def test_argument_errors(line: bytes) -> None:
    proto = greeted()
    feed(proto, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    assert replies_to(proto, line + b"\r\n") == [(501, "5.5.4")]
    assert proto.in_transaction, "a rejected RSET must not reset"


def test_quit_closes_and_later_input_is_ignored() -> None:
    proto = greeted()
    exchanges = feed(proto, b"QUIT\r\nNOOP\r\n")
    assert events_of(exchanges) == [ev.Quit(), ev.ConnectionClosed()]
    assert exchanges[0].wire == b"221 2.0.0 Bye\r\n"
    assert state_of(proto) is State.CLOSED
    proto.receive_data(b"NOOP\r\n")
    assert proto.next_event() == ev.ConnectionClosed()


# --- framing and limits ----------------------------------------------------------------------


def test_bare_lf_command_is_not_executed() -> None:
    proto = greeted()
    exchanges = feed(proto, b"RSET\nQUIT\r\n")
    assert events_of(exchanges)[0] == ev.Invalid(replies.BARE_LF)
    assert events_of(exchanges)[1] == ev.Quit()


def test_line_limit_is_inclusive_of_crlf() -> None:
    proto = greeted(max_line_length=32)
    exact = b"NOOP " + b"a" * (32 - 7) + b"\r\n"
    assert len(exact) == 32
    assert events_of(feed(proto, exact)) == [ev.Noop()]
    assert replies_to(proto, exact[:-2] + b"a\r\n") == [(500, "5.5.2")]


def test_overlong_line_is_dropped_as_it_arrives() -> None:
    proto = greeted(max_line_length=64)
    proto.receive_data(b"NOOP ")
    for _ in range(100):
        proto.receive_data(b"x" * 1000)
        assert proto.next_event() is NEED_DATA
        assert proto.buffered <= 64
    assert replies_to(proto, b"xx\r\nNOOP\r\n") == [(500, "5.5.2"), (250, "2.0.0")]


def test_too_many_errors_close_with_421() -> None:
    proto = greeted(max_errors=3)
    codes = [code for code, _ in replies_to(proto, b"A\r\nB\r\nC\r\nNOOP\r\nNOOP\r\n")]
    assert codes == [500, 500, 500, 421]
    assert state_of(proto) is State.CLOSED


def test_session_errors_count_and_an_accepted_message_resets_the_count() -> None:
    proto = greeted(max_errors=2)
    no = Reply.make(550, "5.1.1", "unknown")
    feed(proto, b"MAIL FROM:<a@b.example>\r\n")
    feed(proto, b"RCPT TO:<x@b.example>\r\n", lambda e: no)
    assert proto.error_count == 1
    feed(proto, b"RCPT TO:<y@b.example>\r\nDATA\r\nhi\r\n.\r\n")
    assert proto.error_count == 0
    feed(proto, b"BAD\r\nBAD\r\n")
    assert [code for code, _ in replies_to(proto, b"NOOP\r\n")] == [421]


# --- one command at a time, and send() discipline --------------------------------------------


def test_next_event_pauses_until_the_reply_is_sent() -> None:
    proto = greeted()
    proto.receive_data(b"NOOP\r\nRSET\r\n")
    assert proto.next_event() == ev.Noop()
    assert proto.next_event() is PAUSED
    assert proto.awaiting_reply == ev.Noop()
    proto.send(replies.OK)
    assert proto.next_event() == ev.Reset()


def test_send_without_a_pending_event_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        greeted().send(replies.OK)


def test_send_of_a_reply_that_does_not_fit_is_a_local_error() -> None:
    proto = greeted()
    proto.receive_data(b"NOOP\r\n")
    assert proto.next_event() == ev.Noop()
    with pytest.raises(LocalProtocolError):
        proto.send(replies.START_DATA)
    assert proto.send(replies.OK) == b"250 2.0.0 OK\r\n", "the bad send changed nothing"


def test_invalid_must_be_answered_with_an_error() -> None:
    proto = greeted()
    proto.receive_data(b"BOGUS\r\n")
    event = proto.next_event()
    assert isinstance(event, ev.Invalid)
    with pytest.raises(LocalProtocolError):
        proto.send(replies.OK)
    assert proto.send(event.reply).startswith(b"500 5.5.1 ")


def test_reply_text_with_crlf_is_refused_before_any_state_change() -> None:
    proto = greeted()
    proto.receive_data(b"MAIL FROM:<a@b.example>\r\n")
    proto.next_event()
    with pytest.raises(ValueError):
        proto.send(Reply.make(250, "2.1.0", "ok\r\n250 injected"))
    assert proto.awaiting_reply is not None
    assert not proto.in_transaction


# --- PIPELINING (RFC 2920) -------------------------------------------------------------------


def test_whole_transaction_pipelined_in_one_chunk() -> None:
    proto = greeted()
    exchanges = feed(
        proto,
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<e@f.example>\r\nDATA\r\n",
    )
    assert codes_of(exchanges) == [250, 250, 250, 354]
    assert not proto.improper_pipelining
    exchanges = feed(proto, b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert events_of(exchanges) == [
        ev.DataChunk(b"Subject: x\r\n\r\nbody\r\n"),
        ev.EndOfData(20, 0),
        ev.Quit(),
        ev.ConnectionClosed(),
    ]
    assert codes_of(exchanges) == [250, 221]


def test_data_sent_before_354_is_flagged_but_still_framed() -> None:
    proto = greeted()
    exchanges = feed(
        proto, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nhi\r\n.\r\n"
    )
    assert codes_of(exchanges) == [250, 250, 354, 250]
    assert proto.improper_pipelining


def test_pipelining_after_helo_is_flagged() -> None:
    proto = ready()
    feed(proto, b"HELO old.example\r\n")
    feed(proto, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n")
    assert proto.improper_pipelining


# --- end of input ----------------------------------------------------------------------------


def test_eof_processes_buffered_commands_first() -> None:
    proto = greeted()
    exchanges = feed(proto, b"NOOP\r\nNOO")
    assert events_of(exchanges) == [ev.Noop()]
    assert events_of(feed(proto, b"")) == [ev.ConnectionClosed()]
    assert state_of(proto) is State.CLOSED
    with pytest.raises(LocalProtocolError):
        proto.receive_data(b"more")


def test_eof_in_data_gives_no_end_of_data() -> None:
    proto = greeted()
    feed(proto, b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\npartial")
    assert events_of(feed(proto, b"")) == [ev.ConnectionClosed()]


# --- Reply -----------------------------------------------------------------------------------


def test_reply_serialisation() -> None:
    multi = Reply.make(250, None, "mx.example.test", "PIPELINING", "SIZE 100")
    assert multi.to_bytes() == b"250-mx.example.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n"
    enhanced = Reply.make(550, "5.1.1", "no such user", "try again")
    assert enhanced.to_bytes() == b"550-5.1.1 no such user\r\n550 5.1.1 try again\r\n"
    assert Reply.make(334, None, "").to_bytes() == b"334 \r\n"
    assert Reply.make(250, "2.0.0").to_bytes() == b"250 2.0.0\r\n"


@pytest.mark.parametrize("text", ["a\rb", "a\nb", "end\r\n"])
def test_reply_refuses_cr_and_lf(text: str) -> None:
    with pytest.raises(ValueError):
        Reply.make(250, None, text).to_bytes()


@pytest.mark.parametrize(("code", "enhanced"), [(99, None), (250, "5.0.0"), (550, "5.x.1")])
def test_reply_refuses_bad_codes(code: int, enhanced: str | None) -> None:
    with pytest.raises(ValueError):
        Reply.make(code, enhanced, "x")
