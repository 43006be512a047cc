"""POP3 clients for the end-to-end tests: poplib over STLS or implicit TLS, a byte-exact raw
client, and direct store access to put messages in and look at what is left."""

from __future__ import annotations

import poplib
import socket
import ssl

from mailpost.store.types import DeliveryTarget, MessageMeta
from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context

ALICE = "alice@example.test"
BOB = "bob@example.test"


def put_message(server: ServerThread, address: str, body: bytes) -> int:
    """Deliver ``body`` byte-exact into the user's INBOX; returns its UID."""

    async def deliver() -> int:
        store = server.store
        account = await store.get_account(address)
        assert account is not None
        writer = store.blobs.writer()
        writer.write(body)
        outcome = await store.deliver(await writer.finish(), [DeliveryTarget(account.id)])
        return outcome.local[0].uid

    return server.call(deliver())


def inbox(server: ServerThread, address: str = ALICE) -> list[MessageMeta]:
    """The INBOX as the store (and so IMAP) sees it now."""

    async def read() -> list[MessageMeta]:
        account = await server.store.get_account(address)
        assert account is not None
        info = await server.store.get_mailbox(account.id, "INBOX")
        assert info is not None
        return await server.store.messages(info.id)

    return server.call(read())


def stls_client(server: ServerThread, user: str | None = ALICE) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    client.stls(client_tls_context())
    if user is not None:
        client.user(user)
        client.pass_(PASSWORD)
    return client


def pop3s_client(server: ServerThread, user: str | None = ALICE) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), timeout=10,
                             context=client_tls_context())
    if user is not None:
        client.user(user)
        client.pass_(PASSWORD)
    return client


class RawPOP3:
    """Send exactly these bytes; read exactly what comes back (implicit TLS by default)."""

    def __init__(self, server: ServerThread, *, implicit_tls: bool = True) -> None:
        port = server.port("pop3s" if implicit_tls else "pop3")
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if implicit_tls:
            sock = client_tls_context().wrap_socket(sock)
        self.sock: socket.socket = sock
        self.buffer = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    def line(self) -> bytes:
        """One response line with its CRLF."""
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def command(self, text: str) -> bytes:
        self.send(text.encode() + b"\r\n")
        return self.line()

    def multiline(self) -> bytes:
        """The raw body of a multi-line response, terminator included."""
        while not (self.buffer.startswith(b".\r\n") or b"\r\n.\r\n" in self.buffer):
            self._fill()
        end = 3 if self.buffer.startswith(b".\r\n") else self.buffer.index(b"\r\n.\r\n") + 5
        body, self.buffer = self.buffer[:end], self.buffer[end:]
        return body

    def login(self, user: str = ALICE) -> None:
        assert self.command(f"USER {user}").startswith(b"+OK")
        assert self.command(f"PASS {PASSWORD}").startswith(b"+OK")

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
