"""Verifying credentials: the one place where SMTP, IMAP and POP3 decide who a client is.

Theory of operation
-------------------
:meth:`Authenticator.authenticate` takes the :class:`~mailpost.auth.sasl.Credentials` that a
SASL exchange (or IMAP ``LOGIN`` / POP3 ``USER``+``PASS``) produced and answers with an
:class:`AuthResult`. One attempt goes through these steps:

1. **Drop check.** A network that has failed ``max_failures`` times within the throttle's window
   gets ``throttled`` at once, without a password check: the protocol layer closes the
   connection (SMTP ``421``, IMAP ``* BYE``). Refused attempts are not counted as failures, so
   the block lifts one window after the last real failure.
2. **One attempt at a time per network.** Attempts from the same network (IPv4 address or IPv6
   /64, see :func:`~mailpost.auth.ratelimit.ip_key`) are serialised. Without this, 20 parallel
   connections would all see "no failures yet", skip the delay and get 20 guesses at once
   (catalogue R8). Honest clients lose little: their parallel logins queue behind one argon2
   run and then hit the verification cache.
3. **Delay** ``throttle.delay(ip, authcid)``, before anything is checked, so every answer to a
   client with recent failures is slow, whatever the outcome.
4. **Verify.** The account is looked up case-insensitively. When it does not exist the password
   is still verified, against ``passwords.DUMMY_HASH``, and the result thrown away, so that an
   unknown user costs the same time as a wrong password (RFC 9051 §11.7: replies must not say
   that the user name was the wrong part). argon2 blocks for tens of milliseconds, so it runs in
   a worker thread.
5. **Authorise.** mailpost has no proxy authorisation: the authorization identity must be empty
   or name the authenticated account itself (RFC 4422 §3.4.1), else ``authorization-failed``
   (RFC 5530 ``AUTHORIZATIONFAILED``, which is only sent after the password proved right).
6. **Record** the outcome in the throttle.

Other proofs: :meth:`Authenticator.authenticate_with` runs the same steps 1-3 and 6 for a
proof that is not a password (POP3 APOP's digest, RFC 1939 §7). The caller supplies the check;
it is called for unknown accounts too (with ``None``), so that it can spend the same time on
them as on real ones. There is no authorization identity, so step 5 does not apply.

Verification cache: clients that log in many times a minute (phones polling, IMAP clients
opening several connections) would otherwise cost one argon2 run per login. A success is
remembered for ``cache_ttl`` seconds under HMAC-SHA256(per-process random key, address,
password, stored hash). The key holds no plaintext and is useless outside this process; and
because the stored hash is part of it, a password change makes old entries unreachable. Only
an existing account's hash is ever looked up in the cache, and only successes are stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal, Protocol, TypeAlias

from mailpost.auth import passwords
from mailpost.auth.ratelimit import AuthThrottle, ip_key
from mailpost.auth.sasl import MAX_IDENTITY_OCTETS, MAX_PASSWORD_OCTETS, Credentials
from mailpost.store.types import Account

AuthReason: TypeAlias = Literal[
    "ok", "invalid-credentials", "authorization-failed", "throttled", "malformed"
]
Sleep: TypeAlias = Callable[[float], Awaitable[object]]
# A proof other than a password: given the account (None when it does not exist), does it hold?
AccountCheck: TypeAlias = Callable[[Account | None], Awaitable[bool]]

DEFAULT_CACHE_TTL = 300.0
DEFAULT_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class AuthResult:
    ok: bool
    account: Account | None  # the authenticated account when ``ok``
    reason: AuthReason


class AccountLookup(Protocol):
    """The part of :class:`~mailpost.store.interface.DirectoryStore` authentication needs; any
    ``DirectoryStore`` satisfies it."""

    async def get_account(self, address: str) -> Account | None:
        """Case-insensitive lookup by full address."""
        ...


class VerificationCache:
    """Recent successful verifications, keyed by an HMAC so that no secret is held in clear.

    Entries live ``ttl`` seconds from the verification that created them (a hit does not extend
    them); beyond ``max_entries`` the oldest is evicted.
    """

    def __init__(self, *, ttl: float = DEFAULT_CACHE_TTL, max_entries: int = DEFAULT_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._expiry: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def contains(self, address: str, password: str, stored_hash: str) -> bool:
        digest = self._digest(address, password, stored_hash)
        expiry = self._expiry.get(digest)
        if expiry is None:
            return False
        if self._clock() >= expiry:
            del self._expiry[digest]
            return False
        return True

    def add(self, address: str, password: str, stored_hash: str) -> None:
        if self._ttl <= 0 or self._max_entries <= 0:
            return
        digest = self._digest(address, password, stored_hash)
        self._expiry.pop(digest, None)
        self._expiry[digest] = self._clock() + self._ttl
        while len(self._expiry) > self._max_entries:
            self._expiry.popitem(last=False)

    def _digest(self, address: str, password: str, stored_hash: str) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        # Length-prefix every field so that no two different triples give the same input.
        for field in (address.lower(), password, stored_hash):
            data = field.encode("utf-8")
            mac.update(len(data).to_bytes(4, "big"))
            mac.update(data)
        return mac.digest()


class _PerKeyLocks:
    """One asyncio.Lock per key, held only while someone uses or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _octets(text: str) -> int | None:
    """The UTF-8 length of ``text``; None for lone surrogates from a careless decoder."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _is_well_formed_identity(authcid: str) -> bool:
    octets = _octets(authcid)
    return octets is not None and 0 < octets <= MAX_IDENTITY_OCTETS


def _is_well_formed(credentials: Credentials) -> bool:
    """Non-empty, encodable and within the SASL bounds, whichever protocol supplied them."""
    authzid = _octets(credentials.authzid)
    password = _octets(credentials.password)
    return (
        _is_well_formed_identity(credentials.authcid)
        and authzid is not None and authzid <= MAX_IDENTITY_OCTETS
        and password is not None and 0 < password <= MAX_PASSWORD_OCTETS
    )


def _may_act_as(authzid: str, authcid: str, account: Account) -> bool:
    """No proxy authorisation: the authzid is empty or names the account itself."""
    wanted = authzid.lower()
    return wanted in ("", authcid.lower(), account.address.lower())


class Authenticator:
    """Checks credentials against the directory, with throttling and a verification cache."""

    def __init__(
        self,
        directory: AccountLookup,
        throttle: AuthThrottle,
        sleep: Sleep = asyncio.sleep,
        *,
        cache: VerificationCache | None = None,
    ) -> None:
        self._directory = directory
        self._throttle = throttle
        self._sleep = sleep
        self._cache = cache if cache is not None else VerificationCache()
        self._serial = _PerKeyLocks()

    async def authenticate(self, credentials: Credentials, remote_ip: str) -> AuthResult:
        """Decide whether ``credentials`` log in from ``remote_ip`` (see the module docstring)."""
        return await self._throttled(remote_ip, credentials.authcid,
                                     lambda: self._check(credentials, remote_ip))

    async def authenticate_with(self, authcid: str, remote_ip: str,
                                check: AccountCheck) -> AuthResult:
        """Log ``authcid`` in from ``remote_ip`` if ``check`` accepts its proof (APOP), with
        the throttling, serialisation and failure accounting of :meth:`authenticate`."""
        return await self._throttled(remote_ip, authcid,
                                     lambda: self._check_with(authcid, remote_ip, check))

    async def _throttled(self, remote_ip: str, authcid: str,
                         attempt: Callable[[], Awaitable[AuthResult]]) -> AuthResult:
        """Steps 1-3 of the module docstring, then ``attempt``."""
        if self._throttle.too_many(remote_ip):
            return AuthResult(ok=False, account=None, reason="throttled")
        async with self._serial.hold(ip_key(remote_ip)):
            # Re-checked: the attempts queued before this one may have used up the budget.
            if self._throttle.too_many(remote_ip):
                return AuthResult(ok=False, account=None, reason="throttled")
            delay = self._throttle.delay(remote_ip, authcid)
            if delay > 0:
                await self._sleep(delay)
            return await attempt()

    async def _check_with(self, authcid: str, remote_ip: str,
                          check: AccountCheck) -> AuthResult:
        if not _is_well_formed_identity(authcid):
            self._throttle.record_failure(remote_ip, None)
            return AuthResult(ok=False, account=None, reason="malformed")
        account = await self._directory.get_account(authcid)
        matched = await check(account)  # called for unknown accounts too: same cost
        if account is None or not matched:
            self._throttle.record_failure(remote_ip, authcid)
            return AuthResult(ok=False, account=None, reason="invalid-credentials")
        self._throttle.record_success(remote_ip, authcid)
        return AuthResult(ok=True, account=account, reason="ok")

    async def _check(self, credentials: Credentials, remote_ip: str) -> AuthResult:
        if not _is_well_formed(credentials):
            self._throttle.record_failure(remote_ip, None)
            return AuthResult(ok=False, account=None, reason="malformed")
        account = await self._directory.get_account(credentials.authcid)
        matched = await self._password_matches(account, credentials)
        if account is None or not matched:
            self._throttle.record_failure(remote_ip, credentials.authcid)
            return AuthResult(ok=False, account=None, reason="invalid-credentials")
        if not _may_act_as(credentials.authzid, credentials.authcid, account):
            # The password was right, so this is no guess: count it against the network only.
            self._throttle.record_failure(remote_ip, None)
            return AuthResult(ok=False, account=None, reason="authorization-failed")
        self._throttle.record_success(remote_ip, credentials.authcid)
        return AuthResult(ok=True, account=account, reason="ok")

    async def _password_matches(self, account: Account | None, credentials: Credentials) -> bool:
        password = credentials.password
        if account is None:
            # Same cost as a real check; the result is meaningless and discarded.
            await asyncio.to_thread(passwords.verify_password, passwords.DUMMY_HASH, password)
            return False
        stored = account.password_hash
        if self._cache.contains(account.address, password, stored):
            return True
        if not await asyncio.to_thread(passwords.verify_password, stored, password):
            return False
        self._cache.add(account.address, password, stored)
        return True
