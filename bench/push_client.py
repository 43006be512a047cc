"""The client side of the push benchmark: thousands of IDLE sessions and a timed delivery agent.

Theory of operation
-------------------
One asyncio process (uvloop when available, see :func:`common.run_async`) holds every IMAP
connection of a run. Each :class:`Idler` is an ``asyncio.Protocol`` rather than a stream with
a task of its own: an idle connection then costs the client one protocol object and one TLS
transport, and the moment its data arrives is taken in ``data_received`` itself, before any
task switch, so the client adds as little as it can to the latency it measures.

Setting up an idler is what a mail client does before it waits for mail: connect with implicit
TLS (RFC 8314), read the greeting, ``LOGIN``, ``SELECT INBOX`` (the ``* n EXISTS`` of the
reply is the count the idler starts from) and ``IDLE`` (RFC 2177, RFC 9051 §6.3.13) up to the
server's continuation. :func:`connect_idlers` runs at most ``concurrency`` set-ups at a time,
so ten thousand TLS handshakes and logins finish in a bounded time without a connection storm,
and it spreads the connections over several loopback source addresses (``127.0.1.x``) as real
devices come from many addresses: it keeps the ephemeral port space and the servers' per-IP
login serialisation from becoming what is measured.

A :class:`Deliverer` keeps one SMTP (mailpost's MX port) or LMTP (Dovecot, RFC 2033) connection
open and delivers one message at a time; the moment it reads the final ``250`` is the start of
the measured interval. Every idler remembers when it saw each ``* n EXISTS`` (RFC 9051 §7.4.1);
the latency of a delivery at one idler is the time of the first ``EXISTS`` whose count reaches
the expected one minus the time of the ``250``. Both times come from the same monotonic clock in
the same process. A server that announces the message before its ``250`` reached the client
gives a negative latency, which is reported as it is.

Connections are torn down with an abortive close (``SO_LINGER`` 0): tens of thousands of
client sockets in TIME_WAIT would use up the loopback port space between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self, cast

SOURCE_ADDRESSES = tuple(f"127.0.1.{n}" for n in range(1, 41))
SETUP_TIMEOUT = 120.0  # one idler's connect + TLS + LOGIN + SELECT + IDLE
_EXISTS = re.compile(rb"^\* (\d+) EXISTS\r?$", re.MULTILINE)
_TAGGED = re.compile(rb"^(\S+) (OK|NO|BAD)\b")


class ClientError(Exception):
    """A session could not be set up or a delivery was refused."""


def client_context(cert: Path) -> ssl.SSLContext:
    """Trust exactly the benchmark's certificate (both servers present the same one)."""
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False  # the certificate names the benchmark host, not 127.0.0.1
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def quoted(text: str) -> str:
    """An IMAP quoted string (RFC 9051 §4.3); the benchmark's names and passwords need no
    escapes beyond these two."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------------------------
# Idlers


class Idler(asyncio.Protocol):
    """One IMAP connection that logs in, selects INBOX and idles, recording every EXISTS."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.count = 0  # messages in INBOX as the server last told us
        self.exists: list[tuple[int, float]] = []  # (count, monotonic time) per EXISTS line
        self.idling = False
        self.closed = False
        self.watch: Callable[[Idler], None] | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not a subclass of asyncio.Transport, but has its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self._buffer += data
        if self.idling:
            self._scan_idle(now)
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ClientError(f"connection closed: {exc}"))
        if self.watch is not None:
            self.watch(self)

    # -- idle phase ---------------------------------------------------------------------------

    def _scan_idle(self, now: float) -> None:
        end = self._buffer.rfind(b"\n")
        if end < 0:
            return
        lines = bytes(self._buffer[:end])
        del self._buffer[:end + 1]
        found = False
        for match in _EXISTS.finditer(lines):
            count = int(match[1])
            self.exists.append((count, now))
            self.count = max(self.count, count)
            found = True
        if found and self.watch is not None:
            self.watch(self)

    def seen_at(self, count: int) -> float | None:
        """When the first EXISTS announcing at least ``count`` messages arrived."""
        for announced, when in self.exists:
            if announced >= count:
                return when
        return None

    # -- set-up phase -------------------------------------------------------------------------

    async def _line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end + 1])
                del self._buffer[:end + 1]
                return line
            if self.closed:
                raise ClientError("connection closed during set-up")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None

    async def _command(self, tag: str, text: str) -> list[bytes]:
        assert self.transport is not None
        self.transport.write(f"{tag} {text}\r\n".encode())
        untagged: list[bytes] = []
        while True:
            line = await self._line()
            match = _TAGGED.match(line)
            if match and match[1] == tag.encode():
                if match[2] != b"OK":
                    raise ClientError(f"{text.split()[0]}: {line.decode(errors='replace')}")
                return untagged
            untagged.append(line)

    async def set_up(self, password: str) -> None:
        greeting = await self._line()
        if not greeting.startswith(b"* OK"):
            raise ClientError(f"greeting: {greeting!r}")
        await self._command("a1", f"LOGIN {quoted(self.address)} {quoted(password)}")
        for line in await self._command("a2", "SELECT INBOX"):
            match = _EXISTS.match(line)
            if match:
                self.count = int(match[1])
        assert self.transport is not None
        self.transport.write(b"a3 IDLE\r\n")
        while not (line := await self._line()).startswith(b"+"):
            match = _EXISTS.match(line)
            if match:
                self.count = int(match[1])
        self.idling = True
        if self._buffer:
            self._scan_idle(time.perf_counter())

    def abort(self) -> None:
        """Drop the connection at once, with a reset rather than a FIN (no TIME_WAIT)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        raw = transport.get_extra_info("socket")
        if raw is not None:
            try:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()


@dataclass
class SetupReport:
    """How connecting a group of idlers went."""

    wanted: int
    idlers: list[Idler] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    tls: set[str] = field(default_factory=set)


async def connect_idlers(host: str, port: int, context: ssl.SSLContext, password: str,
                         addresses: Sequence[str], concurrency: int,
                         progress: Callable[[int, int], None] | None = None) -> SetupReport:
    """One idler per entry of ``addresses`` (an account may appear many times)."""
    loop = asyncio.get_running_loop()
    report = SetupReport(len(addresses))
    slots = asyncio.Semaphore(concurrency)
    started = time.perf_counter()

    async def one(index: int, address: str) -> None:
        async with slots:
            source = SOURCE_ADDRESSES[index % len(SOURCE_ADDRESSES)]
            try:
                async with asyncio.timeout(SETUP_TIMEOUT):
                    _, idler = await loop.create_connection(
                        lambda: Idler(address), host, port, ssl=context,
                        local_addr=(source, 0))
                    try:
                        await idler.set_up(password)
                    except BaseException:
                        idler.abort()
                        raise
            except (OSError, ssl.SSLError, ClientError, TimeoutError) as exc:
                report.errors.append(f"{address}: {type(exc).__name__}: {exc}")
                return
            report.idlers.append(idler)
            if len(report.tls) < 3 and idler.transport is not None:
                ssl_object = idler.transport.get_extra_info("ssl_object")
                if ssl_object is not None:
                    report.tls.add(f"{ssl_object.version()} {ssl_object.cipher()[0]}")
            done = len(report.idlers) + len(report.errors)
            if progress is not None and done % 1000 == 0:
                progress(done, len(addresses))

    await asyncio.gather(*(one(i, address) for i, address in enumerate(addresses)))
    report.seconds = time.perf_counter() - started
    return report


def abort_all(idlers: Sequence[Idler]) -> None:
    """Drop the idlers, and let the collector see everything again (see
    :func:`set_aside_garbage_collection`)."""
    for idler in idlers:
        idler.abort()
    gc.unfreeze()


class GCPauses:
    """Times every collection of Python's cyclic garbage collector while installed: a pause
    in the client would show as latency of the server it measures."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._started = 0.0

    def __enter__(self) -> Self:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    @property
    def longest_ms(self) -> float:
        return max((seconds for _, seconds in self.pauses), default=0.0) * 1000

    def summary(self) -> str:
        parts = []
        for generation in range(3):
            times = [t for g, t in self.pauses if g == generation]
            if times:
                parts.append(f"gen{generation}: {len(times)} x, longest {max(times) * 1000:.1f} ms")
        return "; ".join(parts) or "none"


def set_aside_garbage_collection() -> None:
    """Collect once, then exclude everything alive (the idlers) from later collections, so
    that the collector never walks ten thousand connections in the middle of a measurement."""
    gc.collect()
    gc.freeze()


# ---------------------------------------------------------------------------------------------
# Waiting for one delivery to reach its idlers


class Arrivals:
    """Resolves when every watched idler has announced at least its target count."""

    def __init__(self, targets: dict[Idler, int]) -> None:
        self.targets = targets
        self._pending = {idler for idler, target in targets.items() if idler.count < target}
        self._done = asyncio.Event()
        for idler in targets:
            idler.watch = self._seen
        if not self._pending:
            self._done.set()

    def _seen(self, idler: Idler) -> None:
        if idler.closed or idler.count >= self.targets.get(idler, 0):
            self._pending.discard(idler)
            if not self._pending:
                self._done.set()

    async def wait(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._done.wait()
        except TimeoutError:
            return False
        return True

    def latencies_ms(self, delivered_at: float) -> tuple[list[float], int]:
        """(milliseconds from the 250 to each idler's EXISTS, idlers that saw none)."""
        found, missed = [], 0
        for idler, target in self.targets.items():
            seen = idler.seen_at(target)
            if seen is None:
                missed += 1
            else:
                found.append((seen - delivered_at) * 1000.0)
        return found, missed


# ---------------------------------------------------------------------------------------------
# Delivery


class Deliverer:
    """One SMTP or LMTP connection; :meth:`deliver` returns when the final 250 was read."""

    def __init__(self, host: str, port: int, lmtp: bool) -> None:
        self.host, self.port, self.lmtp = host, port, lmtp
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        await self._reply("220")
        hello = "LHLO" if self.lmtp else "EHLO"  # RFC 2033 §4.1: LMTP greets with LHLO
        await self._send(f"{hello} client.bench.test\r\n".encode())
        await self._reply("250")

    async def _send(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)
        await self._writer.drain()

    async def _reply(self, expected: str) -> str:
        """Read one (possibly multi-line) reply; raise unless it has the expected code."""
        assert self._reader is not None
        lines = []
        while True:
            line = (await self._reader.readline()).decode("utf-8", "replace")
            if not line:
                raise ClientError("delivery connection closed")
            lines.append(line.rstrip())
            if len(line) < 4 or line[3] != "-":
                break
        if not lines[-1].startswith(expected):
            raise ClientError(f"expected {expected}, got {' | '.join(lines)}")
        return lines[-1]

    async def deliver(self, sender: str, recipient: str, message: bytes) -> float:
        """Send one message; the monotonic time at which its final 250 arrived."""
        await self._send(f"MAIL FROM:<{sender}>\r\n".encode())
        await self._reply("250")
        await self._send(f"RCPT TO:<{recipient}>\r\n".encode())
        await self._reply("250")
        await self._send(b"DATA\r\n")
        await self._reply("354")
        await self._send(dot_stuffed(message) + b".\r\n")
        # RFC 2033 §4.2: LMTP answers once per accepted recipient; there is one.
        await self._reply("250")
        return time.perf_counter()

    async def close(self) -> None:
        if self._writer is None:
            return
        try:
            await self._send(b"QUIT\r\n")
            await asyncio.wait_for(self._reply("221"), 5)
        except (OSError, ClientError, TimeoutError):
            pass
        self._writer.close()


def dot_stuffed(message: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency; ``message`` has CRLF line ends and ends with one."""
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed if stuffed.endswith(b"\r\n") else stuffed + b"\r\n"


# ---------------------------------------------------------------------------------------------
# Hold mode: idlers in a process of their own, driven over stdin (for in-process profiling of
# the server, where the client's allocations must not be counted)


async def hold(args: argparse.Namespace) -> None:
    """Connect the idlers, print ``ready``, then obey ``deliver ADDRESS COUNT`` and ``quit``."""
    import json
    groups = [_expand(spec) for spec in args.idlers]
    # Round robin over the accounts, as the benchmark connects: a server's first login to an
    # account (a password verification) is then not repeated by its other devices at once.
    addresses = [group[i] for i in range(max(map(len, groups))) for group in groups
                 if i < len(group)]
    report = await connect_idlers("127.0.0.1", args.port, client_context(Path(args.cert)),
                                  args.password, addresses, args.concurrency)
    set_aside_garbage_collection()
    by_account: dict[str, list[Idler]] = {}
    for idler in report.idlers:
        by_account.setdefault(idler.address, []).append(idler)
    print(json.dumps({"ready": len(report.idlers), "errors": report.errors[:3],
                      "seconds": round(report.seconds, 2)}), flush=True)
    loop = asyncio.get_running_loop()
    deliverer = Deliverer("127.0.0.1", args.smtp_port, lmtp=False) if args.smtp_port else None
    if deliverer is not None:
        await deliverer.open()
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).split():
        if line[0] == "quit":
            break
        if line[0] == "deliver" and deliverer is not None:
            samples, missed = [], 0
            for index in range(int(line[2])):
                arrivals = Arrivals({i: i.count + 1 for i in by_account.get(line[1], [])})
                body = (f"Subject: push {index}\r\nMessage-ID: <p{index}@bench.test>\r\n\r\n"
                        "hello\r\n").encode()
                delivered_at = await deliverer.deliver("sender@example.net", line[1], body)
                await arrivals.wait(30.0)
                found, lost = arrivals.latencies_ms(delivered_at)
                samples += found
                missed += lost
                await asyncio.sleep(0.05)
            samples.sort()
            print(json.dumps({"samples": len(samples), "missed": missed,
                              "p50_ms": samples[len(samples) // 2] if samples else None,
                              "p99_ms": samples[int(len(samples) * 0.99)] if samples else None,
                              "max_ms": samples[-1] if samples else None}), flush=True)
    abort_all(report.idlers)
    if deliverer is not None:
        await deliverer.close()


def _expand(spec: str) -> list[str]:
    """``ADDRESS*COUNT`` or ``ADDRESS``."""
    address, _, count = spec.partition("*")
    return [address] * int(count or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Hold IMAP idlers open (profiling helper).")
    parser.add_argument("--port", type=int, required=True, help="implicit-TLS IMAP port")
    parser.add_argument("--smtp-port", type=int, default=0, help="SMTP port for deliveries")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--concurrency", type=int, default=300)
    parser.add_argument("idlers", nargs="+", help="ADDRESS*COUNT ...")
    args = parser.parse_args(argv)
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    from common import run_async
    run_async(hold(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
