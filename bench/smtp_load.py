"""An asyncio SMTP load generator: N connections, each sending messages back to back.

Theory of operation
-------------------
Each of the N workers opens one connection, reads the greeting, sends EHLO once and then repeats
one mail transaction until the plan's end time: MAIL FROM, RCPT TO and DATA, the message, the
final reply. When the server offers PIPELINING, MAIL, RCPT and DATA go out as one group, which
is what a real MTA does (RFC 2920 §3.1: DATA may only be the last command of a group); without
it, each command waits for its reply. Every reply code is checked (RFC 2920 §3.1: a pipelining
client MUST check all statuses): a transaction counts as accepted only on 250, 250, 354, 250.
Anything else is counted as a failure under "COMMAND CODE" and the session recovers with a lone
dot after an unexpected 354 or with RSET otherwise, as RFC 2920 §3.1 asks. A 421, a closed
connection or a reply timeout ends the session; the worker reconnects after a short pause.

Time is split into a warm-up and a measurement window. A transaction is timed from the moment
its MAIL command is written to the arrival of the 250 after the message; it counts towards the
rate and the latency percentiles when that 250 arrives inside the window. Transactions started
before the end finish after it (they are in ``accepted_total`` only), so the server is never cut
off mid-message and the window is not biased towards short transactions.

Raw sockets (asyncio streams) rather than smtplib: smtplib is blocking and issues each command
separately, which would make the client, not the server, the bottleneck. The messages are built
once; only a numbered Message-ID line differs between them, so the client spends little CPU on
the two cores it shares with the server under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field

REPLY_TIMEOUT = 30.0  # seconds for one whole transaction; a stall this long is a failure
CONNECT_TIMEOUT = 10.0
RECONNECT_PAUSE = 0.2
CLIENT_NAME = "bench-client.test"
LINE_LENGTH = 76  # body line length without CRLF, as a MIME encoder would produce


class SessionLost(Exception):
    """The session cannot continue (421, closed connection, malformed or refused greeting).

    ``key`` is the short name failures are counted under; the message says what happened.
    """

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(detail)
        self.key = key


@dataclass(frozen=True)
class LoadPlan:
    host: str
    port: int
    connections: int
    warmup: float
    duration: float
    sender: str
    recipient: str
    message_size: int


@dataclass
class WorkerStats:
    """What one connection observed; merged into a :class:`LoadResult` at the end."""

    latencies: list[float] = field(default_factory=list)
    in_window: int = 0
    accepted_total: int = 0
    last_accept: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    failure_examples: dict[str, str] = field(default_factory=dict)
    pipelining: bool | None = None

    def fail(self, key: str, example: str) -> None:
        self.failures[key] += 1
        self.failure_examples.setdefault(key, example)


@dataclass
class LoadResult:
    connections: int
    duration: float
    in_window: int
    accepted_total: int
    started: float  # time.monotonic() when the workers were started
    last_accept: float  # time.monotonic() of the last 250 after DATA (0 if none)
    latencies: list[float]
    failures: dict[str, int]
    failure_examples: dict[str, str]
    pipelining: bool | None
    client_cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.in_window / self.duration

    @property
    def failure_count(self) -> int:
        return sum(self.failures.values())


# ---------------------------------------------------------------------------------------------
# Messages


def build_message_parts(size: int, sender: str, recipient: str) -> tuple[bytes, bytes]:
    """The fixed parts before and after the numbered Message-ID line, together ``size`` octets.

    The body is text lines of :data:`LINE_LENGTH` characters ending in CRLF; none starts with a
    dot, so no dot-stuffing is needed (RFC 5321 §4.5.2), and it ends with CRLF so that
    ``.\\r\\n`` terminates it (RFC 5321 §4.1.1.4).
    """
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    head = (f"From: Bench Sender <{sender}>\r\nTo: <{recipient}>\r\n"
            f"Subject: benchmark message\r\nDate: {date}\r\n").encode("ascii")
    tail = b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    fixed = len(head) + len(tail) + len(message_id_line(0, 0))
    return head, tail + _body(max(size - fixed, 2))


def message_id_line(worker: int, sequence: int) -> bytes:
    """Fixed width, so every message of a run has exactly the planned size."""
    return f"Message-ID: <{sequence:010d}.{worker:05d}@{CLIENT_NAME}>\r\n".encode("ascii")


def _body(size: int) -> bytes:
    pattern = b"The quick brown fox jumps over the lazy dog 0123456789 "
    line = (pattern * (LINE_LENGTH // len(pattern) + 1))[:LINE_LENGTH] + b"\r\n"
    whole, rest = divmod(size, len(line))
    last = (b"x" * max(rest - 2, 0) + b"\r\n") if rest >= 2 else b""
    body = line * whole + last
    if rest == 1:  # one octet cannot hold a CRLF: lengthen the first line instead
        body = b"y" + body
    return body


# ---------------------------------------------------------------------------------------------
# Replies


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, list[bytes]]:
    """One reply, possibly multi-line (RFC 5321 §4.2.1): its code and its text lines."""
    lines: list[bytes] = []
    while True:
        line = await reader.readline()
        if not line.endswith(b"\n"):
            raise SessionLost("closed", "connection closed by the server")
        code_text, separator = line[:3], line[3:4]
        if not code_text.isdigit() or separator not in (b" ", b"-", b"\r", b"\n"):
            raise SessionLost("malformed reply", repr(line[:100]))
        lines.append(line[4:].rstrip(b"\r\n"))
        if separator != b"-":
            code = int(code_text)
            if code == 421:  # RFC 5321 §3.8: the server is closing the channel
                raise SessionLost("421", _text(lines))
            return code, lines


# (command, reply code, reply lines) of the first unexpected reply of a transaction.
Failure = tuple[str, int, list[bytes]]


def _first_unexpected(replies: list[tuple[int, list[bytes]]]) -> Failure | None:
    expected = (("MAIL", 250), ("RCPT", 250), ("DATA", 354))
    for (name, wanted), (code, lines) in zip(expected, replies):
        if code != wanted:
            return name, code, lines
    return None


def _text(lines: list[bytes]) -> str:
    return b" / ".join(lines).decode("ascii", "replace")[:200]


# ---------------------------------------------------------------------------------------------
# One connection


class Worker:
    def __init__(self, number: int, plan: LoadPlan, window: tuple[float, float],
                 parts: tuple[bytes, bytes]) -> None:
        self.number = number
        self.plan = plan
        self.window_start, self.end = window
        self.head, self.tail = parts
        self.stats = WorkerStats()
        self.sequence = 0
        self.commands = (f"MAIL FROM:<{plan.sender}>\r\n".encode("ascii"),
                         f"RCPT TO:<{plan.recipient}>\r\n".encode("ascii"),
                         b"DATA\r\n")

    async def run(self) -> None:
        while time.monotonic() < self.end:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.plan.host, self.plan.port), CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                self.stats.fail(f"connect {type(exc).__name__}", str(exc))
                await asyncio.sleep(RECONNECT_PAUSE)
                continue
            try:
                await self._session(reader, writer)
            except (SessionLost, OSError, TimeoutError) as exc:
                key = exc.key if isinstance(exc, SessionLost) else type(exc).__name__
                self.stats.fail(f"session lost: {key}", str(exc) or key)
                await asyncio.sleep(RECONNECT_PAUSE)
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(REPLY_TIMEOUT):
            code, lines = await read_reply(reader)
            if code != 220:
                raise SessionLost(f"greeting {code}", _text(lines))
            writer.write(f"EHLO {CLIENT_NAME}\r\n".encode("ascii"))
            code, lines = await read_reply(reader)
            if code != 250:
                raise SessionLost(f"EHLO {code}", _text(lines))
        keywords = {line.split(b" ", 1)[0].upper() for line in lines[1:]}
        pipelining = b"PIPELINING" in keywords
        self.stats.pipelining = pipelining
        while time.monotonic() < self.end:
            async with asyncio.timeout(REPLY_TIMEOUT):
                await self._transaction(reader, writer, pipelining)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                writer.write(b"QUIT\r\n")
                await read_reply(reader)

    async def _transaction(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           pipelining: bool) -> None:
        started = time.monotonic()
        replies = await self._envelope(reader, writer, pipelining)
        failure = _first_unexpected(replies)
        if len(replies) == 3 and replies[2][0] == 354:
            failure = await self._send_content(reader, writer, failure)
        else:
            # DATA was refused: RSET clears whatever of the transaction the server kept.
            writer.write(b"RSET\r\n")
            await read_reply(reader)
        if failure is None:
            self._accepted(started)
        else:
            name, code, lines = failure
            self.stats.fail(f"{name} {code}", _text(lines))

    async def _send_content(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            failure: Failure | None) -> Failure | None:
        """After 354: the message, or a lone dot when MAIL or RCPT failed (RFC 2920 §3.1)."""
        self.sequence += 1
        writer.write(self._message() if failure is None else b".\r\n")
        await writer.drain()
        code, lines = await read_reply(reader)
        if failure is None and code != 250:
            failure = ("message", code, lines)
        return failure

    async def _envelope(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        pipelining: bool) -> list[tuple[int, list[bytes]]]:
        """Send MAIL, RCPT, DATA; with PIPELINING as one group, else stop at the first error."""
        if pipelining:
            writer.write(b"".join(self.commands))
            return [await read_reply(reader) for _ in self.commands]
        replies = []
        for command, expected in zip(self.commands, (250, 250, 354)):
            writer.write(command)
            replies.append(await read_reply(reader))
            if replies[-1][0] != expected:
                break
        return replies

    def _message(self) -> bytes:
        return b"".join((self.head, message_id_line(self.number, self.sequence), self.tail,
                         b".\r\n"))

    def _accepted(self, started: float) -> None:
        now = time.monotonic()
        stats = self.stats
        stats.accepted_total += 1
        stats.last_accept = now
        if self.window_start <= now < self.end:
            stats.in_window += 1
            stats.latencies.append(now - started)


# ---------------------------------------------------------------------------------------------
# A whole run


async def run_load(plan: LoadPlan) -> LoadResult:
    """Run ``plan.connections`` workers for warm-up plus duration; merge what they saw."""
    parts = build_message_parts(plan.message_size, plan.sender, plan.recipient)
    cpu_before = time.process_time()
    started = time.monotonic()
    window = (started + plan.warmup, started + plan.warmup + plan.duration)
    workers = [Worker(n, plan, window, parts) for n in range(plan.connections)]
    # Bounded even if a server stops answering: every reply wait is bounded by REPLY_TIMEOUT.
    limit = plan.warmup + plan.duration + REPLY_TIMEOUT + CONNECT_TIMEOUT + 10
    async with asyncio.timeout(limit), asyncio.TaskGroup() as group:
        for worker in workers:
            group.create_task(worker.run())
    all_stats = [worker.stats for worker in workers]
    return _merge(plan, started, all_stats, time.process_time() - cpu_before)


def _merge(plan: LoadPlan, started: float, all_stats: list[WorkerStats],
           cpu_seconds: float) -> LoadResult:
    failures: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for stats in all_stats:
        failures.update(stats.failures)
        for key, example in stats.failure_examples.items():
            examples.setdefault(key, example)
    offered = [s.pipelining for s in all_stats if s.pipelining is not None]
    return LoadResult(
        connections=plan.connections,
        duration=plan.duration,
        in_window=sum(s.in_window for s in all_stats),
        accepted_total=sum(s.accepted_total for s in all_stats),
        started=started,
        last_accept=max((s.last_accept for s in all_stats), default=0.0),
        latencies=[latency for s in all_stats for latency in s.latencies],
        failures=dict(failures),
        failure_examples=examples,
        pipelining=all(offered) if offered else None,
        client_cpu_seconds=cpu_seconds,
    )
