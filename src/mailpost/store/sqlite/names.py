"""Mailbox names, flags and addresses: how the store checks and normalises what it is given.

Mailbox names are data: they are compared and stored as text and never become paths (security
catalogue I7). Still, the store refuses names that no sane client creates and that are classic
attack shapes, so that a protocol layer forgetting a check cannot let them in:

* empty names, a leading or trailing ``/``, and empty components (``a//b``), because the
  hierarchy delimiter is ``/`` (RFC 9051 §5.1.1) and these have no hierarchical meaning;
* components ``.`` and ``..`` (Dovecot CVE-2006-2414 and friends);
* control characters: C0 (below U+0020), DEL and C1 (U+0080 to U+009F), which RFC 9051 §5.1
  allows a server to refuse, and which include NUL, CR and LF (line and string smuggling);
* names longer than :data:`MAX_NAME_BYTES` in UTF-8;
* text that is not valid Unicode (lone surrogates cannot be encoded as UTF-8).

Names are converted to Unicode NFC before use, which RFC 9051 §5.1 permits ("servers MAY accept
a denormalized UTF-8 mailbox name and convert it to ... NFC"), and since the conversion applies
to every name parameter, SELECT finds what CREATE made.

INBOX is case-insensitive (RFC 9051 §5.1): a first component that equals ``INBOX`` in any case
is stored as ``INBOX``, so ``inbox/Work`` is ``INBOX/Work``. Every other comparison is
case-sensitive, which RFC 9051 §5.1 leaves to the implementation.
"""

from __future__ import annotations

import unicodedata

from mailpost.store.errors import InvalidName
from mailpost.store.types import HIERARCHY_DELIMITER

INBOX = "INBOX"
MAX_NAME_BYTES = 1000

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
SEEN = "\\Seen"
_CANONICAL_SYSTEM_FLAGS = {flag.lower(): flag for flag in SYSTEM_FLAGS}
# RFC 9051 §2.3.2: \Recent is deprecated and session-only; it is never stored.
_RECENT = "\\recent"


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def mailbox_name(name: str) -> str:
    """Return the normalised form of ``name`` or raise :class:`InvalidName`."""
    if len(name) > 4 * MAX_NAME_BYTES:  # cheap bound before scanning a huge string
        raise InvalidName(f"mailbox name longer than {MAX_NAME_BYTES} bytes")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidName("mailbox name is not valid Unicode") from exc
    if any(_is_control(char) for char in name):
        raise InvalidName("mailbox name contains a control character")
    normalised = unicodedata.normalize("NFC", name)
    if len(normalised.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidName(f"mailbox name longer than {MAX_NAME_BYTES} bytes")
    components = normalised.split(HIERARCHY_DELIMITER)
    for component in components:
        if component in ("", ".", ".."):
            raise InvalidName(f"mailbox name has an empty, '.' or '..' component: {name!r}")
    if components[0].upper() == INBOX:
        components[0] = INBOX
    return HIERARCHY_DELIMITER.join(components)


def is_inside(name: str, ancestor: str) -> bool:
    """True if ``name`` is ``ancestor`` itself or one of its descendants."""
    return name == ancestor or name.startswith(ancestor + HIERARCHY_DELIMITER)


def normalise_flags(flags: frozenset[str]) -> frozenset[str]:
    """Canonical system flags (``\\SEEN`` is ``\\Seen``), keywords as given, no ``\\Recent``.

    System flags are case-insensitive (the ABNF of RFC 9051 §9 quotes them, and quoted ABNF
    strings are case-insensitive). A flag is an IMAP atom, so it can contain no space or control
    character; the protocol layer parses atoms, and this check keeps the space-separated storage
    unambiguous regardless.
    """
    result: set[str] = set()
    for flag in flags:
        if not flag or any(char.isspace() or _is_control(char) for char in flag):
            raise ValueError(f"invalid flag {flag!r}")
        lowered = flag.lower()
        if lowered == _RECENT:
            continue
        result.add(_CANONICAL_SYSTEM_FLAGS.get(lowered, flag))
    return frozenset(result)


def encode_flags(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


# Flag sets seen by decode_flags, by their stored text. A mailbox holds a handful of distinct
# combinations ("\\Seen", "\\Answered \\Seen", ...) over thousands of messages, and every
# IMAP session keeps every message's set: sharing one object per combination saves about 200
# bytes per message and session. Bounded: past the limit it starts over.
_FLAG_SETS: dict[str, frozenset[str]] = {}
_FLAG_SETS_LIMIT = 4096


def decode_flags(text: str) -> frozenset[str]:
    """The flags stored as ``text``; equal texts give the same (immutable) object."""
    flags = _FLAG_SETS.get(text)
    if flags is None:
        if len(_FLAG_SETS) >= _FLAG_SETS_LIMIT:
            _FLAG_SETS.clear()  # keywords run wild somewhere: don't grow without bound
        flags = _FLAG_SETS[text] = frozenset(text.split())
    return flags


def domain_name(name: str) -> str:
    """Domains are case-insensitive (RFC 5321 §2.4) and stored lowercase."""
    domain = name.strip().lower()
    if not domain or any(char.isspace() or _is_control(char) for char in domain):
        raise InvalidName(f"invalid domain {name!r}")
    return domain


def account_address(address: str) -> tuple[str, str]:
    """Return (lowercased address, its domain); the whole address is the login name."""
    normalised = address.strip().lower()
    local, at, domain = normalised.rpartition("@")
    if not at or not local or not domain or any(_is_control(char) for char in normalised):
        raise InvalidName(f"invalid address {address!r}")
    return normalised, domain


def alias_address(address: str) -> tuple[str, str]:
    """Like :func:`account_address`, but ``@domain`` (a catch-all) is allowed too."""
    normalised = address.strip().lower()
    if normalised.startswith("@"):
        return normalised, domain_name(normalised[1:])
    return account_address(normalised)


def alias_target(target: str) -> str:
    """A target keeps its local part's case (RFC 5321 §2.4); only the domain is lowercased."""
    text = target.strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or any(_is_control(char) for char in text):
        raise InvalidName(f"invalid alias target {target!r}")
    return f"{local}@{domain.lower()}"
