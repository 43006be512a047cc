"""DKIM (RFC 6376) signing of outgoing mail and verification of incoming mail.

Theory of operation
-------------------
Keys live in ``data_dir/dkim/<domain>/<selector>.key``, one PEM private key per file (mode
0600). :func:`keygen` makes two per domain, as RFC 8463 §4 suggests while Ed25519 support is
not yet universal: ``<selector>-rsa`` (RSA-2048, RFC 8301 §3.2) and ``<selector>-ed25519``.
:func:`sign` signs with every key the domain has, so a verifier that knows only RSA still finds
a signature it can check (RFC 6376 §4.2: one passing signature is enough).

Signatures use relaxed/relaxed canonicalization (RFC 6376 §3.4.2, §3.4.4), which survives
the header refolding and trailing-whitespace changes common in transit, and cover the header
fields dkimpy signs by default (RFC 6376 §5.4.1's recommended set), each signature computed
over the original message so that the two are independent of each other.

Verification checks at most :data:`MAX_SIGNATURES` signatures (a message cannot make us do
unbounded DNS and RSA work, catalogue invariant 5) and reports each with its ``d=`` domain, for
DMARC alignment. The cryptography and canonicalization are dkimpy's; lookups go through a
:class:`~mailpost.mailauth.dns.Resolver` via dkimpy's ``dnsfunc`` hook. Everything here blocks.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from pathlib import Path

import dkim as dkimpy  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mailpost.mailauth.dns import DNSTempError, Resolver

RSA_BITS = 2048  # RFC 8301 §3.2: at least 1024, and 2048 is what signers SHOULD use
MAX_SIGNATURES = 5
# RFC 6376 §3.1 selectors and RFC 1035 domain names: dot-separated labels, no path tricks.
_NAME = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}"
                   r"[a-z0-9])?")
_CANONICALIZE = (b"relaxed", b"relaxed")


class DKIMKeyError(Exception):
    """A key file is unreadable, or a domain or selector name is not acceptable."""


@dataclass(frozen=True, slots=True)
class DKIMKey:
    selector: str
    algorithm: str  # "rsa" or "ed25519" (the k= tag, RFC 6376 §3.6.1, RFC 8463 §3)
    private_pem: bytes

    def txt_record(self) -> str:
        """The TXT record value to publish at ``<selector>._domainkey.<domain>``."""
        return f"v=DKIM1; k={self.algorithm}; p={public_key_base64(self.private_pem)}"


@dataclass(frozen=True, slots=True)
class DKIMResult:
    result: str  # "pass", "fail", "neutral", "temperror", "permerror" (RFC 8601 §2.7.1)
    domain: str
    selector: str
    algorithm: str
    reason: str = ""


def checked_name(text: str, what: str) -> str:
    """``text`` in lower case when it is a plain DNS name; DKIMKeyError otherwise.

    Domain and selector become file names, so this is also what keeps ``..`` and ``/`` out.
    """
    name = text.strip().rstrip(".").lower()
    if len(name) > 253 or not _NAME.fullmatch(name):
        raise DKIMKeyError(f"{what} {text!r} is not a valid DNS name")
    return name


def key_directory(data_dir: Path, domain: str) -> Path:
    return data_dir / "dkim" / checked_name(domain, "domain")


# -- keys ----------------------------------------------------------------------------------


def keygen(domain: str, selector: str, data_dir: Path) -> list[tuple[str, str]]:
    """Create an RSA-2048 and an Ed25519 key for ``domain``; return their DNS TXT records.

    Returns ``(owner name, TXT value)`` pairs. Refuses to overwrite an existing key, because
    replacing a published key would break the signatures of mail still in transit.
    """
    selector = checked_name(selector, "selector")
    directory = key_directory(data_dir, domain)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = [DKIMKey(f"{selector}-rsa", "rsa", _new_rsa_pem()),
            DKIMKey(f"{selector}-ed25519", "ed25519", _new_ed25519_pem())]
    for key in keys:
        if (directory / f"{key.selector}.key").exists():
            raise DKIMKeyError(f"a key for selector {key.selector} of {domain} already exists")
    for key in keys:
        _write_private(directory / f"{key.selector}.key", key.private_pem)
    return [(record_name(key.selector, directory.name), key.txt_record()) for key in keys]


def record_name(selector: str, domain: str) -> str:
    """RFC 6376 §3.6.2.1: the key record lives at ``selector._domainkey.domain``."""
    return f"{selector}._domainkey.{domain}"


def _new_rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _new_ed25519_pem() -> bytes:
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL: never follow or replace something already there; 0600: a private key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_keys(data_dir: Path, domain: str) -> list[DKIMKey]:
    """Every key of ``domain``, sorted by selector; [] when it has none."""
    try:
        directory = key_directory(data_dir, domain)
    except DKIMKeyError:
        return []
    if not directory.is_dir():
        return []
    return [_load_key(path) for path in sorted(directory.glob("*.key"))]


def _load_key(path: Path) -> DKIMKey:
    pem = path.read_bytes()
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise DKIMKeyError(f"{path}: not an unencrypted PEM private key") from exc
    if isinstance(key, rsa.RSAPrivateKey):
        return DKIMKey(path.stem, "rsa", pem)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return DKIMKey(path.stem, "ed25519", pem)
    raise DKIMKeyError(f"{path}: only RSA and Ed25519 keys can sign DKIM")


def public_key_base64(private_pem: bytes) -> str:
    """The p= tag: SubjectPublicKeyInfo for RSA (RFC 6376 §3.6.1), the raw 32 octets for
    Ed25519 (RFC 8463 §4.2)."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    elif isinstance(key, rsa.RSAPrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        raise DKIMKeyError("only RSA and Ed25519 keys can sign DKIM")
    return base64.b64encode(raw).decode("ascii")


def _library_private_key(key: DKIMKey) -> bytes:
    """dkimpy takes RSA keys as PKCS#1 PEM and Ed25519 keys as the base64 32-octet seed."""
    loaded = serialization.load_pem_private_key(key.private_pem, password=None)
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        seed = loaded.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
        return base64.b64encode(seed)
    return loaded.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())


# -- signing -------------------------------------------------------------------------------


def sign(message: bytes, sender_domain: str, data_dir: Path) -> bytes:
    """``message`` with a DKIM-Signature per key of ``sender_domain`` prepended.

    Returns the message unchanged when the domain has no key. Raises DKIMKeyError for a key
    file that cannot be used and ``dkim.DKIMException`` for a message dkimpy cannot sign.
    """
    keys = load_keys(data_dir, sender_domain)
    domain = sender_domain.strip().rstrip(".").lower()
    signatures = [_signature(message, domain, key) for key in keys]
    return b"".join(signatures) + message


def _signature(message: bytes, domain: str, key: DKIMKey) -> bytes:
    algorithm = b"ed25519-sha256" if key.algorithm == "ed25519" else b"rsa-sha256"
    header: bytes = dkimpy.sign(message, key.selector.encode("ascii"), domain.encode("ascii"),
                                _library_private_key(key), canonicalize=_CANONICALIZE,
                                signature_algorithm=algorithm, linesep=b"\r\n")
    return header


# -- verification --------------------------------------------------------------------------


def verify(message: bytes, resolver: Resolver) -> list[DKIMResult]:
    """Check the first :data:`MAX_SIGNATURES` DKIM-Signature fields; [] when there are none."""
    try:
        checker = dkimpy.DKIM(message, minkey=1024)
        count = len([name for name, _ in checker.headers
                     if name.lower() == b"dkim-signature"])
    except dkimpy.DKIMException as exc:
        return [DKIMResult("permerror", "", "", "", f"unparseable message: {exc}")]
    return [_guarded_verify(message, index, resolver)
            for index in range(min(count, MAX_SIGNATURES))]


def _guarded_verify(message: bytes, index: int, resolver: Resolver) -> DKIMResult:
    # The parser sees hostile input; a bug there must cost one verdict, not the message.
    try:
        return _verify_one(message, index, resolver)
    except Exception as exc:  # noqa: BLE001 - deliberately broad, see above
        return DKIMResult("permerror", "", "", "", f"unverifiable: {type(exc).__name__}")


def _verify_one(message: bytes, index: int, resolver: Resolver) -> DKIMResult:
    # A fresh DKIM object per signature: dkimpy keeps per-signature state on the object.
    checker = dkimpy.DKIM(message, minkey=1024)
    problems: list[str] = []

    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        try:
            values = resolver.lookup(name.decode("ascii", "replace"), "TXT")
        except DNSTempError:
            problems.append("temperror")
            return None
        if not values:
            problems.append("permerror")
            return None
        return values[0].encode("utf-8")

    domain, selector, algorithm = _signature_tags(checker, index)
    try:
        if checker.verify(idx=index, dnsfunc=txt):
            return DKIMResult("pass", domain, selector, algorithm)
        reason = "signature did not verify"
    except dkimpy.DKIMException as exc:
        reason = str(exc) or type(exc).__name__
        # RFC 6376 §6.1.3: a body hash that does not match is a failed signature; anything
        # else raised (bad tags, a key too short or of the wrong type) cannot be processed.
        if not problems and not reason.startswith("body hash mismatch"):
            problems.append("permerror")
    if problems == ["temperror"]:  # RFC 6376 §6.1.2: the key could not be fetched this time
        return DKIMResult("temperror", domain, selector, algorithm, "key lookup failed")
    if problems:  # RFC 8601 §2.7.1: a signature that cannot be processed is a permerror
        reason = "no key published" if not reason or "did not" in reason else reason
        return DKIMResult("permerror", domain, selector, algorithm, reason)
    return DKIMResult("fail", domain, selector, algorithm, reason)


def _signature_tags(checker: object, index: int) -> tuple[str, str, str]:
    """The d=, s= and a= tags of signature ``index`` ("" for whatever cannot be read)."""
    headers: list[tuple[bytes, bytes]] = getattr(checker, "headers", [])
    values = [value for name, value in headers if name.lower() == b"dkim-signature"]
    try:
        tags = dkimpy.util.parse_tag_value(values[index])
    except (IndexError, dkimpy.util.InvalidTagValueList):
        return "", "", ""

    def text(tag: bytes) -> str:
        return bytes(tags.get(tag, b"")).decode("ascii", "replace").strip()
    return text(b"d").lower(), text(b"s"), text(b"a")
