"""The thin asyncio layer shared by every protocol: listeners, connections, limits.

A listener accepts TCP connections (optionally with implicit TLS), enforces the per-IP
connection cap for all protocols together, and hands each connection to a protocol handler as a
:class:`Connection`. The handler owns a sans-I/O protocol machine and uses the connection only
to move bytes: ``read``, ``write``/``flush``, ``start_tls`` and ``close``. Every read, and every
flush that has to wait for the peer, has a deadline so a silent or non-reading peer cannot hold
a slot forever (security catalogue D1, I10).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeAlias

from mailpost.net.tls import describe

log = logging.getLogger(__name__)

READ_SIZE = 65536
# A client that does not read its replies may keep this much output queued in our buffers
# before the write deadline starts to matter (bounded output, catalogue I10).
WRITE_HIGH_WATER = 256 * 1024


class ConnectionLost(Exception):
    """The peer went away or missed a deadline."""


@dataclass
class ConnectionLimiter:
    """Counts open connections per client IP across all listeners."""

    max_per_ip: int
    _counts: dict[str, int] = field(default_factory=dict)

    def acquire(self, ip: str) -> bool:
        count = self._counts.get(ip, 0)
        if count >= self.max_per_ip:
            return False
        self._counts[ip] = count + 1
        return True

    def release(self, ip: str) -> None:
        count = self._counts.get(ip, 0) - 1
        if count > 0:
            self._counts[ip] = count
        else:
            self._counts.pop(ip, None)

    def count(self, ip: str) -> int:
        return self._counts.get(ip, 0)


@dataclass
class AccountSessionLimiter:
    """Counts logged-in IMAP and POP3 sessions per account (``max_connections_per_user``),
    so one account cannot take every slot of the server."""

    max_per_account: int
    _counts: dict[int, int] = field(default_factory=dict)

    def acquire(self, account_id: int) -> bool:
        count = self._counts.get(account_id, 0)
        if count >= self.max_per_account:
            return False
        self._counts[account_id] = count + 1
        return True

    def release(self, account_id: int) -> None:
        count = self._counts.get(account_id, 0) - 1
        if count > 0:
            self._counts[account_id] = count
        else:
            self._counts.pop(account_id, None)


class Connection:
    """One client connection: bytes in and out, with deadlines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 listener: str, implicit_tls: bool) -> None:
        self._reader = reader
        self._writer = writer
        self.listener = listener
        peer = writer.get_extra_info("peername") or ("unknown", 0)
        self.remote_ip: str = str(peer[0])
        self.remote_port: int = int(peer[1])
        sock = writer.get_extra_info("sockname") or ("", 0)
        self.local_ip: str = str(sock[0])
        self.local_port: int = int(sock[1])
        self.tls_active = implicit_tls
        self.discarded_plaintext = 0
        self._closed = False
        transport = writer.transport
        if transport is not None:
            transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    @property
    def tls_description(self) -> str | None:
        if not self.tls_active:
            return None
        ssl_object = self._writer.get_extra_info("ssl_object")
        return describe(ssl_object)

    async def read(self, timeout: float) -> bytes:
        """Return the next bytes (b"" at EOF); raises ConnectionLost on deadline or reset."""
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(READ_SIZE)
        except TimeoutError as exc:
            raise ConnectionLost("read timeout") from exc
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            raise ConnectionLost(str(exc)) from exc

    def write(self, data: bytes) -> None:
        if data and not self._closed:
            self._writer.write(data)

    async def flush(self, timeout: float) -> None:
        """Wait until the peer has taken our output down to the high-water mark."""
        transport = self._writer.transport
        if not transport.is_closing() and transport.get_write_buffer_size() < WRITE_HIGH_WATER:
            # Nearly every flush: the output fits under the mark, so there is nothing to wait
            # for and no deadline to arm (a timer per flush is measurable when one delivery
            # wakes a thousand IDLE sessions). Output stays bounded by the mark either way; a
            # lost connection takes the slow path, which reports it.
            return
        try:
            async with asyncio.timeout(timeout):
                await self._writer.drain()
        except TimeoutError as exc:
            raise ConnectionLost("write timeout") from exc
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            raise ConnectionLost(str(exc)) from exc

    async def start_tls(self, context: ssl.SSLContext, timeout: float) -> None:
        """Upgrade to TLS (STARTTLS). The protocol machine has already thrown away any
        plaintext that followed the STARTTLS command (CVE-2011-0411)."""
        # Plaintext may have reached the StreamReader after our last read; Python 3.11's
        # start_tls would later hand it out as if it had come through TLS (CPython gh-142352).
        # Drop it here: no await separates this from start_tls pausing the transport, so
        # nothing can slip in between, and later bytes go to the TLS layer.
        self.discarded_plaintext = self._drop_buffered_input()
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(context)
        except TimeoutError as exc:
            raise ConnectionLost("TLS handshake timeout") from exc
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            raise ConnectionLost(f"TLS handshake failed: {exc}") from exc
        self.tls_active = True

    def _drop_buffered_input(self) -> int:
        buffer = getattr(self._reader, "_buffer", None)
        if not isinstance(buffer, bytearray):  # pragma: no cover - CPython always has it
            return 0
        dropped = len(buffer)
        buffer.clear()
        return dropped

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            self._writer.close()
            async with asyncio.timeout(5):
                await self._writer.wait_closed()


Handler = Callable[[Connection], Awaitable[None]]


# The tasks of the connections a server has open (see end_sessions).
SessionTasks: TypeAlias = "set[asyncio.Task[None]]"


@dataclass
class ListenerSpec:
    """What to run on which addresses."""

    name: str
    addresses: tuple[tuple[str, int], ...]
    handler: Handler
    implicit_tls: ssl.SSLContext | None
    busy_reply: bytes
    handshake_timeout: float = 30.0


async def _serve_one(spec: ListenerSpec, limiter: ConnectionLimiter, sessions: SessionTasks,
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    task = asyncio.current_task()
    if task is not None:
        sessions.add(task)
        task.add_done_callback(sessions.discard)
    connection = Connection(reader, writer, spec.name, spec.implicit_tls is not None)
    ip = connection.remote_ip
    if not limiter.acquire(ip):
        log.warning("%s: refusing %s: too many connections", spec.name, ip)
        connection.write(spec.busy_reply)
        with contextlib.suppress(ConnectionLost):
            await connection.flush(5)
        await connection.close()
        return
    try:
        await spec.handler(connection)
    except ConnectionLost as exc:
        log.debug("%s: %s:%d lost: %s", spec.name, ip, connection.remote_port, exc)
    except asyncio.CancelledError:
        # The server is stopping (end_sessions). The task ends here, normally: asyncio's
        # stream machinery would log a cancelled connection task as an error.
        log.debug("%s: %s:%d closed at shutdown", spec.name, ip, connection.remote_port)
    except Exception:
        log.exception("%s: session with %s failed", spec.name, ip)
    finally:
        limiter.release(ip)
        await connection.close()


async def start_listener(spec: ListenerSpec, limiter: ConnectionLimiter,
                         sessions: SessionTasks | None = None) -> list[asyncio.Server]:
    """Bind every address of ``spec``; returns the servers (their sockets give bound ports).
    The task of every connection is kept in ``sessions`` while it runs (see
    :func:`end_sessions`)."""
    active: SessionTasks = sessions if sessions is not None else set()
    servers = []
    for host, port in spec.addresses:
        server = await asyncio.start_server(
            lambda r, w: _serve_one(spec, limiter, active, r, w),
            host,
            port,
            ssl=spec.implicit_tls,
            ssl_handshake_timeout=spec.handshake_timeout if spec.implicit_tls else None,
            limit=READ_SIZE * 2,
            reuse_address=True,
        )
        servers.append(server)
    return servers


async def end_sessions(sessions: SessionTasks, timeout: float = 5.0) -> None:
    """Cancel the connections still open after the listeners closed, and wait for them to
    close their sockets (closing a listener does not end its connections)."""
    tasks = list(sessions)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


def bound_addresses(servers: list[asyncio.Server]) -> list[tuple[str, int]]:
    result = []
    for server in servers:
        for sock in server.sockets:
            name = sock.getsockname()
            result.append((str(name[0]), int(name[1])))
    return result
