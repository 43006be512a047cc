"""Start a real mailpost server in a background thread, and a byte-exact SMTP client.

The server runs its own event loop in a thread so that tests can drive it with blocking stdlib
clients (smtplib, imaplib, poplib) and command-line tools (swaks) exactly as users do. Every
listener binds 127.0.0.1 port 0; the data directory is the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, Self, TypeVar

from mailpost import config as config_mod
from mailpost.admin import ops
from mailpost.app import Server
from mailpost.config import Config, LimitsConfig, ListenConfig
from mailpost.store.interface import MailStore

T = TypeVar("T")
LOOPBACK = "127.0.0.1:0"
PASSWORD = "correct horse battery staple"


def make_config(data_dir: Path, **limits: Any) -> Config:
    protocols = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps")
    listen = ListenConfig(**{name: (LOOPBACK,) for name in protocols})
    base = config_mod.from_mapping({"hostname": "mail.example.test"})
    defaults: dict[str, Any] = {"auth_fail_delay": 0.01, "auth_fail_delay_max": 0.05}
    defaults.update(limits)
    return replace(base, data_dir=data_dir, listen=listen,
                   limits=replace(LimitsConfig(), **defaults))


class ServerThread:
    """A mailpost Server on its own event loop thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = Server(config)
        # The outbound queue would try real DNS for test domains: tests that exercise it run
        # it explicitly (run_once / queue flush) instead of waiting for the poll or being
        # woken by newly queued mail.
        self.server.queue_poll_interval = 3600.0
        self.server.queue_wake = False

    def __enter__(self) -> Self:
        self.thread.start()
        self.call(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    @property
    def store(self) -> MailStore:
        assert self.server.store is not None
        return self.server.store

    def port(self, name: str) -> int:
        return self.server.port(name)

    def add_user(self, address: str, password: str = PASSWORD, quota: int | None = None) -> None:
        self.call(ops.add_user(self.store, address, password, quota))

    def add_domain(self, domain: str) -> None:
        self.call(ops.add_domain(self.store, domain))

    def add_alias(self, alias: str, target: str) -> None:
        self.call(ops.add_alias(self.store, alias, target))

    def inbox(self, address: str, mailbox: str = "INBOX") -> list[bytes]:
        """Every message body in a user's mailbox, oldest first."""
        return self.call(self._messages(address, mailbox))

    async def _messages(self, address: str, mailbox: str) -> list[bytes]:
        account = await self.store.get_account(address)
        assert account is not None, address
        info = await self.store.get_mailbox(account.id, mailbox)
        assert info is not None, mailbox
        metas = await self.store.messages(info.id)
        return [await self.store.blobs.read(meta.blob_id) for meta in metas]


def client_tls_context() -> ssl.SSLContext:
    """Tests talk to a self-signed server: no verification (the certificate is checked in its
    own test)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*)$")


class RawSMTP:
    """A byte-exact SMTP client: send exactly these bytes, read exactly the replies."""

    def __init__(self, port: int, implicit_tls: bool = False, timeout: float = 10) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if implicit_tls:
            sock = client_tls_context().wrap_socket(sock)
        self.sock: socket.socket = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def reply(self) -> tuple[int, str]:
        """Read one (possibly multi-line) reply: (code, text with lines joined by newlines)."""
        lines = []
        while True:
            match = _REPLY_LINE.match(self._line())
            assert match, "malformed reply line"
            lines.append(match.group(3).decode("utf-8", "replace"))
            if match.group(2) == b" ":
                return int(match.group(1)), "\n".join(lines)

    def command(self, line: str) -> tuple[int, str]:
        self.send(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        code, _ = self.command("STARTTLS")
        assert code == 220
        assert self.buffer == b"", "server sent bytes after its 220 to STARTTLS"
        self.sock = client_tls_context().wrap_socket(self.sock)

    def closed_by_server(self) -> bool:
        """True when the server has closed (EOF) without sending anything more."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
