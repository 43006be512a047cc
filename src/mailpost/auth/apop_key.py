"""The server key that seals APOP secrets at rest (``data_dir/apop.key``).

Theory of operation
-------------------
APOP (RFC 1939 §7) proves knowledge of a shared secret by ``MD5(timestamp + secret)``, so the
server must be able to recover the secret itself: the argon2id hash kept for USER/PASS is of no
use. mailpost therefore stores, only for accounts whose password was set while ``pop3.apop`` was
on, the password encrypted with AES-256-GCM under a random 32-byte key kept in a file beside the
database. Someone who steals the database alone learns nothing about those passwords; someone
who has the database *and* the key file learns them all. ``docs/configuration.md`` says so.

Sealed format: one version octet (``0x01``), a random 96-bit nonce (NIST SP 800-38D §8.2.2:
random nonces are safe far beyond the number of password changes a server sees), then the
ciphertext and its 16-octet tag. The account address, lowercased, is the associated data: a
sealed secret copied to another account's row does not open there, so write access to the
database does not let one account log in as another.

The key file is made on first use with mode 0600: written to a private temporary file, synced,
and then hard-linked into place, so that two processes racing to create it (``mailpost serve``
and ``mailpost user passwd``) both end up with the one that won, and nobody ever reads a
half-written key. A key file of the wrong size, or readable by anyone but its owner, is refused
(:class:`APOPKeyError`) rather than used.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "apop.key"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
_VERSION = b"\x01"
_AAD_PREFIX = b"mailpost apop secret\x00"


class APOPKeyError(Exception):
    """The key file cannot be created or is not fit for use; the message says why."""


class APOPKey:
    """Seals and opens APOP secrets with one AES-256-GCM key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"an APOP key is {KEY_BYTES} octets")
        self._aead = AESGCM(key)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> APOPKey:
        """The key of this data directory, created on first use (blocking file I/O)."""
        return cls(load_or_create_key(data_dir / KEY_FILE))

    def seal(self, address: str, secret: str) -> bytes:
        """Encrypt ``secret`` for the account ``address``."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode("utf-8"), _associated_data(address))
        return _VERSION + nonce + sealed

    def open(self, address: str, sealed: bytes) -> str | None:
        """The secret, or None if ``sealed`` was not made by this key for this account."""
        if not sealed.startswith(_VERSION):
            return None
        nonce = sealed[1:1 + NONCE_BYTES]
        try:
            plain = self._aead.decrypt(nonce, sealed[1 + NONCE_BYTES:], _associated_data(address))
        except (InvalidTag, ValueError):
            return None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            return None


def _associated_data(address: str) -> bytes:
    return _AAD_PREFIX + address.strip().lower().encode("utf-8")


def load_or_create_key(path: Path) -> bytes:
    """Read the key at ``path``, creating it (mode 0600) if there is none yet."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    _create_key(path)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    try:
        mode = os.fstat(fd).st_mode  # of the file opened, not of whatever the name is now
        if not stat.S_ISREG(mode):
            raise APOPKeyError(f"{path} is not a regular file")
        if mode & 0o077:
            raise APOPKeyError(f"{path} must be readable by its owner only (chmod 600 {path})")
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise APOPKeyError(f"{path} does not hold a {KEY_BYTES}-octet key")
    return key


def _create_key(path: Path) -> None:
    """Write a fresh key under a private name, then link it into place unless another process
    got there first; either way exactly one key ends up at ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """Make the new directory entry durable: losing the key loses every sealed secret."""
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
