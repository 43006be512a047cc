"""The POP3 machine with APOP on (RFC 1939 §7): the greeting's timestamp, the APOP command,
and the rule that it needs TLS like USER/PASS (RFC 2595 §2.3, RFC 8314 §4.1)."""

from __future__ import annotations

import pytest

from mailpost.pop3 import events as ev
from mailpost.pop3 import replies
from mailpost.pop3.protocol import LocalProtocolError, POP3ServerProtocol, State
from mailpost.pop3.replies import ok
from tests.pop3.transcript import events, feed, statuses

TIMESTAMP = "<1896.697170952@dbc.mtview.ca.us>"
DIGEST = "c4c9334bac560ecc979e58001b3e22fb"
GREETING = ok(f"POP3 server ready {TIMESTAMP}")


def greeted(**options: object) -> POP3ServerProtocol:
    """A machine with APOP on that has sent its greeting (under TLS unless told otherwise)."""
    options.setdefault("tls_active", True)
    proto = POP3ServerProtocol(apop=True, **options)  # type: ignore[arg-type]
    assert proto.greeting(GREETING) == f"+OK POP3 server ready {TIMESTAMP}\r\n".encode()
    return proto


def refuse_apop(proto: POP3ServerProtocol, event: ev.Event) -> replies.Reply:
    if isinstance(event, ev.Apop):
        return replies.err("invalid user name or password", "AUTH")
    return event.reply if isinstance(event, ev.Invalid) else ok()


# --- the greeting ------------------------------------------------------------------------------


def test_the_greeting_timestamp_is_kept() -> None:
    assert greeted().apop_timestamp == TIMESTAMP
    assert POP3ServerProtocol().apop_timestamp is None


@pytest.mark.parametrize("text", [
    "POP3 server ready",  # no timestamp
    "ready <a@b> <c@d>",  # two
    "ready <no-at-sign>",
    "ready <a b@c>",  # a space inside
    "ready <a@b",
])
def test_with_apop_the_greeting_needs_exactly_one_timestamp(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        POP3ServerProtocol(apop=True).greeting(ok(text))


def test_the_greeting_is_sent_once() -> None:
    proto = greeted()
    with pytest.raises(LocalProtocolError):
        proto.greeting(ok("POP3 server ready <2@host>"))
    assert proto.apop_timestamp == TIMESTAMP


def test_capa_does_not_announce_apop() -> None:
    [exchange] = feed(greeted(), b"CAPA\r\n")
    assert b"APOP" not in exchange.wire  # RFC 2449 §6: the timestamp is the announcement


# --- APOP name digest --------------------------------------------------------------------------


def test_apop_is_an_event_with_the_greeting_timestamp() -> None:
    proto = greeted()
    exchanges = feed(proto, f"APOP mrose {DIGEST}\r\n".encode())
    assert events(exchanges) == [ev.Apop("mrose", TIMESTAMP, DIGEST)]
    assert statuses(exchanges) == ["+OK"]
    assert proto.state is State.TRANSACTION


def test_apop_digest_is_lowercased_and_hidden_from_repr() -> None:
    [exchange] = feed(greeted(), f"apop Alice@Example.test {DIGEST.upper()}\r\n".encode())
    assert exchange.event == ev.Apop("Alice@Example.test", TIMESTAMP, DIGEST)
    assert DIGEST not in repr(exchange.event)


def test_a_failed_apop_stays_in_authorization_and_may_be_retried() -> None:
    proto = greeted()
    exchanges = feed(proto, f"APOP a {DIGEST}\r\nAPOP a {DIGEST}\r\n".encode(), refuse_apop)
    assert statuses(exchanges) == ["-ERR [AUTH] invalid user name or password"] * 2
    assert proto.state is State.AUTHORIZATION


def test_apop_after_a_user_forgets_the_user() -> None:
    proto = greeted()
    exchanges = feed(proto, f"USER a\r\nAPOP b {DIGEST}\r\nPASS x\r\n".encode(), refuse_apop)
    assert events(exchanges)[1] == ev.Apop("b", TIMESTAMP, DIGEST)
    assert statuses(exchanges)[2] == "-ERR [AUTH] send USER first"


@pytest.mark.parametrize("line", [
    b"APOP\r\n",
    b"APOP mrose\r\n",
    f"APOP {DIGEST}\r\n".encode(),  # the digest alone: no name
    b"APOP mrose c4c9334bac560ecc979e58001b3e22f\r\n",  # 31 digits
    b"APOP mrose c4c9334bac560ecc979e58001b3e22fbb\r\n",  # 33 digits
    b"APOP mrose x4c9334bac560ecc979e58001b3e22fb\r\n",  # not hex
])
def test_malformed_apop_is_a_syntax_error(line: bytes) -> None:
    proto = greeted()
    [exchange] = feed(proto, line)
    assert exchange.status == "-ERR [AUTH] syntax: APOP name digest (32 hex digits)"
    assert proto.state is State.AUTHORIZATION


def test_apop_name_is_utf8() -> None:
    [exchange] = feed(greeted(), f"APOP jörg@example.test {DIGEST}\r\n".encode())
    assert exchange.event == ev.Apop("jörg@example.test", TIMESTAMP, DIGEST)
    [exchange] = feed(greeted(), b"APOP j\xff " + DIGEST.encode() + b"\r\n")
    assert exchange.status == "-ERR invalid character in command line"


def test_a_long_address_fits_on_an_apop_line() -> None:
    name = "a" * 64 + "@" + "b" * 180 + ".example"  # beyond 255 octets with the command
    [exchange] = feed(greeted(), f"APOP {name} {DIGEST}\r\n".encode())
    assert exchange.event == ev.Apop(name, TIMESTAMP, DIGEST)


def test_apop_is_not_valid_after_login() -> None:
    proto = greeted()
    feed(proto, f"APOP a {DIGEST}\r\n".encode())
    assert statuses(feed(proto, f"APOP a {DIGEST}\r\n".encode())) == [
        "-ERR command not valid in this state"]


# --- TLS (RFC 2595 §2.3, RFC 8314 §4.1) --------------------------------------------------------


def test_apop_before_tls_is_refused_like_user() -> None:
    proto = greeted(tls_active=False)
    [exchange] = feed(proto, f"APOP a {DIGEST}\r\n".encode())
    assert isinstance(exchange.event, ev.Invalid)
    assert exchange.status == (
        "-ERR [SYS/PERM] authentication requires TLS: use STLS or the pop3s port")


def test_apop_without_tls_where_the_operator_allows_it() -> None:
    proto = greeted(tls_active=False, allow_insecure_auth=True)
    assert events(feed(proto, f"APOP a {DIGEST}\r\n".encode())) == [
        ev.Apop("a", TIMESTAMP, DIGEST)]


def test_apop_after_stls_uses_the_greeting_timestamp() -> None:
    proto = greeted(tls_active=False)
    assert statuses(feed(proto, b"STLS\r\n")) == ["+OK begin TLS negotiation"]
    proto.tls_started()
    assert events(feed(proto, f"APOP a {DIGEST}\r\n".encode())) == [
        ev.Apop("a", TIMESTAMP, DIGEST)]


def test_apop_off_refuses_a_timestamp_in_the_greeting_and_the_command() -> None:
    proto = POP3ServerProtocol(tls_active=True)
    with pytest.raises(LocalProtocolError):
        proto.greeting(GREETING)
    assert proto.greeting(ok("mail.example.test POP3 server ready")).startswith(b"+OK")
    assert statuses(feed(proto, f"APOP a {DIGEST}\r\n".encode())) == [
        "-ERR [AUTH] APOP is not enabled, use USER/PASS or AUTH over TLS"]


def test_apop_on_but_no_greeting_yet_refuses_the_command() -> None:
    proto = POP3ServerProtocol(apop=True, tls_active=True)
    assert statuses(feed(proto, f"APOP a {DIGEST}\r\n".encode()))[0].startswith(
        "-ERR [AUTH] APOP is not enabled")
