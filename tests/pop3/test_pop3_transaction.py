"""The POP3 machine after login: commands, message-number syntax (catalogue P1), RETR/TOP
bodies, QUIT and UPDATE, pipelining, and the reply rules the session must follow."""

from __future__ import annotations

import pytest

from mailpost.pop3 import events as ev
from mailpost.pop3 import replies
from mailpost.pop3.commands import MAX_TOP_LINES
from mailpost.pop3.protocol import NEED_DATA, PAUSED, LocalProtocolError, POP3ServerProtocol, State
from mailpost.pop3.replies import Reply, ok
from tests.pop3.transcript import BODY, events, feed, logged_in, statuses


@pytest.mark.parametrize(("line", "event"), [
    (b"STAT\r\n", ev.Stat()),
    (b"LIST\r\n", ev.List(None)),
    (b"LIST 2\r\n", ev.List(2)),
    (b"UIDL\r\n", ev.Uidl(None)),
    (b"uidl 3\r\n", ev.Uidl(3)),
    (b"RETR 1\r\n", ev.Retr(1)),
    (b"DELE 12\r\n", ev.Dele(12)),
    (b"NOOP\r\n", ev.Noop()),
    (b"RSET\r\n", ev.Rset()),
    (b"TOP 1 0\r\n", ev.Top(1, 0)),
    (b"top 4 10\r\n", ev.Top(4, 10)),
    (b"RETR 007\r\n", ev.Retr(7)),
    (b"STAT   \r\n", ev.Stat()),  # trailing spaces are tolerated
    (b"RETR 0\r\n", ev.Retr(0)),  # syntactically a number; the session says "no such message"
    (b"TOP 1 99999999999999999999\r\n", ev.Top(1, MAX_TOP_LINES)),
])
def test_transaction_commands(line: bytes, event: ev.Event) -> None:
    assert events(feed(logged_in(), line)) == [event]


@pytest.mark.parametrize(("line", "status"), [
    (b"RETR -1\r\n", "-ERR invalid message number"),
    (b"RETR +1\r\n", "-ERR invalid message number"),
    (b"RETR\r\n", "-ERR invalid message number"),
    (b"RETR 1 2\r\n", "-ERR invalid message number"),
    (b"RETR one\r\n", "-ERR invalid message number"),
    (b"RETR 99999999999999999999\r\n", "-ERR no such message"),
    (b"DELE 1x\r\n", "-ERR invalid message number"),
    (b"LIST x\r\n", "-ERR invalid message number"),
    (b"UIDL 1 2\r\n", "-ERR invalid message number"),
    (b"TOP 1 -1\r\n", "-ERR invalid number of lines"),
    (b"TOP 1\r\n", "-ERR invalid number of lines"),
    (b"TOP\r\n", "-ERR invalid message number"),
    (b"TOP x 1\r\n", "-ERR invalid message number"),
    (b"STAT 1\r\n", "-ERR this command takes no arguments"),
    (b"NOOP x\r\n", "-ERR this command takes no arguments"),
    (b"QUIT now\r\n", "-ERR this command takes no arguments"),
    (b"RETR \xc3\xa9\r\n", "-ERR invalid character in command line"),
    (b"USER bob\r\n", "-ERR command not valid in this state"),
    (b"PASS x\r\n", "-ERR command not valid in this state"),
    (b"AUTH PLAIN\r\n", "-ERR command not valid in this state"),
    (b"APOP a b\r\n", "-ERR command not valid in this state"),
])
def test_invalid_commands_get_err_and_the_session_goes_on(line: bytes, status: str) -> None:
    proto = logged_in()
    exchanges = feed(proto, line + b"NOOP\r\n")
    assert statuses(exchanges) == [status, "+OK"]
    assert isinstance(exchanges[0].event, ev.Invalid)
    assert proto.state is State.TRANSACTION


def test_retr_streams_a_dot_stuffed_body_and_terminates_it() -> None:
    proto = logged_in()
    [exchange] = feed(proto, b"RETR 1\r\n")
    assert exchange.wire == (b"+OK message follows\r\n"
                             b"Subject: test\r\n\r\n..leading dot\r\nlast line\r\n.\r\n")


def test_top_passes_its_line_count_to_the_body() -> None:
    proto = logged_in()
    [exchange] = feed(proto, b"TOP 1 0\r\n", body=BODY)
    assert exchange.wire == b"+OK message follows\r\nSubject: test\r\n\r\n.\r\n"


def test_no_event_while_a_body_is_open() -> None:
    proto = logged_in()
    proto.receive_data(b"RETR 1\r\nNOOP\r\n")
    assert proto.next_event() == ev.Retr(1)
    proto.send(Reply(True, "follows", streamed=True))
    assert proto.body_open and proto.next_event() is PAUSED
    assert proto.send_body(b"a\r\n.b") == b"a\r\n..b"
    assert proto.end_body() == b"\r\n.\r\n"
    assert proto.next_event() == ev.Noop()


def test_retr_answered_err_opens_no_body() -> None:
    proto = logged_in()
    proto.receive_data(b"RETR 9\r\n")
    proto.next_event()
    assert proto.send(replies.NO_SUCH_MESSAGE) == b"-ERR no such message\r\n"
    assert not proto.body_open
    assert proto.next_event() is NEED_DATA


@pytest.mark.parametrize(("line", "reply"), [
    (b"RETR 1\r\n", ok("not streamed")),
    (b"STAT\r\n", Reply(True, "streamed", streamed=True)),
    (b"FOO\r\n", ok("an Invalid answered +OK")),
])
def test_replies_that_do_not_fit_the_event_are_local_errors(line: bytes, reply: Reply) -> None:
    proto = logged_in()
    proto.receive_data(line)
    proto.next_event()
    with pytest.raises(LocalProtocolError):
        proto.send(reply)


def test_send_without_an_event_and_body_calls_without_a_body_are_local_errors() -> None:
    proto = logged_in()
    with pytest.raises(LocalProtocolError):
        proto.send(ok())
    with pytest.raises(LocalProtocolError):
        proto.send_body(b"x")
    with pytest.raises(LocalProtocolError):
        proto.end_body()
    with pytest.raises(LocalProtocolError):
        proto.send(replies.Continuation(b""))


def test_multiline_replies_are_dot_stuffed_and_terminated() -> None:
    reply = Reply(True, "list", lines=("1 10", ".odd"))
    assert reply.to_bytes() == b"+OK list\r\n1 10\r\n..odd\r\n.\r\n"


@pytest.mark.parametrize("build", [
    lambda: Reply(True, "a\r\nb"),
    lambda: Reply(True, "x" * 600),
    lambda: Reply(True, "ok", lines=("bad\nline",)),
])
def test_replies_never_carry_line_breaks_or_overlong_status_lines(build: object) -> None:
    with pytest.raises(ValueError):
        build().to_bytes()  # type: ignore[operator]


@pytest.mark.parametrize("build", [
    lambda: Reply(False, "x", lines=("a",)),
    lambda: Reply(False, "x", streamed=True),
    lambda: Reply(True, "x", "BAD]CODE"),
    lambda: Reply(True, "x", lines=(), streamed=True),
])
def test_reply_shapes_are_checked(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_response_codes_are_bracketed() -> None:
    assert replies.err("busy", "IN-USE").to_bytes() == b"-ERR [IN-USE] busy\r\n"
    assert replies.err("down", "SYS/TEMP").to_bytes() == b"-ERR [SYS/TEMP] down\r\n"


# --- QUIT and UPDATE (RFC 1939 §6) -----------------------------------------------------------


def test_quit_enters_update_then_closes() -> None:
    proto = logged_in()
    proto.receive_data(b"QUIT\r\n")
    assert proto.next_event() == ev.Quit(update=True)
    assert proto.state is State.UPDATE
    assert proto.send(ok("bye", close=True)) == b"+OK bye\r\n"
    assert proto.state is State.CLOSED
    assert proto.next_event() == ev.ConnectionClosed()


def test_quit_closes_even_when_the_update_failed() -> None:
    proto = logged_in()
    proto.receive_data(b"QUIT\r\nNOOP\r\n")
    proto.next_event()
    proto.send(replies.err("some deleted messages not removed", "SYS/TEMP"))
    assert proto.state is State.CLOSED
    assert proto.next_event() == ev.ConnectionClosed()


def test_eof_without_quit_is_connection_closed_not_update() -> None:
    proto = logged_in()
    exchanges = feed(proto, b"DELE 1\r\nRETR 2")  # the partial last line is never executed
    assert events(exchanges) == [ev.Dele(1)]
    assert events(feed(proto, b"")) == [ev.ConnectionClosed()]
    assert proto.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        proto.receive_data(b"QUIT\r\n")


def test_commands_buffered_before_eof_still_run() -> None:
    proto = logged_in()
    proto.receive_data(b"DELE 1\r\nQUIT\r\n")
    exchanges = feed(proto, b"")
    assert events(exchanges) == [ev.Dele(1), ev.Quit(update=True), ev.ConnectionClosed()]


def test_a_closing_reply_ends_the_session() -> None:
    proto = logged_in()
    proto.receive_data(b"NOOP\r\nNOOP\r\n")
    proto.next_event()
    proto.send(replies.err("going away", close=True))
    assert proto.next_event() == ev.ConnectionClosed()
    assert proto.buffered == 0


# --- pipelining (RFC 2449 §6.6) ------------------------------------------------------------------


def test_pipelined_commands_are_answered_in_order() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    exchanges = feed(proto, b"USER a\r\nPASS b\r\nSTAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n")
    assert events(exchanges) == [ev.User("a"), ev.Pass("a", "b"), ev.Stat(), ev.List(None),
                                 ev.Retr(1), ev.Dele(1), ev.Quit(update=True),
                                 ev.ConnectionClosed()]
    wire = b"".join(x.wire for x in exchanges)
    assert wire == (b"+OK welcome\r\n+OK welcome\r\n+OK 1 42\r\n+OK listing follows\r\n1 42\r\n"
                    b".\r\n+OK message follows\r\n" + BODY.replace(b"\n.", b"\n..")
                    + b".\r\n+OK\r\n+OK bye\r\n")


def test_pipelined_retrievals_name_the_waiting_retr_lines_without_consuming_them() -> None:
    proto = logged_in()
    proto.receive_data(b"RETR 1\r\nRETR 2\r\nretr 3\r\nDELE 1\r\nRETR 4\r\nRETR 5")
    assert proto.next_event() == ev.Retr(1)
    assert proto.pipelined_retrievals(10) == [2, 3]  # stops at DELE
    assert proto.pipelined_retrievals(1) == [2]
    proto.send(replies.err("no such message"))
    assert proto.next_event() == ev.Retr(2)  # the hint consumed nothing
    assert proto.pipelined_retrievals(10) == [3]


def test_no_pipelined_retrievals_before_login() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    proto.receive_data(b"CAPA\r\nRETR 1\r\n")
    assert proto.next_event() == ev.Capa()
    assert proto.pipelined_retrievals(10) == []
