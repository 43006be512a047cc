"""SASL PLAIN (RFC 4616) and LOGIN mechanisms: happy paths, malformed input, robustness."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailpost.auth.sasl import (
    MAX_MESSAGE_OCTETS,
    MECHANISMS,
    Challenge,
    Credentials,
    Failure,
    LoginMechanism,
    PlainMechanism,
    mechanism,
)


def plain(initial: bytes | None) -> object:
    return PlainMechanism().start(initial)


# --- factory ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["PLAIN", "plain", "Plain", "LOGIN", "login"])
def test_factory_is_case_insensitive(name: str) -> None:
    mech = mechanism(name)
    assert mech is not None
    assert mech.name == name.upper()


@pytest.mark.parametrize("name", ["CRAM-MD5", "", "PLAIN ", "PLAİN", "pla\u0131n", "XOAUTH2"])
def test_factory_rejects_unknown(name: str) -> None:
    assert mechanism(name) is None


def test_factory_returns_fresh_objects() -> None:
    assert mechanism("PLAIN") is not mechanism("PLAIN")
    assert MECHANISMS == ("PLAIN", "LOGIN")


# --- PLAIN -----------------------------------------------------------------------------------


def test_plain_initial_response_without_authzid() -> None:
    assert plain(b"\x00alice@example.test\x00s3cret") == Credentials(
        "", "alice@example.test", "s3cret"
    )


def test_plain_initial_response_with_authzid() -> None:
    assert plain(b"alice@example.test\x00alice@example.test\x00pw") == Credentials(
        "alice@example.test", "alice@example.test", "pw"
    )


def test_plain_utf8_fields() -> None:
    result = plain("\x00jürgen@exämple.test\x00pässwörd ✓".encode())
    assert result == Credentials("", "jürgen@exämple.test", "pässwörd ✓")


def test_plain_without_initial_response_sends_empty_challenge() -> None:
    mech = PlainMechanism()
    assert mech.start(None) == Challenge(b"")
    assert mech.step(b"\x00bob\x00hunter2") == Credentials("", "bob", "hunter2")


def test_plain_accepts_rfc_minimum_field_sizes() -> None:
    # RFC 4616 §2: servers MUST accept 255 octets in each field.
    authzid, authcid, password = b"z" * 255, b"c" * 255, b"p" * 255
    result = plain(authzid + b"\x00" + authcid + b"\x00" + password)
    assert result == Credentials("z" * 255, "c" * 255, "p" * 255)


def test_plain_accepts_maximal_message() -> None:
    message = b"z" * 255 + b"\x00" + b"c" * 255 + b"\x00" + b"p" * 512
    assert len(message) == MAX_MESSAGE_OCTETS
    assert isinstance(plain(message), Credentials)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"alice", id="no-nul"),
        pytest.param(b"\x00alice", id="one-nul"),
        pytest.param(b"alice\x00pw", id="one-nul-no-authzid"),
        pytest.param(b"\x00a\x00b\x00c", id="extra-nul"),
        pytest.param(b"a\x00b\x00c\x00", id="trailing-nul"),
        pytest.param(b"\x00\x00pw", id="empty-authcid"),
        pytest.param(b"\x00alice\x00", id="empty-password"),
        pytest.param(b"\x00\x00", id="only-nuls"),
        pytest.param(b"\x00al\xffice\x00pw", id="authcid-not-utf8"),
        pytest.param(b"\x00alice\x00p\xc3", id="password-truncated-utf8"),
        pytest.param(b"\xc0\xaf\x00alice\x00pw", id="authzid-overlong-utf8"),
        pytest.param(b"\x00\xed\xa0\x80\x00pw", id="encoded-surrogate"),
        pytest.param(b"\x00ali\r\nce\x00pw", id="crlf-in-authcid"),
        pytest.param(b"\x1b[31m\x00alice\x00pw", id="escape-in-authzid"),
        pytest.param(b"\x00" + b"c" * 256 + b"\x00pw", id="authcid-too-long"),
        pytest.param(b"z" * 256 + b"\x00alice\x00pw", id="authzid-too-long"),
        pytest.param(b"\x00alice\x00" + b"p" * 513, id="password-too-long"),
        pytest.param(b"\x00alice\x00" + b"p" * 5000, id="message-too-long"),
    ],
)
def test_plain_rejects_malformed(message: bytes) -> None:
    assert isinstance(plain(message), Failure)
    mech = PlainMechanism()
    assert mech.start(None) == Challenge(b"")
    assert isinstance(mech.step(message), Failure)


def test_plain_failure_reason_is_descriptive() -> None:
    result = plain(b"\x00a\x00b\x00c")
    assert isinstance(result, Failure)
    assert "NUL" in result.reason


def test_plain_step_after_completion_fails() -> None:
    mech = PlainMechanism()
    assert isinstance(mech.start(b"\x00a\x00b"), Credentials)
    assert isinstance(mech.step(b"\x00a\x00b"), Failure)


def test_plain_step_before_start_and_double_start_fail() -> None:
    assert isinstance(PlainMechanism().step(b"\x00a\x00b"), Failure)
    mech = PlainMechanism()
    mech.start(None)
    assert isinstance(mech.start(b"\x00a\x00b"), Failure)


def test_credentials_repr_hides_password() -> None:
    text = repr(Credentials("", "alice", "topsecret"))
    assert "alice" in text
    assert "topsecret" not in text


# --- LOGIN -----------------------------------------------------------------------------------


def test_login_full_exchange() -> None:
    mech = LoginMechanism()
    assert mech.start(None) == Challenge(b"Username:")
    assert mech.step(b"alice@example.test") == Challenge(b"Password:")
    assert mech.step(b"s3cret") == Credentials("", "alice@example.test", "s3cret")


def test_login_username_as_initial_response() -> None:
    mech = LoginMechanism()
    assert mech.start(b"alice@example.test") == Challenge(b"Password:")
    assert mech.step("pässword".encode()) == Credentials("", "alice@example.test", "pässword")


def test_login_step_after_completion_fails() -> None:
    mech = LoginMechanism()
    mech.start(b"alice")
    assert isinstance(mech.step(b"pw"), Credentials)
    assert isinstance(mech.step(b"pw"), Failure)


@pytest.mark.parametrize(
    "username",
    [b"", b"al\x00ice", b"al\xffice", b"a\r\nb", b"u" * 256],
    ids=["empty", "nul", "not-utf8", "crlf", "too-long"],
)
def test_login_rejects_bad_username(username: bytes) -> None:
    assert isinstance(LoginMechanism().start(username), Failure)
    mech = LoginMechanism()
    mech.start(None)
    assert isinstance(mech.step(username), Failure)
    # After a failure the exchange is over.
    assert isinstance(mech.step(b"pw"), Failure)


@pytest.mark.parametrize(
    "password",
    [b"", b"p\x00w", b"p\xfe", b"p" * 513],
    ids=["empty", "nul", "not-utf8", "too-long"],
)
def test_login_rejects_bad_password(password: bytes) -> None:
    mech = LoginMechanism()
    mech.start(b"alice")
    assert isinstance(mech.step(password), Failure)


def test_login_step_before_start_fails() -> None:
    assert isinstance(LoginMechanism().step(b"alice"), Failure)


# --- robustness ------------------------------------------------------------------------------


@given(
    name=st.sampled_from(MECHANISMS),
    initial=st.one_of(st.none(), st.binary(max_size=2000)),
    replies=st.lists(st.binary(max_size=2000), max_size=4),
)
def test_random_client_input_never_raises(
    name: str, initial: bytes | None, replies: list[bytes]
) -> None:
    mech = mechanism(name)
    assert mech is not None
    results = [mech.start(initial)] + [mech.step(reply) for reply in replies]
    assert all(isinstance(r, (Challenge, Credentials, Failure)) for r in results)
    # Once an exchange has ended (credentials or failure) it only ever fails afterwards.
    ended = [i for i, r in enumerate(results) if not isinstance(r, Challenge)]
    if ended:
        assert all(isinstance(r, Failure) for r in results[ended[0] + 1 :])


# codec="utf-8" leaves out lone surrogates, which no UTF-8 message can carry.
_IDENTITY_CHARS = st.characters(min_codepoint=0x20, codec="utf-8", exclude_characters="\x7f")
_PASSWORD_CHARS = st.characters(min_codepoint=1, codec="utf-8")


@given(
    authzid=st.text(_IDENTITY_CHARS, max_size=40),
    authcid=st.text(_IDENTITY_CHARS, min_size=1, max_size=40),
    password=st.text(_PASSWORD_CHARS, min_size=1, max_size=80),
)
def test_plain_round_trips_valid_messages(authzid: str, authcid: str, password: str) -> None:
    message = f"{authzid}\x00{authcid}\x00{password}".encode()
    assert plain(message) == Credentials(authzid, authcid, password)
