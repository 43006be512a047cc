"""One SMTP client session to one destination: deliver one message to some recipients.

Theory of operation
===================

:func:`send` connects, reads the greeting, says EHLO (HELO if EHLO is refused), upgrades with
STARTTLS when the server offers it, authenticates to a smarthost when credentials are
configured, then runs MAIL, one RCPT per recipient and DATA. The result is one
:class:`Reply` per recipient: the RCPT reply when RCPT was refused, otherwise the reply to the
final dot (RFC 5321 §4.2.5: it covers every accepted recipient).

TLS is opportunistic by default (RFC 3207 §4: a server's certificate is usually not checkable
for MX delivery), so the context does not verify; ``TLSPolicy.required`` makes a missing
STARTTLS a temporary failure and ``verify`` checks the certificate against the host name.
Before the handshake the read buffer must be empty: anything the server sent after its 220 was
sent in the clear and could have been injected, and it must never be read as a reply inside
the encrypted session (security catalogue T6, the STARTTLS command injection class).

The body goes out with CRLF line endings (bare LF and bare CR become CRLF, catalogue S2, so a
lone "\\n.\\n" can never end the data early on the receiver) and every line that starts with
"." gets one more "." (RFC 5321 §4.5.2).

Connection-level failures raise :class:`SessionError` (``permanent`` tells the caller whether to
try again later); they never leave a socket open.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mailpost.delivery.mx import Destination
from mailpost.store.types import OutboundRecipient

MAX_REPLY_LINES = 100
MAX_LINE = 4096

_BARE_LINE_ENDING = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 300

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class SessionError(Exception):
    """The session failed before per-recipient results existed (connection, greeting, MAIL)."""

    def __init__(self, message: str, permanent: bool = False, *,
                 reply: Reply | None = None, status: str | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        # The server's reply that ended the session, if one did (its enhanced status code
        # goes into the DSN), or a status of our own for a refusal made here.
        self.reply = reply
        self.status = status


@dataclass(frozen=True, slots=True)
class TLSPolicy:
    required: bool = False
    verify: bool = False


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Transaction:
    sender: str
    recipients: tuple[OutboundRecipient, ...]
    body: bytes                       # the message to send, not yet stuffed
    ret: str | None = None
    envid: str | None = None


def canonical_crlf(body: bytes) -> bytes:
    """Every line ending as CRLF, and a final CRLF (catalogue S2)."""
    text = _BARE_LINE_ENDING.sub(b"\r\n", body)
    return text if text.endswith(b"\r\n") or not text else text + b"\r\n"


def dot_stuff(body: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency, on a CRLF body, plus the terminating "." line."""
    stuffed = (b"." + body if body.startswith(b".") else body).replace(b"\r\n.", b"\r\n..")
    return stuffed + b".\r\n"


class _Connection:
    """Reply reading and command writing over one stream pair."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 timeout: float) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.extensions: dict[str, str] = {}

    async def reply(self) -> Reply:
        lines: list[str] = []
        while len(lines) < MAX_REPLY_LINES:
            raw = await asyncio.wait_for(self.reader.readline(), self.timeout)
            if not raw.endswith(b"\n") or len(raw) > MAX_LINE:
                raise SessionError("connection closed or reply line too long")
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit():
                raise SessionError(f"malformed reply {line[:80]!r}")
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return Reply(int(line[:3]), "\n".join(lines))
        raise SessionError("reply has too many lines")

    async def command(self, line: str) -> Reply:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await asyncio.wait_for(self.writer.drain(), self.timeout)
        return await self.reply()

    async def hello(self, name: str) -> None:
        reply = await self.command(f"EHLO {name}")
        if reply.positive:
            self.extensions = _parse_extensions(reply.text)
            return
        reply = await self.command(f"HELO {name}")
        if not reply.positive:
            raise SessionError(f"HELO refused: {reply}", reply.permanent, reply=reply)
        self.extensions = {}

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"QUIT\r\n")
            await asyncio.wait_for(self.writer.drain(), 5)
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 5)


def _parse_extensions(text: str) -> dict[str, str]:
    """EHLO keywords (upper case) to their parameters; the first line is the greeting."""
    found: dict[str, str] = {}
    for line in text.split("\n")[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            found[keyword.upper()] = params
    return found


def client_tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _start_tls(conn: _Connection, destination: Destination, policy: TLSPolicy) -> None:
    reply = await conn.command("STARTTLS")
    if reply.code != 220:
        if policy.required:
            raise SessionError(f"STARTTLS refused: {reply}")
        return
    if conn.reader.at_eof() or len(getattr(conn.reader, "_buffer", b"")) > 0:
        # Catalogue T6: plaintext that arrived after the 220 is never read as a TLS-era reply.
        raise SessionError("server sent data after its STARTTLS reply; aborting")
    context = client_tls_context(policy.verify)
    server_name = destination.tls_name if policy.verify else None
    await asyncio.wait_for(conn.writer.start_tls(context, server_hostname=server_name),
                           conn.timeout)


async def _negotiate(conn: _Connection, destination: Destination, helo_name: str,
                     policy: TLSPolicy, credentials: Credentials | None) -> None:
    greeting = await conn.reply()
    if greeting.code != 220:
        raise SessionError(f"greeting: {greeting}")
    await conn.hello(helo_name)
    if "STARTTLS" in conn.extensions:
        await _start_tls(conn, destination, policy)
        conn.extensions = {}
        await conn.hello(helo_name)  # RFC 3207 §4.2: forget what was learned before TLS
    elif policy.required:
        raise SessionError("server does not offer STARTTLS and TLS is required")
    if credentials is not None:
        await _authenticate(conn, credentials)


async def _authenticate(conn: _Connection, credentials: Credentials) -> None:
    """AUTH PLAIN (RFC 4616) with the initial response; only over TLS."""
    if conn.writer.get_extra_info("sslcontext") is None:
        raise SessionError("refusing to send relay credentials without TLS")
    token = f"\0{credentials.username}\0{credentials.password}".encode()
    reply = await conn.command("AUTH PLAIN " + base64.b64encode(token).decode("ascii"))
    if reply.code != 235:
        raise SessionError(f"relay authentication failed: {reply}", reply.permanent,
                           reply=reply)


async def _transact(conn: _Connection, transaction: Transaction) -> dict[str, Reply]:
    body = dot_stuff(canonical_crlf(transaction.body))
    dsn = "DSN" in conn.extensions
    utf8 = not transaction.sender.isascii() or any(
        not r.address.isascii() for r in transaction.recipients)
    if utf8 and "SMTPUTF8" not in conn.extensions:  # RFC 6531 §3.2: cannot be downgraded
        # RFC 6531 §3.5: X.6.7, "non-ASCII addresses not permitted for that sender/recipient".
        raise SessionError("server does not support SMTPUTF8 addresses", permanent=True,
                           status="5.6.7")
    params = mail_parameters(body, transaction.ret, transaction.envid, conn.extensions)
    params += ("SMTPUTF8",) if utf8 else ()
    reply = await conn.command(f"MAIL FROM:<{transaction.sender}>" + _joined(params))
    if not reply.positive:
        raise SessionError(f"MAIL FROM: {reply}", reply.permanent, reply=reply)
    results: dict[str, Reply] = {}
    accepted: list[str] = []
    for recipient in transaction.recipients:
        extra = rcpt_parameters(recipient.notify, recipient.orcpt) if dsn else ()
        reply = await conn.command(f"RCPT TO:<{recipient.address}>" + _joined(extra))
        results[recipient.address] = reply
        if reply.positive:
            accepted.append(recipient.address)
    if not accepted:
        return results
    reply = await conn.command("DATA")
    if reply.code != 354:
        return results | {recipient: reply for recipient in accepted}
    conn.writer.write(body)
    await asyncio.wait_for(conn.writer.drain(), conn.timeout)
    final = await conn.reply()
    return results | {recipient: final for recipient in accepted}


async def send(destination: Destination, transaction: Transaction, helo_name: str, *,
               policy: TLSPolicy = TLSPolicy(), credentials: Credentials | None = None,
               timeout: float = 300.0, source_address: str | None = None) -> dict[str, Reply]:
    """Deliver ``transaction`` to one destination; one reply per recipient.

    ``source_address`` binds the connection's local end (``[delivery] source_address``): the
    address the receiver's SPF check sees (RFC 7208 §2.3) on a host with several.

    Raises:
        SessionError: no per-recipient result (connect, greeting, TLS, AUTH or MAIL failed).
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(destination.host, destination.port, limit=MAX_LINE * 2,
                                    local_addr=(source_address, 0) if source_address else None),
            timeout)
    except (TimeoutError, OSError) as exc:
        raise SessionError(f"cannot connect to {destination.host}:{destination.port}: "
                           f"{exc or 'timeout'}") from exc
    conn = _Connection(reader, writer, timeout)
    try:
        await _negotiate(conn, destination, helo_name, policy, credentials)
        return await _transact(conn, transaction)
    except (TimeoutError, OSError, ssl.SSLError, ValueError) as exc:
        raise SessionError(f"{destination.host}:{destination.port}: "
                           f"{type(exc).__name__}: {exc}") from exc
    finally:
        await conn.close()


def _joined(params: Sequence[str]) -> str:
    return "".join(f" {param}" for param in params)


def rcpt_parameters(notify: str | None, orcpt: str | None) -> tuple[str, ...]:
    """RFC 3461 §4 NOTIFY and ORCPT for a DSN-capable server (ORCPT re-encoded as xtext)."""
    params: list[str] = []
    if notify:
        params.append(f"NOTIFY={notify}")
    if orcpt:
        kind, _, address = orcpt.partition(";")
        params.append(f"ORCPT={kind};{xtext(address)}")
    return tuple(params)


def xtext(text: str) -> str:
    """RFC 3461 §4: "+" followed by two hex digits for "+", "=" and anything outside 33-126."""
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else
                   "".join(f"+{b:02X}" for b in c.encode()) for c in text)


def mail_parameters(body: bytes, ret: str | None, envid: str | None,
                    extensions: Mapping[str, str]) -> tuple[str, ...]:
    """SIZE (RFC 1870), BODY=8BITMIME (RFC 6152) and RET/ENVID (RFC 3461) when announced."""
    params: list[str] = []
    if "SIZE" in extensions:
        params.append(f"SIZE={len(body)}")
    if "8BITMIME" in extensions and not body.isascii():
        params.append("BODY=8BITMIME")
    if "DSN" in extensions:
        if ret:
            params.append(f"RET={ret}")
        if envid:
            params.append(f"ENVID={xtext(envid)}")
    return tuple(params)
