"""Password hashing with argon2id (RFC 9106) via argon2-cffi.

Parameters follow the OWASP minimum for argon2id (19 MiB, 2 passes, 1 lane): strong against
offline guessing, yet cheap enough that a login storm does not starve the event loop's worker
threads. Hashes carry their parameters, so raising them later only needs ``needs_rehash``.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)

# Verified against when the account does not exist, so that an unknown user costs the same time
# as a wrong password and the reply timing does not reveal which addresses exist.
DUMMY_HASH = _HASHER.hash("mailpost-dummy-password-for-constant-time")


def hash_password(password: str) -> str:
    """Return an encoded argon2id hash of ``password``."""
    return _HASHER.hash(password)


def verify_password(encoded: str, password: str) -> bool:
    """True if ``password`` matches ``encoded``; False for a mismatch or a malformed hash.

    Blocking (tens of milliseconds by design): call it from a worker thread.
    """
    try:
        return _HASHER.verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(encoded: str) -> bool:
    """True when ``encoded`` was made with weaker parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(encoded)
    except InvalidHashError:
        return True
