"""Administrative operations: domains, users and aliases.

Theory of operation
-------------------
These are plain async functions over a :class:`~mailpost.store.interface.MailStore`. The command
line (``mailpost.cli``) calls them, and so do the tests and the server's first-run set-up, so
every rule lives here once:

1. **Validate and normalise the input first.** Addresses and domains are checked against the
   RFC 5321/5322 grammar (simplified to ASCII; see :func:`validate_address`) and lowercased, so the
   store only ever sees one spelling of a name.
2. **Hash passwords before they reach the store** (argon2id, :mod:`mailpost.auth.passwords`).
   Hashing is deliberately slow, so it runs in a worker thread and never stalls a running
   server's event loop.
   With APOP enabled (``pop3.apop``), the caller passes the server's
   :class:`~mailpost.auth.apop_key.APOPKey` and the password is also stored sealed with it, as
   the account's APOP secret (RFC 1939 §7). Without a key, a password change clears any secret
   stored before, so that no secret ever outlives the password it was made from.
3. **Translate store errors into sentences an operator can act on.** The store raises
   ``NotFound``, ``AlreadyExists`` and ``InUse``; here they become an :class:`AdminError` that
   says what is wrong and, where there is one, the command that fixes it.

Every failure an operator can cause raises :class:`AdminError` (a ``ValueError``) whose message
is ready to print; anything else is a bug or a store outage and propagates unchanged.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from mailpost.auth.apop_key import APOPKey
from mailpost.auth.passwords import hash_password
from mailpost.store.errors import AlreadyExists, InUse, NotFound
from mailpost.store.interface import MailStore
from mailpost.store.types import Account, Alias


class AdminError(ValueError):
    """Bad administrative input or a conflict with the store; the message is for the operator."""


class Usage(NamedTuple):
    """What an account currently stores: total message bytes and message count."""

    size: int
    messages: int


# ---------------------------------------------------------------------------------------------
# Validation of names

# RFC 5322 §3.2.3 atext and dot-atom-text: atoms of printable ASCII without specials, joined by
# single dots, no dot at either end.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
# RFC 5321 §4.1.2 Quoted-string: printable ASCII and space, with '"' and '\' backslash-escaped.
# SMTP's form is used rather than RFC 5322's, which would also allow folding white space.
_QUOTED = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])+)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
# RFC 5321 §4.1.2 sub-domain (Let-dig [Ldh-str]), at most 63 octets (RFC 1035 §2.3.4).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")

MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 253  # RFC 1035 §2.3.4: 255 octets on the wire, 253 as dotted text
MAX_ADDRESS = 254  # RFC 5321 §4.5.3.1.3: a 256-octet path minus its angle brackets
MAX_PASSWORD = 1024  # longer cannot be sent within an IMAP or SMTP command line anyway
# The largest value an SQLite INTEGER holds; a bigger quota is meaningless anyway.
MAX_SIZE = 2**63 - 1

DEMO_DOMAIN = "example.test"
DEMO_ADDRESS = f"demo@{DEMO_DOMAIN}"


def validate_domain(text: str) -> str:
    """Return ``text`` as a lowercased domain name, or raise :class:`AdminError`.

    Accepted: ASCII letter-digit-hyphen labels of 1-63 octets joined by dots, at least two labels,
    at most 253 octets (RFC 5321 §4.1.2 ``Domain``). Internationalised names must be given in
    their ASCII ``xn--`` form, and address literals (``[192.0.2.1]``) are not local domains.
    """
    domain = text.strip().lower()
    if not domain:
        raise AdminError("empty domain name")
    if not domain.isascii():
        raise AdminError(f"invalid domain {text!r}: use the ASCII (xn--) form of the name")
    if len(domain) > MAX_DOMAIN:
        raise AdminError(f"invalid domain {text!r}: longer than {MAX_DOMAIN} characters")
    labels = domain.split(".")
    if len(labels) < 2:
        raise AdminError(f"invalid domain {text!r}: a mail domain has at least one dot")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise AdminError(
                f"invalid domain {text!r}: each part between dots must be 1-63 letters, digits "
                "or hyphens, not starting or ending with a hyphen")
    # RFC 3696 §2: a top-level domain is never all-numeric; this catches IPv4 addresses.
    if labels[-1].isdigit():
        raise AdminError(f"invalid domain {text!r}: the last part must not be all digits")
    return domain


def _normalise_local_part(local: str, address: str) -> str:
    """Lowercase a local part and drop quotes that RFC 5321 §4.1.2 says are unnecessary."""
    if not local:
        raise AdminError(f"invalid address {address!r}: nothing before the @")
    if len(local.encode()) > MAX_LOCAL_PART:
        raise AdminError(
            f"invalid address {address!r}: the part before @ is longer than "
            f"{MAX_LOCAL_PART} characters")
    local = local.lower()
    if _DOT_ATOM.fullmatch(local):
        return local
    quoted = _QUOTED.fullmatch(local)
    if quoted is None:
        raise AdminError(
            f"invalid address {address!r}: the part before @ may contain letters, digits, "
            "single dots (not first or last) and !#$%&'*+-/=?^_`{|}~, or be a quoted string")
    # "john"@example.org and john@example.org name the same mailbox (RFC 5322 §3.4.1): store
    # the unquoted spelling whenever it is a valid dot-atom, so both find the same account.
    unquoted = _QUOTED_PAIR.sub(r"\1", quoted.group(1))
    return unquoted if _DOT_ATOM.fullmatch(unquoted) else local


def validate_address(text: str) -> str:
    """Return ``text`` as a normalised, lowercased ``local@domain``, or raise AdminError.

    The local part is an RFC 5322 §3.2.3 dot-atom or an RFC 5321 §4.1.2 quoted string of at most
    64 octets; the domain follows :func:`validate_domain`; the whole is at most 254 octets.
    """
    address = text.strip()
    local, at, domain = address.rpartition("@")
    if not at:
        raise AdminError(f"invalid address {text!r}: expected local-part@domain")
    if not domain:
        raise AdminError(f"invalid address {text!r}: nothing after the @")
    normalised = f"{_normalise_local_part(local, text)}@{validate_domain(domain)}"
    if len(normalised.encode()) > MAX_ADDRESS:
        raise AdminError(f"invalid address {text!r}: longer than {MAX_ADDRESS} characters")
    return normalised


def validate_alias(text: str) -> str:
    """An alias is a full address, or ``@domain`` for a catch-all of that domain."""
    stripped = text.strip()
    if stripped.startswith("@"):
        return "@" + validate_domain(stripped[1:])
    return validate_address(stripped)


def validate_password(password: str) -> str:
    """Reject passwords nobody could log in with; strength beyond that is the operator's call."""
    if not password:
        raise AdminError("empty password")
    if len(password) > MAX_PASSWORD:
        raise AdminError(f"password longer than {MAX_PASSWORD} characters")
    # NUL separates the fields of SASL PLAIN (RFC 4616 §2) and CR LF ends a command line, so a
    # password containing them or other control characters could never be sent.
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        raise AdminError("password contains control characters")
    return password


# ---------------------------------------------------------------------------------------------
# Sizes

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"([0-9]+)[ ]*(?:([kmgt])(?:i?b)?|b)?")
_UNLIMITED = frozenset({"0", "none", "unlimited"})


def parse_size(text: str) -> int | None:
    """Parse a quota: bytes, or a number with K/M/G/T (1024-based); ``0``/``none`` = unlimited.

    ``500M`` is 524288000. ``KB``, ``KiB`` and a bare ``B`` are accepted too; case is ignored.
    """
    spec = text.strip().lower()
    if spec in _UNLIMITED:
        return None
    match = _SIZE.fullmatch(spec)
    if match is None:
        raise AdminError(
            f"invalid size {text!r}: give bytes or a number with K, M, G or T (1024-based), "
            "e.g. 500M; 0 or none means unlimited")
    size = int(match.group(1)) * _UNITS[match.group(2) or ""]
    if size == 0:
        return None
    if size > MAX_SIZE:
        raise AdminError(f"invalid size {text!r}: too large")
    return size


def format_size(size: int | None) -> str:
    """The exact, parseable spelling of a quota: ``500M``, ``1536K``, ``1000``, ``unlimited``."""
    if size is None:
        return "unlimited"
    for suffix in ("T", "G", "M", "K"):
        unit = _UNITS[suffix.lower()]
        if size >= unit and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)


def format_usage(size: int) -> str:
    """An approximate, human spelling of a byte count: ``812``, ``1.5K``, ``23.4M``."""
    for suffix in ("T", "G", "M", "K"):
        unit = _UNITS[suffix.lower()]
        if size >= unit:
            return f"{size / unit:.1f}{suffix}"
    return str(size)


# ---------------------------------------------------------------------------------------------
# Store error translation


@contextmanager
def _store_errors(*, not_found: str | None = None, exists: str | None = None,
                  in_use: str | None = None) -> Iterator[None]:
    """Re-raise the named store errors as :class:`AdminError` with the given message."""
    try:
        yield
    except NotFound as exc:
        if not_found is None:
            raise
        raise AdminError(not_found) from exc
    except AlreadyExists as exc:
        if exists is None:
            raise
        raise AdminError(exists) from exc
    except InUse as exc:
        if in_use is None:
            raise
        raise AdminError(in_use) from exc


def _not_local(domain: str) -> str:
    return (f"domain {domain} is not a local domain; "
            f"add it with: mailpost domain add {domain}")


def _no_user(address: str) -> str:
    return f"no user {address}; see: mailpost user list"


async def _require_local_domain(store: MailStore, domain: str) -> None:
    if not await store.is_local_domain(domain):
        raise AdminError(_not_local(domain))


async def _is_alias(store: MailStore, address: str) -> bool:
    return bool(await store.alias_targets(address))


# ---------------------------------------------------------------------------------------------
# Domains


async def add_domain(store: MailStore, name: str) -> str:
    """Make ``name`` a local domain; returns the normalised name."""
    domain = validate_domain(name)
    with _store_errors(exists=f"domain {domain} exists already"):
        await store.add_domain(domain)
    return domain


async def remove_domain(store: MailStore, name: str) -> str:
    """Remove a local domain that has no users or aliases left; returns the normalised name."""
    domain = validate_domain(name)
    with _store_errors(
        not_found=f"domain {domain} is not a local domain; see: mailpost domain list",
        in_use=(f"domain {domain} still has users or aliases; remove them first "
                "(see: mailpost user list, mailpost alias list)"),
    ):
        await store.remove_domain(domain)
    return domain


async def list_domains(store: MailStore) -> list[str]:
    return sorted(await store.list_domains())


# ---------------------------------------------------------------------------------------------
# Users


async def add_user(store: MailStore, address: str, password: str,
                   quota_bytes: int | None = None, *,
                   apop_key: APOPKey | None = None) -> Account:
    """Create an account (with its default mailboxes) in an existing local domain; with
    ``apop_key``, also store its APOP secret."""
    normalised = validate_address(address)
    validate_password(password)
    _check_quota(quota_bytes)
    domain = normalised.rpartition("@")[2]
    # Checked before hashing so that the common mistake costs no argon2 time; the store's own
    # NotFound below still covers a domain removed in between.
    await _require_local_domain(store, domain)
    if await _is_alias(store, normalised):
        raise AdminError(f"{normalised} is an alias; remove it first with: "
                         f"mailpost alias remove {normalised}")
    password_hash = await asyncio.to_thread(hash_password, password)
    secret = _apop_secret(apop_key, normalised, password)
    with _store_errors(not_found=_not_local(domain), exists=f"user {normalised} exists already"):
        return await store.add_account(normalised, password_hash, quota_bytes,
                                       apop_secret=secret)


async def set_password(store: MailStore, address: str, password: str, *,
                       apop_key: APOPKey | None = None) -> str:
    """Replace an account's password and its APOP secret: sealed with ``apop_key``, or
    cleared without one. Returns the normalised address."""
    normalised = validate_address(address)
    validate_password(password)
    if await store.get_account(normalised) is None:
        raise AdminError(_no_user(normalised))
    password_hash = await asyncio.to_thread(hash_password, password)
    secret = _apop_secret(apop_key, normalised, password)
    with _store_errors(not_found=_no_user(normalised)):
        await store.set_password(normalised, password_hash, apop_secret=secret)
    return normalised


def _apop_secret(apop_key: APOPKey | None, address: str, password: str) -> bytes | None:
    """The APOP secret to store: the password sealed for this account, or none."""
    return None if apop_key is None else apop_key.seal(address, password)


async def set_quota(store: MailStore, address: str, quota_bytes: int | None) -> str:
    """Set the storage quota in bytes (``None``: unlimited); returns the normalised address."""
    normalised = validate_address(address)
    _check_quota(quota_bytes)
    with _store_errors(not_found=_no_user(normalised)):
        await store.set_quota(normalised, quota_bytes)
    return normalised


async def remove_user(store: MailStore, address: str) -> str:
    """Remove an account with all its mailboxes and messages; returns the normalised address."""
    normalised = validate_address(address)
    with _store_errors(not_found=_no_user(normalised)):
        await store.remove_account(normalised)
    return normalised


async def list_users(store: MailStore) -> list[tuple[Account, Usage]]:
    """Every account with what it stores, ordered by address."""
    accounts = sorted(await store.list_accounts(), key=lambda account: account.address)
    return [(account, Usage(*await store.account_usage(account.id))) for account in accounts]


def _check_quota(quota_bytes: int | None) -> None:
    if quota_bytes is not None and not 0 < quota_bytes <= MAX_SIZE:
        raise AdminError(f"invalid quota {quota_bytes}: must be positive, or None for unlimited")


# ---------------------------------------------------------------------------------------------
# Aliases


async def add_alias(store: MailStore, alias: str, target: str) -> tuple[str, str]:
    """Deliver mail for ``alias`` (an address, or ``@domain`` for a catch-all) to ``target``.

    The target may be local or remote. Returns the normalised (alias, target).
    """
    source = validate_alias(alias)
    destination = validate_address(target)
    if source == destination:
        raise AdminError(f"alias {source} cannot point to itself")
    domain = source.rpartition("@")[2]
    await _require_local_domain(store, domain)
    if await store.get_account(source) is not None:
        raise AdminError(f"{source} is a user; an alias cannot have the same address")
    with _store_errors(not_found=_not_local(domain),
                       exists=f"alias {source} -> {destination} exists already"):
        await store.add_alias(source, destination)
    return source, destination


async def remove_alias(store: MailStore, alias: str,
                       target: str | None = None) -> tuple[str, str | None]:
    """Remove one target of an alias, or the whole alias when ``target`` is None.

    Returns the normalised (alias, target).
    """
    source = validate_alias(alias)
    destination = None if target is None else validate_address(target)
    missing = (f"no alias {source}" if destination is None
               else f"no alias {source} -> {destination}")
    with _store_errors(not_found=f"{missing}; see: mailpost alias list"):
        await store.remove_alias(source, destination)
    return source, destination


async def list_aliases(store: MailStore) -> list[Alias]:
    """Every (alias, target) pair, ordered by alias then target."""
    return sorted(await store.list_aliases(), key=lambda a: (a.address, a.target))


# ---------------------------------------------------------------------------------------------
# First run


async def ensure_first_run(store: MailStore) -> tuple[str, str] | None:
    """On a store without any user, create ``demo@example.test`` with a random password.

    A fresh installation is then usable at once: ``mailpost serve`` prints the returned
    (address, password) for the operator. Returns None when the store has users already.
    ``example.test`` is reserved for testing (RFC 2606 §2), so it never collides with real mail.
    """
    if await store.list_accounts():
        return None
    if not await store.is_local_domain(DEMO_DOMAIN):
        await add_domain(store, DEMO_DOMAIN)
    password = secrets.token_urlsafe(12)
    await add_user(store, DEMO_ADDRESS, password)
    return DEMO_ADDRESS, password
