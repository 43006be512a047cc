"""AUTH exchanges (RFC 5034), line framing and bounds (RFC 2449 §4), and the error limit."""

from __future__ import annotations

import base64

import pytest

from mailpost.pop3 import events as ev
from mailpost.pop3 import replies
from mailpost.pop3.protocol import COMMAND_LINE_LIMIT, NEED_DATA, POP3ServerProtocol, State
from mailpost.pop3.replies import Continuation, Reply, ok
from tests.pop3.transcript import events, feed, logged_in, statuses


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


# --- AUTH (RFC 5034 §4) --------------------------------------------------------------------------


def test_auth_with_initial_response() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    exchanges = feed(proto, b"AUTH plain " + b64(b"\0alice\0secret") + b"\r\n")
    assert events(exchanges) == [ev.Auth("PLAIN", b"\0alice\0secret")]
    assert proto.state is State.TRANSACTION


def test_auth_with_empty_initial_response() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    assert events(feed(proto, b"AUTH PLAIN =\r\n")) == [ev.Auth("PLAIN", b"")]


def test_auth_continuation_then_response() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    exchanges = feed(proto, b"AUTH PLAIN\r\n" + b64(b"\0alice\0secret") + b"\r\n")
    assert events(exchanges) == [ev.Auth("PLAIN", None), ev.AuthResponse(b"\0alice\0secret")]
    assert exchanges[0].wire == b"+ \r\n"
    assert proto.state is State.TRANSACTION


def test_login_mechanism_takes_two_continuations() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    challenges = iter([Continuation(b"Username:"), Continuation(b"Password:"), ok("in")])
    exchanges = feed(proto, b"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n",
                     lambda p, e: next(challenges))
    assert events(exchanges) == [ev.Auth("LOGIN", None), ev.AuthResponse(b"alice"),
                                 ev.AuthResponse(b"secret")]
    assert [x.wire for x in exchanges] == [b"+ VXNlcm5hbWU6\r\n", b"+ UGFzc3dvcmQ6\r\n",
                                           b"+OK in\r\n"]


def test_star_cancels_the_exchange() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    exchanges = feed(proto, b"AUTH PLAIN\r\n*\r\nCAPA\r\n")
    assert events(exchanges) == [ev.Auth("PLAIN", None), ev.AuthAbort(), ev.Capa()]
    assert exchanges[1].status == "-ERR [AUTH] authentication cancelled"
    assert proto.state is State.AUTHORIZATION


def test_an_empty_response_line_is_an_empty_response() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    assert events(feed(proto, b"AUTH PLAIN\r\n\r\n"))[1] == ev.AuthResponse(b"")


@pytest.mark.parametrize("response", [b"!!!!", b"YWxpY2U", b"YW=xp", b"\xff"])
def test_invalid_base64_response_ends_the_exchange(response: bytes) -> None:
    proto = POP3ServerProtocol(tls_active=True)
    exchanges = feed(proto, b"AUTH PLAIN\r\n" + response + b"\r\nCAPA\r\n")
    assert statuses(exchanges)[1] == "-ERR [AUTH] invalid base64 data"
    assert isinstance(exchanges[2].event, ev.Capa)  # back to commands


@pytest.mark.parametrize(("line", "status"), [
    (b"AUTH\r\n", "-ERR [AUTH] syntax: AUTH mechanism [initial-response]"),
    (b"AUTH PLAIN a b\r\n", "-ERR [AUTH] syntax: AUTH mechanism [initial-response]"),
    (b"AUTH PL@IN\r\n", "-ERR [AUTH] syntax: AUTH mechanism [initial-response]"),
    (b"AUTH PLAIN !!!\r\n", "-ERR [AUTH] invalid base64 data"),
    (b"AUTH PLAIN \xc3\xa9\r\n", "-ERR [AUTH] syntax: AUTH mechanism [initial-response]"),
])
def test_malformed_auth_commands(line: bytes, status: str) -> None:
    assert statuses(feed(POP3ServerProtocol(tls_active=True), line)) == [status]


def test_a_sasl_response_may_be_long_but_bounded() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    long_response = b64(b"x" * 9000)  # 12000 octets of base64
    assert events(feed(proto, b"AUTH PLAIN\r\n" + long_response + b"\r\n"))[1] == (
        ev.AuthResponse(b"x" * 9000))
    proto = POP3ServerProtocol(tls_active=True)
    exchanges = feed(proto, b"AUTH PLAIN\r\n" + b"A" * 20000 + b"\r\nCAPA\r\n")
    assert statuses(exchanges)[1:] == ["-ERR [AUTH] authentication line too long",
                                       "+OK capability list follows"]


# --- framing -------------------------------------------------------------------------------------


def test_the_longest_allowed_command_line_is_255_octets() -> None:
    padding = COMMAND_LINE_LIMIT - len(b"LIST\r\n")
    fits = b"LIST" + b" " * padding + b"\r\n"
    assert len(fits) == 255
    assert events(feed(logged_in(), fits)) == [ev.List(None)]
    too_long = b"LIST" + b" " * (padding + 1) + b"\r\n"
    assert statuses(feed(logged_in(), too_long)) == ["-ERR command line too long"]


def test_an_overlong_line_is_dropped_as_it_arrives_and_answered_once() -> None:
    proto = logged_in()
    for _ in range(100):
        proto.receive_data(b"X" * 1000)
        assert proto.next_event() is NEED_DATA
        assert proto.buffered < COMMAND_LINE_LIMIT
    exchanges = feed(proto, b"tail\r\nNOOP\r\n")
    assert statuses(exchanges) == ["-ERR command line too long", "+OK"]


@pytest.mark.parametrize(("line", "status"), [
    (b"FOO\r\n", "-ERR unknown command"),
    (b"\r\n", "-ERR unknown command"),
    (b"STAT\x00\r\n", "-ERR invalid character in command line"),
    (b"ST\tAT\r\n", "-ERR invalid character in command line"),
    (b"STAT\n", "-ERR command line must end with CRLF"),
    (b"STAT\rNOOP\r\n", "-ERR invalid character in command line"),
    (b"\xff\xfe\r\n", "-ERR unknown command"),
])
def test_bad_lines_get_err(line: bytes, status: str) -> None:
    proto = logged_in()
    assert statuses(feed(proto, line + b"NOOP\r\n")) == [status, "+OK"]


def test_too_many_errors_close_the_connection() -> None:
    proto = POP3ServerProtocol(tls_active=True, max_errors=3)
    exchanges = feed(proto, b"FOO\r\nBAR\r\nBAZ\r\nCAPA\r\nCAPA\r\n")
    assert statuses(exchanges) == ["-ERR unknown command"] * 3 + [
        "-ERR too many errors, closing connection"]
    assert isinstance(exchanges[-1].event, ev.ConnectionClosed)


def test_errors_sent_by_the_session_count_too() -> None:
    proto = logged_in(max_errors=2)

    def no_such(p: POP3ServerProtocol, event: ev.Event) -> Reply:
        return replies.NO_SUCH_MESSAGE if isinstance(event, ev.Retr) else (
            event.reply if isinstance(event, ev.Invalid) else ok())

    exchanges = feed(proto, b"RETR 5\r\nRETR 6\r\nNOOP\r\n", no_such)
    assert statuses(exchanges) == ["-ERR no such message", "-ERR no such message",
                                   "-ERR too many errors, closing connection"]
