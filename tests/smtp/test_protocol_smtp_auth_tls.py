"""STARTTLS (RFC 3207, CVE-2011-0411) and the AUTH exchange (RFC 4954) in the protocol machine."""

from __future__ import annotations

import base64

import pytest

from mailpost.smtp import events as ev
from mailpost.smtp import replies
from mailpost.smtp.protocol import NEED_DATA, PAUSED, LocalProtocolError, SMTPServerProtocol, State
from mailpost.smtp.replies import Reply
from mailpost.smtp.transcript import Answer, codes_of, events_of, feed

CHALLENGE = Reply.make(334, None, "")


def state_of(proto: SMTPServerProtocol) -> State:
    """Read the state through a call, so that type narrowing does not stick across steps."""
    return proto.state


def greeted(*, max_line_length: int = 4096, tls_active: bool = False) -> SMTPServerProtocol:
    proto = SMTPServerProtocol(max_line_length=max_line_length, tls_active=tls_active)
    proto.greeting(Reply.make(220, None, "ready"))
    assert codes_of(feed(proto, b"EHLO c.example\r\n")) == [250]
    return proto


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def sasl(*, finish_with: Reply = replies.AUTH_SUCCEEDED, rounds: int = 1) -> Answer:
    """An answer function: ``rounds`` challenges, then ``finish_with``."""
    seen: list[ev.Event] = []

    def answer(event: ev.Event) -> Reply:
        if isinstance(event, ev.Auth | ev.AuthResponse):
            seen.append(event)
            return CHALLENGE if len(seen) <= rounds else finish_with
        if isinstance(event, ev.AuthAbort):
            return replies.AUTH_ABORTED
        if isinstance(event, ev.Invalid):
            return event.reply
        return replies.OK

    return answer


# --- STARTTLS ---------------------------------------------------------------------------------


def test_starttls_discards_pipelined_plaintext() -> None:
    """Security catalogue T1: bytes after STARTTLS in the same segment are never commands."""
    proto = greeted()
    exchanges = feed(proto, b"STARTTLS\r\nRSET\r\nMAIL FROM:<x@remote.example>\r\n")
    assert events_of(exchanges) == [ev.StartTLS()]
    assert exchanges[0].wire.startswith(b"220 ")
    assert state_of(proto) is State.TLS_PENDING
    assert proto.discarded_plaintext
    assert proto.buffered == 0
    assert proto.next_event() is PAUSED


def test_plaintext_arriving_before_the_handshake_completes_is_dropped() -> None:
    proto = greeted()
    feed(proto, b"STARTTLS\r\n")
    assert not proto.discarded_plaintext
    proto.receive_data(b"QUIT\r\n")
    assert proto.discarded_plaintext
    proto.tls_started()
    assert proto.buffered == 0
    assert proto.next_event() is NEED_DATA


def test_tls_started_forgets_the_session_state() -> None:
    """Security catalogue T2 / RFC 3207 §4.2: EHLO is needed again."""
    proto = greeted()
    feed(proto, b"STARTTLS\r\n")
    proto.tls_started()
    assert proto.tls_active
    assert proto.hello is None
    assert state_of(proto) is State.COMMAND
    exchanges = feed(proto, b"MAIL FROM:<a@b.example>\r\nEHLO c.example\r\nSTARTTLS\r\n")
    assert [(x.reply.code, x.reply.enhanced) for x in exchanges if x.reply] == [
        (503, "5.5.1"),
        (250, "2.0.0"),
        (554, "5.5.1"),
    ]


def test_tls_started_clears_authentication() -> None:
    proto = greeted()
    feed(proto, b"AUTH PLAIN " + b64(b"\0u\0p") + b"\r\n", lambda e: replies.AUTH_SUCCEEDED)
    assert proto.authenticated
    feed(proto, b"STARTTLS\r\n")
    proto.tls_started()
    assert not proto.authenticated


def test_refused_starttls_keeps_the_following_commands() -> None:
    proto = greeted()
    exchanges = feed(
        proto,
        b"STARTTLS\r\nNOOP\r\n",
        lambda e: replies.TLS_NOT_AVAILABLE if isinstance(e, ev.StartTLS) else replies.OK,
    )
    assert events_of(exchanges) == [ev.StartTLS(), ev.Noop()]
    assert not proto.discarded_plaintext
    assert not proto.tls_active


def test_starttls_with_tls_already_active() -> None:
    """Security catalogue T3: 554 5.5.1 on an implicit-TLS connection."""
    proto = greeted(tls_active=True)
    assert events_of(feed(proto, b"STARTTLS\r\n")) == [ev.Invalid(replies.TLS_ALREADY_ACTIVE)]


def test_starttls_argument_and_transaction_errors() -> None:
    proto = greeted()
    assert codes_of(feed(proto, b"STARTTLS now\r\n")) == [501]
    feed(proto, b"MAIL FROM:<a@b.example>\r\n")
    assert events_of(feed(proto, b"STARTTLS\r\n")) == [ev.Invalid(replies.TLS_IN_TRANSACTION)]


def test_tls_started_without_starttls_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        greeted().tls_started()


def test_eof_while_waiting_for_the_handshake() -> None:
    proto = greeted()
    feed(proto, b"STARTTLS\r\n")
    proto.receive_data(b"")
    assert proto.next_event() == ev.ConnectionClosed()


# --- AUTH -------------------------------------------------------------------------------------


def test_auth_exchange_with_challenge() -> None:
    proto = greeted()
    answer = sasl()
    exchanges = feed(proto, b"AUTH plain\r\n", answer)
    assert events_of(exchanges) == [ev.Auth("PLAIN", None)]
    assert exchanges[0].wire == b"334 \r\n"
    assert state_of(proto) is State.SASL
    exchanges = feed(proto, b64(b"\0user\0pass") + b"\r\n", answer)
    assert events_of(exchanges) == [ev.AuthResponse(b"\0user\0pass")]
    assert proto.authenticated
    assert state_of(proto) is State.COMMAND


def test_auth_initial_response_forms() -> None:
    proto = greeted()

    def refuse(event: ev.Event) -> Reply:
        return replies.AUTH_FAILED

    assert events_of(feed(proto, b"AUTH PLAIN =\r\n", refuse)) == [ev.Auth("PLAIN", b"")]
    assert events_of(feed(proto, b"AUTH PLAIN " + b64(b"\0a\0b") + b"\r\n", refuse)) == [
        ev.Auth("PLAIN", b"\0a\0b")
    ]
    assert not proto.authenticated, "only a 235 authenticates"


@pytest.mark.parametrize(
    "line", [b"AUTH PLAIN !!notbase64!!", b"AUTH PLAIN AAA", b"AUTH PLAIN AA=A", b"AUTH PLAIN A==="]
)
def test_invalid_base64_initial_response(line: bytes) -> None:
    assert events_of(feed(greeted(), line + b"\r\n")) == [ev.Invalid(replies.AUTH_INVALID_BASE64)]


@pytest.mark.parametrize("line", [b"AUTH", b"AUTH PL@IN", b"AUTH PLAIN a b", b"AUTH " + b"X" * 21])
def test_auth_syntax_errors(line: bytes) -> None:
    assert codes_of(feed(greeted(), line + b"\r\n")) == [501]


def test_sasl_lines_are_never_commands() -> None:
    proto = greeted()
    answer = sasl(rounds=2, finish_with=replies.AUTH_FAILED)
    feed(proto, b"AUTH LOGIN\r\n", answer)
    exchanges = feed(proto, b"QUIT\r\n", answer)
    assert events_of(exchanges) == [ev.AuthResponse(base64.b64decode(b"QUIT"))]
    exchanges = feed(proto, b"RSET\r\nNOOP\r\n", answer)
    assert events_of(exchanges) == [ev.AuthResponse(base64.b64decode(b"RSET")), ev.Noop()]
    assert not proto.authenticated


def test_sasl_cancel_and_invalid_response_end_the_exchange() -> None:
    proto = greeted()
    answer = sasl(rounds=5)
    feed(proto, b"AUTH LOGIN\r\n", answer)
    exchanges = feed(proto, b"*\r\nNOOP\r\n", answer)
    assert events_of(exchanges) == [ev.AuthAbort(), ev.Noop()]
    assert codes_of(exchanges) == [501, 250]
    feed(proto, b"AUTH LOGIN\r\n", answer)
    exchanges = feed(proto, b"not base64!\r\nNOOP\r\n", answer)
    assert events_of(exchanges) == [ev.Invalid(replies.AUTH_INVALID_BASE64), ev.Noop()]


def test_empty_sasl_response_is_empty_data() -> None:
    proto = greeted()
    answer = sasl()
    feed(proto, b"AUTH PLAIN\r\n", answer)
    assert events_of(feed(proto, b"\r\n", answer)) == [ev.AuthResponse(b"")]


def test_auth_sequence_rules() -> None:
    """Security catalogue R5: AUTH before EHLO, inside a transaction, or twice is 503."""
    fresh = SMTPServerProtocol()
    fresh.greeting(Reply.make(220, None, "ready"))
    assert codes_of(feed(fresh, b"AUTH PLAIN =\r\n")) == [503]
    proto = greeted()
    feed(proto, b"MAIL FROM:<a@b.example>\r\n")
    assert events_of(feed(proto, b"AUTH PLAIN =\r\n")) == [ev.Invalid(replies.AUTH_IN_TRANSACTION)]
    feed(proto, b"RSET\r\n")
    feed(proto, b"AUTH PLAIN =\r\n", lambda e: replies.AUTH_SUCCEEDED)
    assert proto.authenticated
    assert events_of(feed(proto, b"AUTH PLAIN =\r\n")) == [ev.Invalid(replies.AUTH_ALREADY)]


def test_auth_lines_may_exceed_the_command_line_limit() -> None:
    """RFC 4954 §4: 12288 octets for AUTH lines, whatever max_line_length is."""
    proto = greeted(max_line_length=512)
    blob = b64(b"x" * 9000)
    assert len(blob) == 12000
    answer = sasl(rounds=1)
    [auth] = events_of(feed(proto, b"AUTH PLAIN " + blob + b"\r\n", answer))
    assert auth == ev.Auth("PLAIN", b"x" * 9000)
    [response] = events_of(feed(proto, blob + b"\r\n", answer))
    assert response == ev.AuthResponse(b"x" * 9000)
    assert codes_of(feed(proto, b"NOOP " + b"a" * 600 + b"\r\n")) == [500]


def test_oversized_auth_lines_get_500_5_5_6() -> None:
    proto = greeted(max_line_length=512)
    too_long = b64(b"x" * 9300)
    exchanges = feed(proto, b"AUTH PLAIN " + too_long + b"\r\nNOOP\r\n")
    assert events_of(exchanges) == [ev.Invalid(replies.AUTH_LINE_TOO_LONG), ev.Noop()]
    answer = sasl(rounds=1)
    feed(proto, b"AUTH PLAIN\r\n", answer)
    exchanges = feed(proto, too_long + b"\r\nNOOP\r\n", answer)
    assert events_of(exchanges) == [ev.Invalid(replies.AUTH_LINE_TOO_LONG), ev.Noop()]
    assert proto.buffered == 0
