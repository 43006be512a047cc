"""The POP3 machine in the AUTHORIZATION state: greeting, CAPA, USER/PASS, APOP, credentials
before TLS, STLS (RFC 1939 §4, §7; RFC 2449 §5; RFC 2595 §4)."""

from __future__ import annotations

import pytest

from mailpost.pop3 import events as ev
from mailpost.pop3 import replies
from mailpost.pop3.protocol import PAUSED, LocalProtocolError, POP3ServerProtocol, State
from mailpost.pop3.replies import ok
from tests.pop3.transcript import events, feed, statuses

BASE_CAPABILITIES = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER",
                     "LOGIN-DELAY 0", "IMPLEMENTATION mailpost"]


def capa_lines(proto: POP3ServerProtocol) -> list[str]:
    [exchange] = feed(proto, b"CAPA\r\n")
    lines = exchange.wire.decode().split("\r\n")
    assert lines[0] == "+OK capability list follows"
    assert lines[-2:] == [".", ""]
    return lines[1:-2]


# --- greeting -----------------------------------------------------------------------------------


def test_greeting_is_one_ok_line() -> None:
    proto = POP3ServerProtocol()
    assert proto.greeting(ok("mail.example.test POP3 server ready")) == (
        b"+OK mail.example.test POP3 server ready\r\n")
    assert proto.state is State.AUTHORIZATION


@pytest.mark.parametrize("reply", [
    replies.err("go away"),
    ok("ready <1896.697170952@dbc.mtview.ca.us>"),  # an APOP timestamp: APOP is off
])
def test_greeting_refuses_errors_and_apop_timestamps(reply: replies.Reply) -> None:
    with pytest.raises(LocalProtocolError):
        POP3ServerProtocol().greeting(reply)


# --- CAPA (RFC 2449 §5, RFC 2595 §4) ------------------------------------------------------------


def test_capa_before_tls_offers_stls_and_no_credentials() -> None:
    lines = capa_lines(POP3ServerProtocol())
    assert lines == [*BASE_CAPABILITIES, "STLS"]


def test_capa_under_tls_offers_user_and_sasl_but_not_stls() -> None:
    lines = capa_lines(POP3ServerProtocol(tls_active=True))
    assert lines[:4] == ["TOP", "UIDL", "USER", "SASL PLAIN LOGIN"]
    assert "STLS" not in lines
    assert set(BASE_CAPABILITIES) <= set(lines)


def test_capa_with_insecure_auth_allowed_offers_everything() -> None:
    lines = capa_lines(POP3ServerProtocol(allow_insecure_auth=True))
    assert {"USER", "SASL PLAIN LOGIN", "STLS"} <= set(lines)


def test_capa_without_a_tls_context_has_no_stls() -> None:
    assert "STLS" not in capa_lines(POP3ServerProtocol(tls_available=False))


def test_capa_after_login_keeps_user_and_sasl_and_drops_stls() -> None:
    proto = POP3ServerProtocol(allow_insecure_auth=True)
    feed(proto, b"USER a\r\nPASS b\r\n")
    assert proto.state is State.TRANSACTION
    lines = capa_lines(proto)
    assert {"USER", "SASL PLAIN LOGIN"} <= set(lines)
    assert "STLS" not in lines  # STLS is only permitted in AUTHORIZATION


def test_capa_takes_no_argument() -> None:
    assert statuses(feed(POP3ServerProtocol(), b"CAPA x\r\n")) == [
        "-ERR this command takes no arguments"]


# --- USER / PASS (RFC 1939 §7) --------------------------------------------------------------------


def test_user_then_pass_logs_in_with_the_whole_rest_of_the_line_as_password() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    exchanges = feed(proto, b"user alice@example.test\r\nPASS  two words \r\n")
    assert events(exchanges) == [ev.User("alice@example.test"),
                                 ev.Pass("alice@example.test", " two words ")]
    assert proto.state is State.TRANSACTION


def test_pass_repr_hides_the_password() -> None:
    assert "hunter2" not in repr(ev.Pass("alice", "hunter2"))
    assert "hunter2" not in repr(ev.AuthResponse(b"\0alice\0hunter2"))


def test_pass_without_user_is_refused() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    assert statuses(feed(proto, b"PASS secret\r\n")) == ["-ERR [AUTH] send USER first"]
    assert proto.state is State.AUTHORIZATION


def test_pass_must_come_immediately_after_an_accepted_user() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    exchanges = feed(proto, b"USER alice\r\nCAPA\r\nPASS secret\r\n")
    assert statuses(exchanges)[2] == "-ERR [AUTH] send USER first"


def test_a_refused_user_does_not_enable_pass() -> None:
    proto = POP3ServerProtocol(tls_active=True)

    def refuse_user(p: POP3ServerProtocol, event: ev.Event) -> replies.Reply:
        if isinstance(event, ev.User):
            return replies.err("no", "AUTH")
        assert isinstance(event, ev.Invalid)
        return event.reply

    exchanges = feed(proto, b"USER alice\r\nPASS secret\r\n", refuse_user)
    assert statuses(exchanges) == ["-ERR [AUTH] no", "-ERR [AUTH] send USER first"]


def test_failed_pass_stays_in_authorization_and_needs_a_new_user() -> None:
    proto = POP3ServerProtocol(tls_active=True)

    def refuse_pass(p: POP3ServerProtocol, event: ev.Event) -> replies.Reply:
        if isinstance(event, ev.Pass):
            return replies.err("invalid user name or password", "AUTH")
        return event.reply if isinstance(event, ev.Invalid) else ok()

    exchanges = feed(proto, b"USER a\r\nPASS b\r\nPASS b\r\nUSER a\r\nPASS c\r\n", refuse_pass)
    assert statuses(exchanges) == ["+OK", "-ERR [AUTH] invalid user name or password",
                                   "-ERR [AUTH] send USER first", "+OK",
                                   "-ERR [AUTH] invalid user name or password"]
    assert proto.state is State.AUTHORIZATION


@pytest.mark.parametrize("line", [b"USER\r\n", b"USER   \r\n", b"PASS\r\n"])
def test_user_and_pass_need_an_argument(line: bytes) -> None:
    proto = POP3ServerProtocol(tls_active=True)
    if line.startswith(b"PASS"):
        feed(proto, b"USER a\r\n")
    [exchange] = feed(proto, line)
    assert exchange.status.startswith("-ERR [AUTH]")


def test_user_and_pass_accept_utf8_but_not_broken_utf8() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    exchanges = feed(proto, "USER jörg@example.test\r\nPASS pässwörd\r\n".encode())
    assert events(exchanges) == [ev.User("jörg@example.test"),
                                 ev.Pass("jörg@example.test", "pässwörd")]
    proto = POP3ServerProtocol(tls_active=True)
    assert statuses(feed(proto, b"USER a\r\nPASS \xff\xfe\r\n"))[1] == (
        "-ERR invalid character in command line")


def test_a_long_password_fits_but_a_long_command_does_not() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    password = "p" * 600
    exchanges = feed(proto, f"USER alice\r\nPASS {password}\r\n".encode())
    assert events(exchanges)[1] == ev.Pass("alice", password)
    assert statuses(feed(proto, b"LIST " + b"1" * 300 + b"\r\n")) == [
        "-ERR command line too long"]


# --- credentials before TLS (RFC 2595 §2.3, RFC 8314; catalogue R4) -----------------------------


@pytest.mark.parametrize("line", [b"USER alice\r\n", b"PASS secret\r\n", b"AUTH PLAIN\r\n",
                                  b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"])
def test_no_credentials_before_tls(line: bytes) -> None:
    proto = POP3ServerProtocol()
    [exchange] = feed(proto, line)
    assert isinstance(exchange.event, ev.Invalid)
    assert exchange.status == (
        "-ERR [SYS/PERM] authentication requires TLS: use STLS or the pop3s port")
    assert proto.state is State.AUTHORIZATION


def test_insecure_auth_can_be_allowed() -> None:
    proto = POP3ServerProtocol(allow_insecure_auth=True)
    assert events(feed(proto, b"USER a\r\nPASS b\r\n")) == [ev.User("a"), ev.Pass("a", "b")]


def test_apop_is_refused_when_off_even_under_tls() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    [exchange] = feed(proto, b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n")
    assert exchange.status.startswith("-ERR [AUTH] APOP is not enabled")
    assert proto.state is State.AUTHORIZATION


@pytest.mark.parametrize("line", [b"STAT\r\n", b"LIST\r\n", b"RETR 1\r\n", b"DELE 1\r\n",
                                  b"NOOP\r\n", b"RSET\r\n", b"TOP 1 1\r\n", b"UIDL\r\n"])
def test_transaction_commands_before_login_are_refused(line: bytes) -> None:
    proto = POP3ServerProtocol(tls_active=True)
    assert statuses(feed(proto, line)) == ["-ERR command not valid in this state"]


def test_quit_in_authorization_closes_without_update() -> None:
    proto = POP3ServerProtocol()
    exchanges = feed(proto, b"QUIT\r\nCAPA\r\n")
    assert events(exchanges) == [ev.Quit(update=False), ev.ConnectionClosed()]
    assert exchanges[0].wire == b"+OK bye\r\n"
    assert proto.state is State.CLOSED


# --- STLS (RFC 2595 §4; CVE-2011-0411) -----------------------------------------------------------


def test_stls_discards_pipelined_plaintext_and_enables_credentials() -> None:
    proto = POP3ServerProtocol()
    exchanges = feed(proto, b"STLS\r\nUSER mallory\r\nPASS injected\r\n")
    assert events(exchanges) == [ev.Stls()]
    assert exchanges[0].wire == b"+OK begin TLS negotiation\r\n"
    assert proto.discarded_plaintext
    assert proto.next_event() is PAUSED
    proto.receive_data(b"QUIT\r\n")  # arrives before the handshake completed: also dropped
    assert proto.next_event() is PAUSED
    proto.tls_started()
    assert proto.tls_active and proto.buffered == 0
    assert "USER" in capa_lines(proto)
    assert statuses(feed(proto, b"PASS injected\r\n")) == ["-ERR [AUTH] send USER first"]


def test_stls_forgets_a_user_given_before_it() -> None:
    proto = POP3ServerProtocol(allow_insecure_auth=True)
    feed(proto, b"USER alice\r\nSTLS\r\n")
    proto.tls_started()
    assert statuses(feed(proto, b"PASS secret\r\n")) == ["-ERR [AUTH] send USER first"]


def test_stls_without_pipelined_data_discards_nothing() -> None:
    proto = POP3ServerProtocol()
    feed(proto, b"STLS\r\n")
    assert not proto.discarded_plaintext


def test_stls_under_tls_is_refused() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    assert statuses(feed(proto, b"STLS\r\n")) == ["-ERR command not permitted when TLS active"]


def test_stls_without_tls_context_is_refused() -> None:
    proto = POP3ServerProtocol(tls_available=False)
    assert statuses(feed(proto, b"STLS\r\n")) == ["-ERR [SYS/PERM] TLS is not available"]


def test_stls_after_login_is_refused() -> None:
    proto = POP3ServerProtocol(allow_insecure_auth=True)
    feed(proto, b"USER a\r\nPASS b\r\n")
    assert statuses(feed(proto, b"STLS\r\n")) == ["-ERR command not valid in this state"]


def test_a_refused_stls_keeps_reading_plaintext() -> None:
    proto = POP3ServerProtocol()

    def refuse(p: POP3ServerProtocol, event: ev.Event) -> replies.Reply:
        return replies.TLS_NOT_AVAILABLE if isinstance(event, ev.Stls) else ok()

    exchanges = feed(proto, b"STLS\r\nCAPA\r\n", refuse)
    assert events(exchanges) == [ev.Stls(), ev.Capa()]
    assert not proto.discarded_plaintext


def test_tls_started_without_stls_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        POP3ServerProtocol().tls_started()
