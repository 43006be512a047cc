"""TLS: the server's SSL context, and a self-signed certificate made on first start.

The development default (and any install without ``[tls] cert``/``key``) gets an ECDSA P-256
self-signed certificate for the configured hostname under ``data_dir/tls``. The key file is
created with mode 0600 before any key material is written to it.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

CERT_VALIDITY = datetime.timedelta(days=825)


def _subject_alt_names(hostname: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost")]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    names.append(x509.IPAddress(ipaddress.ip_address("::1")))
    return names


def generate_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    """Write a new self-signed certificate and private key (PEM) for ``hostname``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_subject_alt_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_path, key_bytes)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def ensure_certificate(cert_path: Path, key_path: Path, hostname: str) -> bool:
    """Create a self-signed pair if neither file exists; True if one was created."""
    if cert_path.exists() or key_path.exists():
        return False
    generate_self_signed(cert_path, key_path, hostname)
    log.info("generated a self-signed certificate for %s in %s", hostname, cert_path)
    return True


def server_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server context with modern defaults: TLS 1.2+, no compression, no renegotiation."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(cert_path, key_path)
    return context


def describe(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str | None:
    """A short "TLS1.3 TLS_AES_256_GCM_SHA384" description for Received headers and logs."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    version = ssl_object.version() or "TLS"
    return f"{version} {cipher[0]}" if cipher else version
