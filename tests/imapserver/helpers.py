"""A byte-exact IMAP client for the server tests, literal-aware, over implicit TLS.

``command("SELECT INBOX")`` sends one tagged command and returns ``(untagged, tagged)``: the
untagged response lines (each with any literals inlined, as bytes) and the tagged completion.

IMAP4rev1's ``\\Recent`` bookkeeping (``* n RECENT`` responses and the ``\\Recent`` flag, see
``mailpost.imap.recent``) depends on which session saw a message first, which most tests do
not care about: the client leaves it out of what it returns unless made with
``show_recent=True`` (the tests of ``\\Recent`` itself do that).
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context

_LITERAL = re.compile(rb"\{(\d+)\+?\}$")
_RECENT_COUNT = re.compile(rb"\* \d+ RECENT")


def without_recent(response: bytes) -> bytes | None:
    """``response`` with the \\Recent flag taken out of its flag lists; None for a RECENT
    count response."""
    if _RECENT_COUNT.fullmatch(response):
        return None
    return response.replace(b" \\Recent)", b")").replace(b"(\\Recent)", b"()")


class RawIMAP:
    def __init__(self, server: ServerThread, tls: bool = True, timeout: float = 10,
                 show_recent: bool = False) -> None:
        self.show_recent = show_recent
        port = server.port("imaps" if tls else "imap")
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            sock = client_tls_context().wrap_socket(sock)
        self.sock: socket.socket = sock
        self.buffer = b""
        self.counter = 0
        self.greeting = self.read_response()

    # -- raw I/O ------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buffer += chunk

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_response(self) -> bytes:
        """One whole response line, literals inlined (``{n}\\r\\n`` + n octets kept)."""
        while True:
            response = self._whole_response()
            if self.show_recent:
                return response
            shown = without_recent(response)
            if shown is not None:
                return shown

    def _whole_response(self) -> bytes:
        line = self._line()
        out = line
        while (match := _LITERAL.search(line)) is not None:
            out += b"\r\n" + self._exactly(int(match.group(1)))
            line = self._line()
            out += line
        return out

    # -- commands -----------------------------------------------------------------------------

    def next_tag(self) -> str:
        self.counter += 1
        return f"t{self.counter}"

    def command(self, text: str | bytes) -> tuple[list[bytes], bytes]:
        tag = self.next_tag()
        raw = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + raw + b"\r\n")
        return self.until_tagged(tag)

    def until_tagged(self, tag: str) -> tuple[list[bytes], bytes]:
        untagged: list[bytes] = []
        while True:
            line = self.read_response()
            if line.startswith(tag.encode() + b" "):
                return untagged, line
            untagged.append(line)

    def ok(self, text: str | bytes) -> list[bytes]:
        untagged, tagged = self.command(text)
        assert b" OK" in tagged.split(b"[")[0] + b" ", (text, tagged)
        return untagged

    def login(self, user: str = "alice@example.test", password: str = PASSWORD) -> None:
        self.ok(f'LOGIN "{user}" "{password}"')

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def untagged_with(lines: list[bytes], needle: bytes) -> Iterator[bytes]:
    return (line for line in lines if needle in line)


def deliver(server: ServerThread, rcpt: str, message: bytes, sender: str = "c@remote.test") -> None:
    """Deliver through the real SMTP MX listener."""
    import smtplib
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as client:
        client.sendmail(sender, [rcpt], message)
