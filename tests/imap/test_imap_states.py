"""Connection states driven by the answers: AUTHENTICATE, IDLE, STARTTLS, COMPRESS, ENABLE,
LOGOUT, PREAUTH, pipelining, and the errors that catch a misbehaving session."""

from __future__ import annotations

import zlib

import pytest

from mailpost.imap import commands as c
from mailpost.imap import events as ev
from mailpost.imap.errors import LocalProtocolError
from mailpost.imap.protocol import IMAPServerProtocol, State
from mailpost.imap.responses import Bye, Continuation, Enabled, Tagged, Untagged


def machine(**options: object) -> IMAPServerProtocol:
    return IMAPServerProtocol(**options)  # type: ignore[arg-type]


def feed(proto: IMAPServerProtocol, data: bytes) -> ev.Event | ev.Sentinel:
    proto.receive_data(data)
    return proto.next_event()


# --- AUTHENTICATE (RFC 9051 §6.2.2, SASL-IR) ------------------------------------------------


def test_authenticate_with_continuations() -> None:
    proto = machine()
    assert feed(proto, b"A01 AUTHENTICATE PLAIN\r\n") == c.Authenticate("A01", "PLAIN")
    assert proto.send(Continuation(data=b"")) == b"+ \r\n"
    assert proto.state is State.AUTHENTICATE
    event = feed(proto, b"dGVzdAB0ZXN0AHRlc3Q=\r\n")
    assert event == ev.AuthenticateResponse("A01", b"test\x00test\x00test")
    assert proto.send(Continuation(data=b"more?")) == b"+ bW9yZT8=\r\n"
    assert feed(proto, b"\r\n") == ev.AuthenticateResponse("A01", b"")
    assert proto.send(Tagged("A01", "OK", "Success")) == b"A01 OK Success\r\n"
    assert proto.authenticated and proto.state is State.COMMAND
    assert feed(proto, b"A02 NOOP\r\n") == c.Noop("A02")


def test_authenticate_with_initial_response_needs_no_continuation() -> None:
    proto = machine()
    event = feed(proto, b"A03 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n")
    assert event == c.Authenticate("A03", "PLAIN", b"test\x00test\x00test")
    proto.send(Tagged("A03", "OK", "Success"))
    assert proto.authenticated


def test_authenticate_cancel_and_invalid_base64_are_answered_bad() -> None:
    proto = machine()
    feed(proto, b"a AUTHENTICATE LOGIN\r\n")
    proto.send(Continuation(data=b"Username:"))
    assert feed(proto, b"*\r\n") == ev.AuthenticateCancel("a")
    proto.send(Tagged("a", "BAD", "cancelled"))
    assert not proto.authenticated
    feed(proto, b"b AUTHENTICATE LOGIN\r\n")
    proto.send(Continuation(data=b"Username:"))
    bad = feed(proto, b"AAA=BBB\r\n")
    assert bad == ev.BadCommand("b", "Invalid base64 in AUTHENTICATE response")
    proto.send(bad.response)
    assert feed(proto, b"c NOOP\r\n") == c.Noop("c")


def test_failed_authentication_leaves_the_state_unauthenticated() -> None:
    proto = machine()
    feed(proto, b"a LOGIN u p\r\n")
    proto.send(Tagged("a", "NO", "nope", "AUTHENTICATIONFAILED"))
    assert not proto.authenticated


# --- IDLE (RFC 2177) ------------------------------------------------------------------------


def test_idle_waits_for_done_after_the_continuation() -> None:
    proto = machine(authenticated=True)
    assert feed(proto, b"A002 IDLE\r\nDONE\r\n") == c.Idle("A002")
    assert proto.next_event() is ev.PAUSED  # DONE is not read before "+ idling"
    assert proto.send(Continuation("idling")) == b"+ idling\r\n"
    assert proto.state is State.IDLE
    assert proto.next_event() == ev.Done("A002")
    proto.send(Tagged("A002", "OK", "IDLE terminated"))
    assert proto.state is State.COMMAND


def test_idle_accepts_done_in_any_case_and_untagged_data_meanwhile() -> None:
    proto = machine(authenticated=True)
    feed(proto, b"a IDLE\r\n")
    proto.send(Continuation("idling"))
    assert proto.next_event() is ev.NEED_DATA
    assert proto.send(Untagged("OK", "still here")) == b"* OK still here\r\n"
    assert feed(proto, b"dOnE\r\n") == ev.Done("a")


def test_a_command_instead_of_done_ends_idle_with_bad() -> None:
    proto = machine(authenticated=True)
    feed(proto, b"a IDLE\r\n")
    proto.send(Continuation("idling"))
    event = feed(proto, b"b NOOP\r\n")
    assert event == ev.BadCommand("a", "Expected DONE")
    proto.send(event.response)
    assert proto.state is State.COMMAND


def test_refused_idle_stays_in_command_state() -> None:
    proto = machine(authenticated=True)
    feed(proto, b"a IDLE\r\nb NOOP\r\n")
    proto.send(Tagged("a", "NO", "not now"))
    assert proto.next_event() == c.Noop("b")


# --- STARTTLS (RFC 9051 §6.2.1, CVE-2011-0411) ----------------------------------------------


def test_starttls_never_parses_what_followed_it() -> None:
    proto = machine()
    assert feed(proto, b"a STARTTLS\r\nb CAPABILITY\r\n") == c.StartTLS("a")
    proto.send(Tagged("a", "OK", "Begin TLS negotiation now"))
    assert proto.state is State.TLS_PENDING
    assert proto.discarded_plaintext
    assert proto.next_event() is ev.PAUSED
    proto.receive_data(b"c LOGIN injected x\r\n")  # plaintext before the handshake
    assert proto.take_unconsumed() == b"b CAPABILITY\r\n"
    proto.tls_started()
    assert feed(proto, b"d CAPABILITY\r\n") == c.Capability("d")


def test_tls_started_needs_an_accepted_starttls() -> None:
    with pytest.raises(LocalProtocolError):
        machine().tls_started()


# --- COMPRESS (RFC 4978 §3) -----------------------------------------------------------------


def test_compress_hands_over_the_first_compressed_octets() -> None:
    proto = machine(authenticated=True)
    compressor = zlib.compressobj(wbits=-15)
    first = compressor.compress(b"b NOOP\r\n") + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert feed(proto, b"a COMPRESS DEFLATE\r\n" + first) == c.Compress("a", "DEFLATE")
    proto.send(Tagged("a", "OK", "DEFLATE active"))
    assert proto.state is State.COMPRESS_PENDING
    with pytest.raises(LocalProtocolError):
        proto.receive_data(b"more")
    raw = proto.take_unconsumed()
    assert raw == first
    inflater = zlib.decompressobj(wbits=-15)
    assert feed(proto, inflater.decompress(raw)) == c.Noop("b")


# --- ENABLE and UTF-8 mode (RFC 5161, RFC 6855, RFC 9051 §5.1) ------------------------------


def test_enabled_response_switches_mailbox_names_to_utf8() -> None:
    proto = machine(authenticated=True)
    assert feed(proto, b'a SELECT "&ZeVnLIqe-"\r\n') == c.Select("a", "日本語")
    proto.send(Tagged("a", "OK"))
    bad = feed(proto, 'b SELECT "日本語"\r\n'.encode())
    assert isinstance(bad, ev.BadCommand)
    proto.send(bad.response)
    assert feed(proto, b"c ENABLE UTF8=ACCEPT\r\n") == c.Enable("c", ("UTF8=ACCEPT",))
    assert proto.send(Enabled(("UTF8=ACCEPT",))) == b"* ENABLED UTF8=ACCEPT\r\n"
    proto.send(Tagged("c", "OK"))
    assert proto.utf8_enabled
    assert feed(proto, 'd SELECT "日本語"\r\n'.encode()) == c.Select("d", "日本語")
    proto.send(Tagged("d", "OK"))
    assert feed(proto, b'e SELECT "&ZeVnLIqe-"\r\n') == c.Select("e", "&ZeVnLIqe-")
    proto.send(Tagged("e", "OK"))
    charset = feed(proto, b"f SEARCH CHARSET UTF-8 ALL\r\n")  # RFC 6855 §3
    assert isinstance(charset, ev.BadCommand)


def test_utf8_names_are_normalised_to_nfc() -> None:
    proto = machine(authenticated=True)
    feed(proto, b"a ENABLE IMAP4rev2\r\n")
    proto.send(Enabled(("IMAP4rev2",)))
    proto.send(Tagged("a", "OK"))
    decomposed = "e\u0301t\u00e9".encode()
    assert feed(proto, b'b CREATE "' + decomposed + b'"\r\n') == c.Create("b", "\u00e9t\u00e9")


def test_response_text_is_ascii_until_utf8_is_enabled() -> None:
    proto = machine(authenticated=True)
    feed(proto, b"a NOOP\r\n")
    assert proto.send(Tagged("a", "OK", "été")) == b"a OK ?t?\r\n"
    feed(proto, b"b ENABLE IMAP4rev2\r\n")
    proto.send(Enabled(("IMAP4REV2",)))
    assert proto.send(Tagged("b", "OK", "été")) == "b OK été\r\n".encode()


# --- LOGOUT, BYE, PREAUTH, EOF --------------------------------------------------------------


def test_logout_closes_after_bye_and_the_tagged_ok() -> None:
    proto = machine()
    feed(proto, b"A023 LOGOUT\r\nA024 NOOP\r\n")
    assert proto.send(Bye("IMAP4rev2 Server logging out")) == (
        b"* BYE IMAP4rev2 Server logging out\r\n"
    )
    assert proto.state is State.COMMAND
    proto.send(Tagged("A023", "OK", "LOGOUT completed"))
    assert proto.state is State.CLOSED
    assert proto.next_event() == ev.ConnectionClosed()
    with pytest.raises(LocalProtocolError):
        proto.send(Untagged("OK"))


def test_bye_at_any_other_time_closes() -> None:
    proto = machine()
    feed(proto, b"a NOOP\r\n")
    proto.send(Bye("shutting down"))
    assert proto.state is State.CLOSED


def test_preauth_greeting_authenticates() -> None:
    proto = machine()
    proto.send(Untagged("PREAUTH", "welcome"))
    assert proto.authenticated


def test_eof_in_the_middle_of_a_command_closes() -> None:
    proto = machine()
    proto.receive_data(b"a LOGIN {5}\r\n")
    proto.next_event()
    proto.accept_literal()
    proto.receive_data(b"ali")
    proto.receive_data(b"")
    assert proto.next_event() == ev.ConnectionClosed()
    with pytest.raises(LocalProtocolError):
        proto.receive_data(b"x")


# --- pipelining and misuse ------------------------------------------------------------------


def test_pipelined_commands_wait_for_the_previous_answer() -> None:
    proto = machine(authenticated=True)
    assert feed(proto, b"a NOOP\r\nb CHECK\r\n") == c.Noop("a")
    assert proto.next_event() is ev.PAUSED
    assert proto.awaiting_reply == c.Noop("a")
    proto.send(Tagged("a", "OK"))
    assert proto.next_event() == c.Check("b")


def test_a_tagless_bad_is_answered_untagged() -> None:
    proto = machine()
    event = feed(proto, b"* NOOP\r\na NOOP\r\n")
    assert isinstance(event, ev.BadCommand) and event.tag is None
    assert proto.send(event.response) == b"* BAD Missing or invalid tag\r\n"
    assert proto.next_event() == c.Noop("a")


@pytest.mark.parametrize(
    "misuse",
    [
        lambda p: p.send(Tagged("zz", "OK")),  # answers nothing pending
        lambda p: p.send(Continuation("go")),  # NOOP expects no continuation
        lambda p: p.accept_literal(),  # no literal waiting
        lambda p: Tagged("a", "PREAUTH"),  # not a tagged status
        lambda p: p.send(Tagged("a", "OK", code="BAD]CODE")),  # would break the framing
    ],
)
def test_session_mistakes_raise_local_protocol_error(misuse: object) -> None:
    proto = machine()
    feed(proto, b"a NOOP\r\n")
    with pytest.raises(LocalProtocolError):
        misuse(proto)  # type: ignore[operator]


def test_limits_switch_at_authentication() -> None:
    proto = machine()
    line = b"a LOGIN " + b"u" * 9000 + b" p\r\n"
    too_long = feed(proto, line)
    assert isinstance(too_long, ev.BadCommand) and too_long.code == "LIMIT"
    proto.send(too_long.response)
    proto.authenticated = True
    assert feed(proto, line) == c.Login("a", "u" * 9000, "p")
