"""The authenticator: verification, unknown users, authorisation, throttling and the cache."""

from __future__ import annotations

import asyncio

import pytest

from mailpost.auth import passwords
from mailpost.auth.authenticator import Authenticator, VerificationCache
from mailpost.auth.ratelimit import AuthThrottle
from mailpost.auth.sasl import Credentials
from mailpost.store.types import Account

ALICE = "alice@example.test"
IP = "192.0.2.10"


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


class FakeDirectory:
    """Implements only what authentication needs: case-insensitive get_account."""

    def __init__(self, *accounts: Account) -> None:
        self.accounts = {account.address.lower(): account for account in accounts}
        self.lookups: list[str] = []

    async def get_account(self, address: str) -> Account | None:
        self.lookups.append(address)
        return self.accounts.get(address.lower())


class SleepRecorder:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class VerifySpy:
    """Stands in for argon2: a hash "h:<password>" matches exactly that password."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, encoded: str, password: str) -> bool:
        self.calls.append((encoded, password))
        return encoded == f"h:{password}"


@pytest.fixture
def verify(monkeypatch: pytest.MonkeyPatch) -> VerifySpy:
    spy = VerifySpy()
    monkeypatch.setattr(passwords, "verify_password", spy)
    return spy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def throttle(clock: FakeClock) -> AuthThrottle:
    return AuthThrottle(clock=clock)


@pytest.fixture
def sleep() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory(Account(id=1, address=ALICE, password_hash="h:correct horse"))


@pytest.fixture
def auth(
    directory: FakeDirectory, throttle: AuthThrottle, sleep: SleepRecorder, clock: FakeClock
) -> Authenticator:
    return Authenticator(directory, throttle, sleep, cache=VerificationCache(clock=clock))


def creds(password: str, authcid: str = ALICE, authzid: str = "") -> Credentials:
    return Credentials(authzid=authzid, authcid=authcid, password=password)


# --- verification ----------------------------------------------------------------------------


async def test_real_argon2_success_and_failure(
    throttle: AuthThrottle, sleep: SleepRecorder
) -> None:
    stored = passwords.hash_password("pw")
    account = Account(id=7, address="dave@example.test", password_hash=stored)
    auth = Authenticator(FakeDirectory(account), throttle, sleep)
    good = await auth.authenticate(creds("pw", "Dave@Example.test"), IP)
    assert (good.ok, good.account, good.reason) == (True, account, "ok")
    bad = await auth.authenticate(creds("wrong", "dave@example.test"), IP)
    assert (bad.ok, bad.account, bad.reason) == (False, None, "invalid-credentials")


async def test_success(auth: Authenticator, verify: VerifySpy, sleep: SleepRecorder) -> None:
    result = await auth.authenticate(creds("correct horse"), IP)
    assert result.ok
    assert result.reason == "ok"
    assert result.account is not None and result.account.address == ALICE
    assert verify.calls == [("h:correct horse", "correct horse")]
    assert sleep.delays == []


async def test_wrong_password(
    auth: Authenticator, verify: VerifySpy, throttle: AuthThrottle
) -> None:
    result = await auth.authenticate(creds("battery staple"), IP)
    assert (result.ok, result.account, result.reason) == (False, None, "invalid-credentials")
    assert len(verify.calls) == 1
    # Counted against both the network and the account.
    assert throttle.delay(IP) == 2.0
    assert throttle.delay("198.51.100.1", ALICE.upper()) == 2.0


async def test_unknown_user_verifies_against_dummy_hash(
    auth: Authenticator, verify: VerifySpy, throttle: AuthThrottle
) -> None:
    result = await auth.authenticate(creds("whatever", "nobody@example.test"), IP)
    assert (result.ok, result.reason) == (False, "invalid-credentials")
    assert verify.calls == [(passwords.DUMMY_HASH, "whatever")]
    assert throttle.delay(IP) == 2.0


async def test_unknown_user_fails_even_if_dummy_check_matches(
    auth: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(passwords, "verify_password", lambda encoded, password: True)
    result = await auth.authenticate(creds("anything", "nobody@example.test"), IP)
    assert (result.ok, result.account, result.reason) == (False, None, "invalid-credentials")


async def test_success_clears_earlier_failures(
    auth: Authenticator, verify: VerifySpy, throttle: AuthThrottle
) -> None:
    await auth.authenticate(creds("nope"), IP)
    assert (await auth.authenticate(creds("correct horse"), IP)).ok
    assert throttle.delay(IP, ALICE) == 0.0


# --- authorization identity ------------------------------------------------------------------


@pytest.mark.parametrize("authzid", ["", ALICE, "ALICE@example.TEST"])
async def test_authzid_naming_oneself_is_accepted(
    auth: Authenticator, verify: VerifySpy, authzid: str
) -> None:
    result = await auth.authenticate(creds("correct horse", authzid=authzid), IP)
    assert result.ok


async def test_authzid_of_someone_else_is_authorization_failure(
    auth: Authenticator, verify: VerifySpy, throttle: AuthThrottle
) -> None:
    result = await auth.authenticate(creds("correct horse", authzid="bob@example.test"), IP)
    assert (result.ok, result.account, result.reason) == (False, None, "authorization-failed")
    # The password was right: the account is not penalised, the network is.
    assert throttle.delay("198.51.100.1", ALICE) == 0.0
    assert throttle.delay(IP) == 2.0


async def test_foreign_authzid_with_wrong_password_is_invalid_credentials(
    auth: Authenticator, verify: VerifySpy
) -> None:
    # AUTHORIZATIONFAILED only once authentication succeeded (RFC 5530).
    result = await auth.authenticate(creds("wrong", authzid="bob@example.test"), IP)
    assert result.reason == "invalid-credentials"


# --- malformed -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        creds("pw", authcid=""),
        creds(""),
        creds("p\udc80w"),
        creds("pw", authcid="a" * 256),
        creds("p" * 513),
    ],
    ids=["empty-authcid", "empty-password", "lone-surrogate", "long-authcid", "long-password"],
)
async def test_malformed_credentials(
    auth: Authenticator, verify: VerifySpy, directory: FakeDirectory, credentials: Credentials
) -> None:
    result = await auth.authenticate(credentials, IP)
    assert (result.ok, result.reason) == (False, "malformed")
    assert verify.calls == []
    assert directory.lookups == []


# --- throttling ------------------------------------------------------------------------------


async def test_delays_grow_then_network_is_throttled(
    auth: Authenticator, verify: VerifySpy, sleep: SleepRecorder, throttle: AuthThrottle
) -> None:
    reasons = [(await auth.authenticate(creds(f"guess{i}"), IP)).reason for i in range(7)]
    assert reasons == ["invalid-credentials"] * 5 + ["throttled"] * 2
    assert sleep.delays == [2.0, 4.0, 8.0, 15.0]
    assert len(verify.calls) == 5  # throttled attempts are refused without a check
    # Even the right password is refused while the network is blocked ...
    assert (await auth.authenticate(creds("correct horse"), IP)).reason == "throttled"
    # ... but other networks may still log in to the account, after the account's delay.
    assert (await auth.authenticate(creds("correct horse"), "198.51.100.1")).ok
    assert sleep.delays[-1] == 15.0


async def test_block_lifts_after_window(
    auth: Authenticator, verify: VerifySpy, clock: FakeClock
) -> None:
    for i in range(5):
        await auth.authenticate(creds(f"guess{i}"), IP)
    assert (await auth.authenticate(creds("correct horse"), IP)).reason == "throttled"
    clock.now += 900.0
    assert (await auth.authenticate(creds("correct horse"), IP)).ok


async def test_parallel_guesses_are_serialised(
    auth: Authenticator, verify: VerifySpy, sleep: SleepRecorder
) -> None:
    results = await asyncio.gather(
        *(auth.authenticate(creds(f"guess{i}"), f"2001:db8::{i + 1:x}") for i in range(20))
    )
    reasons = [result.reason for result in results]
    assert reasons.count("invalid-credentials") == 5
    assert reasons.count("throttled") == 15
    assert sleep.delays == [2.0, 4.0, 8.0, 15.0]
    assert len(verify.calls) == 5


async def test_parallel_logins_cost_one_verification(
    auth: Authenticator, verify: VerifySpy, sleep: SleepRecorder
) -> None:
    attempts = [auth.authenticate(creds("correct horse"), IP) for _ in range(6)]
    results = await asyncio.gather(*attempts)
    assert all(result.ok for result in results)
    assert len(verify.calls) == 1
    assert sleep.delays == []


async def test_cancelled_attempt_releases_the_network(
    directory: FakeDirectory, throttle: AuthThrottle, verify: VerifySpy
) -> None:
    throttle.record_failure(IP, None)
    gate = asyncio.Event()

    async def blocking_sleep(seconds: float) -> None:
        await gate.wait()

    auth = Authenticator(directory, throttle, blocking_sleep)
    stuck = asyncio.create_task(auth.authenticate(creds("x"), IP))
    await asyncio.sleep(0)
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    gate.set()
    assert (await auth.authenticate(creds("correct horse"), IP)).ok


# --- verification cache ----------------------------------------------------------------------


async def test_second_login_uses_cache(auth: Authenticator, verify: VerifySpy) -> None:
    assert (await auth.authenticate(creds("correct horse"), IP)).ok
    assert (await auth.authenticate(creds("correct horse", ALICE.upper()), "198.51.100.1")).ok
    assert len(verify.calls) == 1


async def test_cache_does_not_accept_other_passwords(
    auth: Authenticator, verify: VerifySpy
) -> None:
    assert (await auth.authenticate(creds("correct horse"), IP)).ok
    assert not (await auth.authenticate(creds("correct horsE"), IP)).ok
    assert len(verify.calls) == 2


async def test_cache_entries_expire(
    auth: Authenticator, verify: VerifySpy, clock: FakeClock
) -> None:
    await auth.authenticate(creds("correct horse"), IP)
    clock.now += 299.0
    await auth.authenticate(creds("correct horse"), IP)
    assert len(verify.calls) == 1
    clock.now += 1.0
    assert (await auth.authenticate(creds("correct horse"), IP)).ok
    assert len(verify.calls) == 2


async def test_password_change_invalidates_cache(
    auth: Authenticator, verify: VerifySpy, directory: FakeDirectory
) -> None:
    await auth.authenticate(creds("correct horse"), IP)
    directory.accounts[ALICE] = Account(id=1, address=ALICE, password_hash="h:new password")
    assert not (await auth.authenticate(creds("correct horse"), IP)).ok
    assert (await auth.authenticate(creds("new password"), IP)).ok
    assert len(verify.calls) == 3


async def test_failures_are_not_cached(auth: Authenticator, verify: VerifySpy) -> None:
    await auth.authenticate(creds("wrong"), IP)
    await auth.authenticate(creds("wrong"), "198.51.100.1")
    assert len(verify.calls) == 2


def test_cache_is_bounded_and_keyed_by_digest(clock: FakeClock) -> None:
    cache = VerificationCache(max_entries=2, clock=clock)
    for name in ("a", "b", "c"):
        cache.add(f"{name}@example.test", "secret", "h:secret")
    assert len(cache) == 2
    assert not cache.contains("a@example.test", "secret", "h:secret")
    assert cache.contains("C@EXAMPLE.test", "secret", "h:secret")
    # Field boundaries matter: shifting characters between fields gives another key.
    cache.add("x", "yz", "h")
    assert not cache.contains("xy", "z", "h")


def test_cache_keys_differ_between_instances(clock: FakeClock) -> None:
    first, second = VerificationCache(clock=clock), VerificationCache(clock=clock)
    first.add(ALICE, "pw", "h:pw")
    assert first.contains(ALICE, "pw", "h:pw")
    assert not second.contains(ALICE, "pw", "h:pw")
