"""The self-signed certificate made on first start, and the server context."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

from cryptography import x509

from mailpost.net import tls


def test_certificate_is_created_once_with_private_key_mode(tmp_path: Path) -> None:
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem"
    assert tls.ensure_certificate(cert, key, "mail.example.test")
    assert key.stat().st_mode & 0o777 == 0o600
    first = cert.read_bytes()
    assert not tls.ensure_certificate(cert, key, "mail.example.test")
    assert cert.read_bytes() == first
    parsed = x509.load_pem_x509_certificate(first)
    names = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mail.example.test" in names.get_values_for_type(x509.DNSName)


def test_a_verifying_client_accepts_it_as_a_trust_anchor(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.generate_self_signed(cert, key, "mail.example.test")
    server_context = tls.server_context(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    result: dict[str, str | None] = {}

    def serve() -> None:
        connection, _ = listener.accept()
        with server_context.wrap_socket(connection, server_side=True) as tls_sock:
            result["version"] = tls_sock.version()
            tls_sock.recv(1)

    thread = threading.Thread(target=serve)
    thread.start()
    client_context = ssl.create_default_context(cafile=str(cert))
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            client_context.wrap_socket(raw, server_hostname="mail.example.test") as client:
        assert client.version() in ("TLSv1.2", "TLSv1.3")
        client.sendall(b"x")
    thread.join(5)
    listener.close()
    assert result["version"] in ("TLSv1.2", "TLSv1.3")
