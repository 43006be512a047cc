"""The POP3 client of the download benchmark: one "leave mail on server" session per user.

Theory of operation
-------------------
:func:`download_all` runs N sessions at once on one event loop (uvloop when available, see
:func:`common.run_async`), one per :class:`Mailbox`. A session connects with implicit TLS
(RFC 8314), trusting exactly the benchmark's certificate, and does what a client that leaves
mail on the server does: greeting, CAPA, USER, PASS, LIST, UIDL, RETR of every message, QUIT;
with ``delete`` also DELE of every message before QUIT (RFC 1939 §5, §6).

Pipelining (RFC 2449 §6.6): when CAPA lists PIPELINING, up to ``window`` RETR commands are in
flight. They are written in groups of about half a window, each group in one write, whenever
the number outstanding falls to half the window, so the server never waits for a command and
the client does not send one tiny TLS record per command. Without PIPELINING, or with
``window`` 1, one command at a time.

Responses are framed over one receive buffer (:class:`Pop3Connection`): a status line, and for
multi-line responses everything up to the first CRLF "." CRLF after it (RFC 1939 §3), found with
C-level searches; the client does no per-line Python work, so that it stays cheap next to the
server it measures.

Every session checks what it received against its :class:`Mailbox` (what was delivered): LIST
must count the delivered messages and octets and UIDL as many; each retrieved message, once
un-dot-stuffed, must carry a ``Message-ID`` of this user's mailbox (:meth:`MessageCorpus.parse_id`),
have exactly the delivered size and come exactly once; a sample of messages is compared by
SHA-256. The first failure ends the session with :attr:`Session.error` set.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailboxes import MessageCorpus

SAMPLE_EVERY = 97  # every 97th message (and the last) is compared by SHA-256


@dataclass
class Mailbox:
    """What was delivered to one user: sizes by index and a sample of SHA-256 digests."""

    user: int
    address: str
    sizes: list[int]
    digests: dict[int, bytes]

    @classmethod
    def of(cls, user: int, address: str, messages: list[bytes]) -> Mailbox:
        sample = set(range(0, len(messages), SAMPLE_EVERY)) | {len(messages) - 1}
        return cls(user, address, [len(m) for m in messages],
                   {i: hashlib.sha256(messages[i]).digest() for i in sample if i >= 0})

    @property
    def octets(self) -> int:
        return sum(self.sizes)


class SessionError(Exception):
    """A session went wrong: an -ERR, a lost connection or mail that is not what was sent."""


class Pop3Connection:
    """Reads POP3 responses from a stream into one buffer; see RFC 1939 §3 for the framing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = bytearray()

    async def _fill(self) -> None:
        data = await self.reader.read(1 << 18)
        if not data:
            raise SessionError("connection closed by the server")
        self.buffer += data

    def send(self, *commands: bytes) -> None:
        self.writer.write(b"".join(command + b"\r\n" for command in commands))

    async def response(self, multiline: bool = False) -> tuple[bytes, bytes]:
        """(status line, body): the body is still dot-stuffed, without its terminator."""
        while (status_end := self.buffer.find(b"\r\n")) < 0:
            await self._fill()
        status = bytes(self.buffer[:status_end])
        if not status.startswith(b"+OK"):
            raise SessionError(f"server said {status[:200]!r}")
        if not multiline:
            del self.buffer[:status_end + 2]
            return status, b""
        # The status line's CRLF counts as the CRLF before ".CRLF": an empty body is found too.
        search = status_end
        while (end := self.buffer.find(b"\r\n.\r\n", search)) < 0:
            search = max(status_end, len(self.buffer) - 4)
            await self._fill()
        with memoryview(self.buffer) as view:
            body = bytes(view[status_end + 2:end + 2])
        del self.buffer[:end + 5]
        return status, body

    async def command(self, line: bytes, multiline: bool = False) -> tuple[bytes, bytes]:
        self.send(line)
        return await self.response(multiline)


def unstuff(body: bytes) -> bytes:
    """Undo RFC 1939 §3 byte-stuffing of a multi-line body."""
    if body.startswith(b".."):
        body = body[1:]
    return body.replace(b"\r\n..", b"\r\n.")


@dataclass
class Session:
    """The outcome of one user's session."""

    address: str
    seconds: float = 0.0
    messages: int = 0
    octets: int = 0
    error: str | None = None
    tls: str | None = None
    pipelining: bool = False


@dataclass
class ClientPlan:
    host: str
    port: int
    context: ssl.SSLContext
    password: str
    window: int
    delete: bool
    timeout: float


async def download(plan: ClientPlan, box: Mailbox) -> Session:
    """One leave-on-server (or, with ``plan.delete``, delete-after) session for ``box``."""
    session = Session(box.address)
    started = time.perf_counter()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(plan.timeout):
            reader, writer = await asyncio.open_connection(
                plan.host, plan.port, ssl=plan.context, server_hostname="localhost")
            await _converse(Pop3Connection(reader, writer), plan, box, session)
    except (SessionError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        session.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()
    session.seconds = time.perf_counter() - started
    return session


async def _converse(conn: Pop3Connection, plan: ClientPlan, box: Mailbox,
                    session: Session) -> None:
    ssl_object = conn.writer.get_extra_info("ssl_object")
    if ssl_object is not None:
        session.tls = f"{ssl_object.version()} {ssl_object.cipher()[0]}"
    await conn.response()
    _, capabilities = await conn.command(b"CAPA", multiline=True)
    session.pipelining = b"\r\nPIPELINING\r\n" in b"\r\n" + capabilities
    await conn.command(b"USER " + box.address.encode())
    await conn.command(b"PASS " + plan.password.encode())
    conn.send(b"LIST", b"UIDL")
    _, listing = await conn.response(multiline=True)
    _, uids = await conn.response(multiline=True)
    count = _check_listing(listing, uids, box)
    window = plan.window if session.pipelining else 1
    await _retrieve_all(conn, count, window, box, session)
    if plan.delete:
        await _pipelined(conn, [b"DELE %d" % n for n in range(1, count + 1)], window)
    await conn.command(b"QUIT")


def _check_listing(listing: bytes, uids: bytes, box: Mailbox) -> int:
    """RFC 1939 §5 scan listings "msg octets": they must add up to what was delivered."""
    try:
        sizes = [int(line.split()[1]) for line in listing.splitlines()]
    except (ValueError, IndexError):
        raise SessionError(f"malformed LIST response {listing[:200]!r}") from None
    uid_count = len(uids.splitlines())
    if len(sizes) != len(box.sizes) or uid_count != len(sizes) or sum(sizes) != box.octets:
        raise SessionError(f"LIST shows {len(sizes)} messages of {sum(sizes)} octets and UIDL "
                           f"{uid_count}; delivered {len(box.sizes)} of {box.octets}")
    return len(sizes)


async def _retrieve_all(conn: Pop3Connection, count: int, window: int, box: Mailbox,
                        session: Session) -> None:
    """RETR 1..count with up to ``window`` commands in flight, checking every message."""
    seen = bytearray(len(box.sizes))
    sent = 0
    for received in range(count):
        if sent - received <= window // 2 and sent < count:
            batch = min(count, received + window) - sent
            conn.send(*(b"RETR %d" % n for n in range(sent + 1, sent + batch + 1)))
            sent += batch
        _, body = await conn.response(multiline=True)
        message = unstuff(body)
        _check_message(message, box, seen)
        session.messages += 1
        session.octets += len(message)


def _check_message(message: bytes, box: Mailbox, seen: bytearray) -> None:
    found = MessageCorpus.parse_id(message)
    if found is None or found[0] != box.user or not 0 <= found[1] < len(box.sizes):
        raise SessionError(f"a message that was not delivered to {box.address}: {found}")
    index = found[1]
    if seen[index]:
        raise SessionError(f"message {index} retrieved twice")
    seen[index] = 1
    if len(message) != box.sizes[index]:
        raise SessionError(f"message {index}: {len(message)} octets, delivered "
                           f"{box.sizes[index]}")
    digest = box.digests.get(index)
    if digest is not None and hashlib.sha256(message).digest() != digest:
        raise SessionError(f"message {index}: content differs from what was delivered")


async def _pipelined(conn: Pop3Connection, commands: list[bytes], window: int) -> None:
    for start in range(0, len(commands), window):
        group = commands[start:start + window]
        conn.send(*group)
        for _ in group:
            await conn.response()


async def download_all(plan: ClientPlan, boxes: list[Mailbox]) -> dict[str, Any]:
    """N sessions at once; wall time and client CPU from the first connect to the last QUIT."""
    cpu_before, started = time.process_time(), time.perf_counter()
    sessions = await asyncio.gather(*(download(plan, box) for box in boxes))
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - cpu_before
    return {"wall_s": wall, "client_cpu_percent": 100 * client_cpu / wall,
            "sessions": sessions}


def client_context(cert: Path) -> ssl.SSLContext:
    """Trust exactly the benchmark's certificate; the name checked is ``localhost``."""
    context = ssl.create_default_context(cafile=str(cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
