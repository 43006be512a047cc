"""APOP (RFC 1939 §7): the banner timestamp and the check of ``APOP name digest``.

Theory of operation
-------------------
A server that offers APOP puts a timestamp in its greeting, shaped like an RFC 822 ``msg-id``,
that "MUST be different each time the POP3 server issues a banner greeting" (RFC 1939 §7).
:class:`TimestampSource` makes ``<pid.sequence.random.clock@hostname>``: the process id and a
per-process counter make it unique within this process for certain, the nanosecond clock
separates it from earlier processes with the same pid, and 64 random bits keep it unique even
if the clock goes backwards. The parts are digits and lower-case hex (``atext``), so the whole
is a valid ``msg-id``.

The client answers with ``MD5(timestamp + secret)`` in lower-case hex. :func:`digest_matches`
recomputes it and compares with :func:`hmac.compare_digest`, so the time taken does not tell an
attacker how many leading characters were right. Upper-case hex is accepted too (be liberal in
what you accept); anything else fails.

:class:`APOPVerifier` is the check the POP3 session hands to
:meth:`~mailpost.auth.authenticator.Authenticator.authenticate_with`, which supplies the
throttling, the per-network serialisation and the failure accounting shared with USER/PASS.
The secret is the account's password, stored sealed (:mod:`mailpost.auth.apop_key`) only for
accounts whose password was set while APOP was enabled. For an unknown account, an account
without a secret, or a secret the current key cannot open, the digest is still computed and
compared, against a random secret, and then refused: the check does the same work as for a
wrong digest, so its timing does not single out the accounts that can use APOP.

MD5 is used because RFC 1939 says so, not because it is strong: the digest travels next to the
timestamp, so whoever sees both can test password guesses offline at great speed. The session
therefore accepts APOP only where it accepts USER/PASS (under TLS, unless the operator allows
credentials in clear), which hides the digest from eavesdroppers (RFC 2595 §2.3, RFC 8314 §4.1).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from mailpost.auth.apop_key import APOPKey
from mailpost.store.types import Account

DIGEST_HEX_LENGTH = 32  # an MD5 digest, 16 octets written in hex (RFC 1939 §7)
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{32}")


def apop_digest(timestamp: str, secret: str) -> str:
    """``MD5(timestamp + secret)`` in lower-case hex, as the client computes it (RFC 1939 §7)."""
    return hashlib.md5((timestamp + secret).encode("utf-8")).hexdigest()


def is_digest_syntax(text: str) -> bool:
    """32 hex digits: the only shape an APOP digest can have."""
    return _HEX_DIGEST.fullmatch(text) is not None


def digest_matches(timestamp: str, secret: str, digest: str) -> bool:
    """Constant-time comparison of the client's digest with the expected one."""
    if not is_digest_syntax(digest):
        return False
    expected = apop_digest(timestamp, secret)
    return hmac.compare_digest(expected.encode("ascii"), digest.lower().encode("ascii"))


class TimestampSource:
    """Makes greeting timestamps, each one different from every other (RFC 1939 §7)."""

    def __init__(self, hostname: str, *, clock: Callable[[], int] = time.time_ns,
                 pid: int | None = None) -> None:
        self._hostname = hostname
        self._clock = clock
        self._pid = os.getpid() if pid is None else pid
        self._sequence = itertools.count(1)

    def __call__(self) -> str:
        sequence = next(self._sequence)
        return (f"<{self._pid}.{sequence}.{secrets.token_hex(8)}.{self._clock()}"
                f"@{self._hostname}>")


class APOPSecretLookup(Protocol):
    """The part of :class:`~mailpost.store.interface.DirectoryStore` APOP needs."""

    async def get_apop_secret(self, address: str) -> bytes | None:
        """The sealed secret of the account, or None."""
        ...


class APOPVerifier:
    """Checks an APOP digest against the account's sealed secret."""

    def __init__(self, directory: APOPSecretLookup, key: APOPKey) -> None:
        self._directory = directory
        self._key = key

    async def matches(self, account: Account | None, timestamp: str, digest: str) -> bool:
        """True if ``digest`` is MD5(timestamp + the account's secret)."""
        secret = await self._secret(account) if account is not None else None
        # Without a secret the digest is still computed, against a value nobody knows, so that
        # "no such account" and "no APOP secret" cost the same as a wrong digest.
        candidate = secret if secret is not None else secrets.token_hex(16)
        return digest_matches(timestamp, candidate, digest) and secret is not None

    async def _secret(self, account: Account) -> str | None:
        sealed = await self._directory.get_apop_secret(account.address)
        return None if sealed is None else self._key.open(account.address, sealed)
