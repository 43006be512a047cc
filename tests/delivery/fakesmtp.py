"""A scripted SMTP receiver on 127.0.0.1 for the outbound delivery tests.

It speaks just enough ESMTP (EHLO, optional STARTTLS and AUTH PLAIN, MAIL, RCPT, DATA, RSET,
QUIT) and records what it was sent, including the DATA section exactly as it arrived on the
wire (before un-stuffing), so tests can check line endings and dot-stuffing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mailpost.net import tls


@dataclass
class Received:
    sender: str
    recipients: list[str]
    mail_line: str
    rcpt_lines: list[str]
    wire: bytes  # the DATA section as sent, up to and including the final ".\r\n"

    @property
    def message(self) -> bytes:
        """The message after RFC 5321 §4.5.2 un-stuffing."""
        lines = self.wire[:-3].split(b"\r\n")
        return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@dataclass
class FakeSMTP:
    rcpt_reply: Callable[[str], str] = lambda address: "250 2.1.5 ok"
    data_reply: str = "250 2.0.0 queued"
    greeting: str = "220 fake.test ESMTP"
    extensions: tuple[str, ...] = ("8BITMIME", "SIZE 10000000", "DSN")
    tls_dir: Path | None = None          # offer STARTTLS with a self-signed pair made here
    after_starttls: bytes = b""          # injected in the clear right after "220 go ahead"
    auth: tuple[str, str] | None = None  # (user, password) to require
    received: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    tls_used: list[bool] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._session, "127.0.0.1", port)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    def _context(self) -> ssl.SSLContext:
        assert self.tls_dir is not None
        cert, key = self.tls_dir / "cert.pem", self.tls_dir / "key.pem"
        tls.ensure_certificate(cert, key, "fake.test")
        return tls.server_context(cert, key)

    async def _session(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        try:
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        def say(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        say(self.greeting)
        secure = False
        sender, mail_line = "", ""
        recipients: list[str] = []
        rcpt_lines: list[str] = []
        while True:
            await writer.drain()
            raw = await reader.readline()
            if not raw:
                return
            line = raw.decode().rstrip("\r\n")
            self.commands.append(line)
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                offered = list(self.extensions)
                if self.tls_dir is not None and not secure:
                    offered.append("STARTTLS")
                if self.auth is not None:
                    offered.append("AUTH PLAIN")
                lines = ["fake.test", *offered]
                for item in lines[:-1]:
                    say(f"250-{item}")
                say(f"250 {lines[-1]}")
            elif verb == "STARTTLS":
                writer.write(b"220 2.0.0 go ahead\r\n" + self.after_starttls)
                await writer.drain()
                await writer.start_tls(self._context())
                secure = True
            elif verb == "AUTH":
                token = base64.b64decode(line.split()[2]).split(b"\0")
                ok = self.auth == (token[1].decode(), token[2].decode())
                say("235 2.7.0 ok" if ok else "535 5.7.8 bad credentials")
            elif verb == "MAIL":
                mail_line = line
                sender = line[line.index("<") + 1:line.index(">")]
                recipients, rcpt_lines = [], []
                say("250 2.1.0 ok")
            elif verb == "RCPT":
                address = line[line.index("<") + 1:line.index(">")]
                reply = self.rcpt_reply(address)
                if reply.startswith("2"):
                    recipients.append(address)
                rcpt_lines.append(line)
                say(reply)
            elif verb == "DATA":
                say("354 go ahead")
                await writer.drain()
                wire = await reader.readuntil(b"\r\n.\r\n")
                self.received.append(Received(sender, recipients, mail_line, rcpt_lines, wire))
                self.tls_used.append(secure)
                say(self.data_reply)
            elif verb == "QUIT":
                say("221 bye")
                await writer.drain()
                return
            else:
                say("250 ok")
