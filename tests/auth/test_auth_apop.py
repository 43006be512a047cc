"""APOP (RFC 1939 §7): digests, greeting timestamps, the verifier, and
``Authenticator.authenticate_with`` (the throttled login path for proofs other than passwords)."""

from __future__ import annotations

import re

import pytest

from mailpost.auth.apop import (
    APOPVerifier,
    TimestampSource,
    apop_digest,
    digest_matches,
    is_digest_syntax,
)
from mailpost.auth.apop_key import APOPKey
from mailpost.auth.authenticator import Authenticator
from mailpost.auth.ratelimit import AuthThrottle
from mailpost.store.types import Account

# The example of RFC 1939 §7.
RFC_TIMESTAMP = "<1896.697170952@dbc.mtview.ca.us>"
RFC_SECRET = "tanstaaf"
RFC_DIGEST = "c4c9334bac560ecc979e58001b3e22fb"

ALICE = Account(id=1, address="alice@example.test", password_hash="unused")
BOB = Account(id=2, address="bob@example.test", password_hash="unused")
IP = "192.0.2.7"
MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")


# --- digest ------------------------------------------------------------------------------------


def test_digest_of_the_rfc_example() -> None:
    assert apop_digest(RFC_TIMESTAMP, RFC_SECRET) == RFC_DIGEST


def test_digest_matches_accepts_the_right_digest_in_either_case() -> None:
    assert digest_matches(RFC_TIMESTAMP, RFC_SECRET, RFC_DIGEST)
    assert digest_matches(RFC_TIMESTAMP, RFC_SECRET, RFC_DIGEST.upper())


@pytest.mark.parametrize("digest", [
    "c4c9334bac560ecc979e58001b3e22fa",  # one digit off
    RFC_DIGEST[:-1],  # too short
    RFC_DIGEST + "0",  # too long
    "g4c9334bac560ecc979e58001b3e22fb",  # not hex
    "",
])
def test_digest_matches_refuses_anything_else(digest: str) -> None:
    assert not digest_matches(RFC_TIMESTAMP, RFC_SECRET, digest)


def test_digest_depends_on_timestamp_and_secret() -> None:
    assert not digest_matches("<1897.697170952@dbc.mtview.ca.us>", RFC_SECRET, RFC_DIGEST)
    assert not digest_matches(RFC_TIMESTAMP, "tanstaaF", RFC_DIGEST)


def test_digest_of_a_non_ascii_secret_uses_utf8() -> None:
    assert apop_digest("<1@h>", "pässword") == apop_digest("<1@h>", "pässword")
    assert digest_matches("<1@h>", "pässword", apop_digest("<1@h>", "pässword"))
    assert not digest_matches("<1@h>", "passwörd", apop_digest("<1@h>", "pässword"))


def test_digest_syntax() -> None:
    assert is_digest_syntax(RFC_DIGEST)
    assert not is_digest_syntax(RFC_DIGEST + " ")


# --- timestamps --------------------------------------------------------------------------------


def test_timestamps_are_msg_ids_naming_the_host_and_process() -> None:
    source = TimestampSource("mail.example.test", pid=4242)
    stamp = source()
    assert MSG_ID.fullmatch(stamp), stamp
    assert stamp.startswith("<4242.1.") and stamp.endswith("@mail.example.test>")


def test_timestamps_are_unique_even_with_a_stopped_clock() -> None:
    source = TimestampSource("mail.example.test", clock=lambda: 1_700_000_000)
    stamps = [source() for _ in range(2000)]
    assert len(set(stamps)) == len(stamps)


def test_timestamps_of_two_sources_with_the_same_pid_and_clock_differ() -> None:
    """Two processes that got the same pid at the same instant: the random part differs."""
    first = TimestampSource("h.example", clock=lambda: 5, pid=1)
    second = TimestampSource("h.example", clock=lambda: 5, pid=1)
    assert first() != second()


# --- verifier ----------------------------------------------------------------------------------


class SecretDirectory:
    """Sealed secrets by address, as the store keeps them."""

    def __init__(self, secrets: dict[str, bytes]) -> None:
        self.secrets = secrets
        self.lookups: list[str] = []

    async def get_apop_secret(self, address: str) -> bytes | None:
        self.lookups.append(address)
        return self.secrets.get(address.lower())


@pytest.fixture
def key() -> APOPKey:
    return APOPKey(bytes(range(32)))


@pytest.fixture
def verifier(key: APOPKey) -> APOPVerifier:
    sealed = {ALICE.address: key.seal(ALICE.address, RFC_SECRET)}
    return APOPVerifier(SecretDirectory(sealed), key)


async def test_verifier_accepts_the_digest_of_the_sealed_secret(verifier: APOPVerifier) -> None:
    assert await verifier.matches(ALICE, RFC_TIMESTAMP, RFC_DIGEST)
    assert not await verifier.matches(ALICE, RFC_TIMESTAMP, "0" * 32)
    assert not await verifier.matches(ALICE, "<other@host>", RFC_DIGEST)


async def test_verifier_refuses_accounts_without_a_secret(verifier: APOPVerifier) -> None:
    assert not await verifier.matches(BOB, RFC_TIMESTAMP, RFC_DIGEST)
    assert not await verifier.matches(None, RFC_TIMESTAMP, RFC_DIGEST)


async def test_verifier_refuses_a_secret_sealed_for_another_account(key: APOPKey) -> None:
    moved = APOPVerifier(SecretDirectory({BOB.address: key.seal(ALICE.address, RFC_SECRET)}),
                         key)
    assert not await moved.matches(BOB, RFC_TIMESTAMP, RFC_DIGEST)


async def test_verifier_refuses_a_secret_sealed_with_another_key(key: APOPKey) -> None:
    other = APOPKey(bytes(32))
    directory = SecretDirectory({ALICE.address: other.seal(ALICE.address, RFC_SECRET)})
    assert not await APOPVerifier(directory, key).matches(ALICE, RFC_TIMESTAMP, RFC_DIGEST)


# --- Authenticator.authenticate_with -----------------------------------------------------------


class Directory:
    def __init__(self, *accounts: Account) -> None:
        self.accounts = {account.address: account for account in accounts}

    async def get_account(self, address: str) -> Account | None:
        return self.accounts.get(address.lower())


class Check:
    """A proof check that answers ``result`` and records what it was asked about."""

    def __init__(self, result: bool) -> None:
        self.result = result
        self.seen: list[Account | None] = []

    async def __call__(self, account: Account | None) -> bool:
        self.seen.append(account)
        return self.result


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def throttle() -> AuthThrottle:
    return AuthThrottle(max_failures=3)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def authenticator(throttle: AuthThrottle, sleeps: Sleeps) -> Authenticator:
    return Authenticator(Directory(ALICE), throttle, sleeps)


async def test_accepted_proof_logs_in_and_clears_failures(
        authenticator: Authenticator, throttle: AuthThrottle) -> None:
    throttle.record_failure(IP, ALICE.address)
    check = Check(True)
    result = await authenticator.authenticate_with("Alice@Example.test", IP, check)
    assert (result.ok, result.account, result.reason) == (True, ALICE, "ok")
    assert check.seen == [ALICE]
    assert throttle.delay(IP, ALICE.address) == 0.0


async def test_refused_proof_is_a_failed_login(
        authenticator: Authenticator, throttle: AuthThrottle, sleeps: Sleeps) -> None:
    result = await authenticator.authenticate_with(ALICE.address, IP, Check(False))
    assert (result.ok, result.account, result.reason) == (False, None, "invalid-credentials")
    assert throttle.delay(IP) > 0 and throttle.delay("198.51.100.1", ALICE.address) > 0
    await authenticator.authenticate_with(ALICE.address, IP, Check(True))
    assert sleeps.delays == [2.0]  # the next attempt waits, like one after a wrong password


async def test_unknown_account_is_checked_then_refused(
        authenticator: Authenticator, throttle: AuthThrottle) -> None:
    check = Check(True)  # even a check that says yes cannot log in a missing account
    result = await authenticator.authenticate_with("nobody@example.test", IP, check)
    assert (result.ok, result.reason) == (False, "invalid-credentials")
    assert check.seen == [None]
    assert throttle.delay(IP) > 0


async def test_failures_lead_to_the_throttle_without_checking(
        authenticator: Authenticator, throttle: AuthThrottle) -> None:
    for _ in range(3):
        await authenticator.authenticate_with(ALICE.address, IP, Check(False))
    assert throttle.too_many(IP)
    check = Check(True)
    result = await authenticator.authenticate_with(ALICE.address, IP, check)
    assert (result.ok, result.reason) == (False, "throttled")
    assert check.seen == []


@pytest.mark.parametrize("name", ["", "a" * 1025 + "@example.test", "\udcff@example.test"])
async def test_malformed_names_are_refused_unchecked(
        authenticator: Authenticator, throttle: AuthThrottle, name: str) -> None:
    check = Check(True)
    result = await authenticator.authenticate_with(name, IP, check)
    assert (result.ok, result.reason) == (False, "malformed")
    assert check.seen == []
    assert throttle.delay(IP) > 0  # counted against the network
