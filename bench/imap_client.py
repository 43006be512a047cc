"""The IMAP client of the load benchmark: many simulated mail clients, each looping over sessions.

Theory of operation
-------------------
:func:`run_load` starts N workers on one event loop (uvloop when available, see
:func:`common.run_async`); worker *i* owns user *i*, so no two sessions ever share a mailbox
and every count a session sees is predictable. A worker repeats one *session* until the plan's
end time; a session is what a desktop client does when it checks mail and files one message:

1. connect with implicit TLS (RFC 8314), trusting exactly the benchmark's certificate, and read
   the greeting;
2. ``LOGIN`` (RFC 9051 §6.2.3); the capabilities come from the ``[CAPABILITY ...]`` code of
   its OK (both servers send one; otherwise ``CAPABILITY`` is asked);
3. ``SELECT INBOX``: ``EXISTS`` must be the mailbox's size, ``UIDVALIDITY`` and ``UIDNEXT``
   are remembered;
4. ``UID FETCH 1:* (FLAGS)``, the flag resynchronisation of a client without CONDSTORE: one
   FETCH per message, UIDs all distinct;
5. ``UID FETCH`` of the newest ``headers`` messages' ``(UID RFC822.SIZE FLAGS
   BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])``, the message list;
   ``MESSAGE-ID`` is asked for (as real clients do) because it names the delivered message, so
   each ``RFC822.SIZE`` can be checked against what was delivered;
6. ``UID FETCH u (BODY.PEEK[])`` of ``bodies`` random messages, one command each (a reader
   opening messages); each body must be the delivered one, octet for octet (SHA-256);
7. ``UID STORE u +FLAGS (\\Seen)`` on an unseen message and ``UID STORE u -FLAGS (\\Seen)`` on a
   seen one: the untagged FETCH must show the new flags (RFC 9051 §6.4.6);
8. ``APPEND INBOX`` of a 5-10 KB message; the OK must carry ``[APPENDUID v u]`` (RFC 4315 §3)
   with the mailbox's UIDVALIDITY and a UID at or above the UIDNEXT seen at SELECT;
9. ``UID STORE u +FLAGS.SILENT (\\Deleted)`` on the appended message and ``EXPUNGE``: exactly
   one ``* n EXPUNGE``, for the last message, so the mailbox keeps its size;
10. ``LOGOUT``.

Commands go one at a time, each waiting for its tagged reply, as most clients do for this
sequence; the same client runs against every server. The APPEND literal is non-synchronising
(``{n+}``, RFC 7888) when the plan says so (the benchmark decides once, for all servers: only if
all of them offer LITERAL+); otherwise the client waits for the ``+`` continuation.

Responses are framed over one receive buffer (:class:`ImapConnection`): a response is a line, and
when a line ends in ``{n}`` the next ``n`` octets are a literal and the response continues after
it (RFC 9051 §4.3). Literal contents are kept apart from the response text, so the regular
expressions that pick ``UID``, ``RFC822.SIZE`` and ``FLAGS`` out of a FETCH never look inside a
message. Anything other than the expected is a failure, counted by a short key (``SELECT NO``,
``check FETCH BODY``, ``session lost: TimeoutError`` ...) with one example text; the session ends,
and the worker starts a new one after a short pause.

Time is split like the SMTP load generator's: a warm-up, then the measured window. A command
counts (rate and latency) when its tagged reply arrives inside the window, a session when its
LOGOUT reply does; sessions running at the end are finished but not counted. Latencies are taken
per command name, from writing the command to reading its tagged reply; ``connect`` is TCP +
TLS + greeting and ``session`` the whole session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mailboxes import MessageCorpus

SESSION_TIMEOUT = 60.0  # seconds for one whole session; a stall this long is a failure
RETRY_PAUSE = 0.2
HEADER_FIELDS = b"(FROM TO SUBJECT DATE MESSAGE-ID)"
APPEND_POOL = 32  # distinct messages to append; cycled through by all workers

_LITERAL_END = re.compile(rb"~?\{(\d+)\}$")
_FETCH = re.compile(rb"^\* (\d+) FETCH \(")
_UID = re.compile(rb"[( ]UID (\d+)")
_SIZE = re.compile(rb"[( ]RFC822\.SIZE (\d+)")
_FLAGS = re.compile(rb"[( ]FLAGS \(([^)]*)\)")
_CODE = re.compile(rb"^\[([^\]]*)\]")
_NUMBER_RESPONSE = re.compile(rb"^\* (\d+) ([A-Z]+)$")
_MESSAGE_ID = re.compile(rb"Message-ID: <b\d+\.u(\d+)\.m(\d+)@", re.IGNORECASE)


class ImapFailure(Exception):
    """The session cannot go on; ``key`` is what the failure is counted under."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(detail)
        self.key = key


# ---------------------------------------------------------------------------------------------
# Framing


@dataclass
class Response:
    """One server response: its text with literal contents left out, and the literals."""

    text: bytes
    literals: list[bytes]


@dataclass
class Reply:
    """A command's tagged completion and the untagged responses that came before it."""

    status: bytes
    text: bytes
    untagged: list[Response]

    def code(self) -> bytes:
        """The response code of the tagged line without brackets (b"" if none)."""
        match = _CODE.match(self.text)
        return match[1] if match else b""

    def numbers(self, name: bytes) -> list[int]:
        """The numbers of ``* n NAME`` responses (EXISTS, EXPUNGE, ...), in order."""
        found = []
        for response in self.untagged:
            match = _NUMBER_RESPONSE.match(response.text)
            if match and match[2] == name:
                found.append(int(match[1]))
        return found

    def untagged_code(self, name: bytes) -> int | None:
        """The number of an untagged ``* OK [NAME n]`` (UIDVALIDITY, UIDNEXT)."""
        prefix = b"* OK [" + name + b" "
        for response in self.untagged:
            if response.text.startswith(prefix):
                return int(response.text[len(prefix):].split(b"]", 1)[0])
        return None

    def fetches(self) -> list[FetchItem]:
        return [item for r in self.untagged if (item := FetchItem.parse(r)) is not None]


@dataclass
class FetchItem:
    seq: int
    uid: int | None
    size: int | None
    flags: list[bytes] | None
    literal: bytes | None

    @classmethod
    def parse(cls, response: Response) -> FetchItem | None:
        match = _FETCH.match(response.text)
        if match is None:
            return None
        text = response.text
        uid, size, flags = _UID.search(text), _SIZE.search(text), _FLAGS.search(text)
        return cls(int(match[1]), int(uid[1]) if uid else None, int(size[1]) if size else None,
                   flags[1].split() if flags else None,
                   response.literals[0] if response.literals else None)


class ImapConnection:
    """Tagged commands and literal-aware response reading over one TLS stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = bytearray()
        self.position = 0  # start of the unread part of ``buffer``
        self.serial = 0

    async def _fill(self) -> None:
        data = await self.reader.read(1 << 18)
        if not data:
            raise ImapFailure("session lost: closed", "connection closed by the server")
        if self.position:
            del self.buffer[:self.position]
            self.position = 0
        self.buffer += data

    async def response(self) -> Response:
        """The next whole response, literals included (RFC 9051 §4.3)."""
        parts: list[bytes] = []
        literals: list[bytes] = []
        while True:
            while (end := self.buffer.find(b"\r\n", self.position)) < 0:
                await self._fill()
            line = bytes(self.buffer[self.position:end])
            self.position = end + 2
            parts.append(line)
            literal = _LITERAL_END.search(line) if line.endswith(b"}") else None
            if literal is None:
                return Response(b"".join(parts), literals)
            size = int(literal[1])
            while len(self.buffer) - self.position < size:
                await self._fill()
            literals.append(bytes(self.buffer[self.position:self.position + size]))
            self.position += size

    async def greeting(self) -> Response:
        response = await self.response()
        if not response.text.startswith(b"* OK"):
            raise ImapFailure("greeting", response.text[:200].decode("ascii", "replace"))
        return response

    async def command(self, line: bytes, literal: bytes | None = None,
                      literal_plus: bool = False) -> Reply:
        """Send ``TAG line`` (and a literal after it, announced as ``{n}`` or ``{n+}``)."""
        self.serial += 1
        tag = b"a%d" % self.serial
        untagged: list[Response] = []
        if literal is None:
            self.writer.write(tag + b" " + line + b"\r\n")
        elif literal_plus:
            self.writer.write(b"%s %s {%d+}\r\n%s\r\n" % (tag, line, len(literal), literal))
        else:
            self.writer.write(b"%s %s {%d}\r\n" % (tag, line, len(literal)))
            refused = await self._await_continuation(tag, untagged)
            if refused is not None:
                return refused
            self.writer.write(literal + b"\r\n")
        return await self._tagged(tag, untagged)

    async def _await_continuation(self, tag: bytes, untagged: list[Response]) -> Reply | None:
        while True:
            response = await self.response()
            if response.text.startswith(b"+"):
                return None
            if response.text.startswith(tag + b" "):
                return _tagged_reply(tag, response, untagged)
            untagged.append(response)

    async def _tagged(self, tag: bytes, untagged: list[Response]) -> Reply:
        while True:
            response = await self.response()
            if response.text.startswith(b"* "):
                untagged.append(response)
            elif response.text.startswith(tag + b" "):
                return _tagged_reply(tag, response, untagged)
            else:
                raise ImapFailure("unexpected response", response.text[:200].decode("ascii",
                                                                                   "replace"))


def _tagged_reply(tag: bytes, response: Response, untagged: list[Response]) -> Reply:
    status, _, text = response.text[len(tag) + 1:].partition(b" ")
    return Reply(status.upper(), text, untagged)


# ---------------------------------------------------------------------------------------------
# What the client knows and checks


@dataclass
class BoxFacts:
    """What was delivered to one user: size and SHA-256 of every message, by corpus index."""

    user: int
    address: str
    sizes: list[int]
    digests: list[bytes]

    @classmethod
    def of(cls, user: int, address: str, messages: list[bytes]) -> BoxFacts:
        return cls(user, address, [len(m) for m in messages],
                   [hashlib.sha256(m).digest() for m in messages])

    @property
    def octets(self) -> int:
        return sum(self.sizes)

    def index_of(self, octets: bytes, what: str) -> int:
        """The corpus index named by the Message-ID in ``octets``; it must be this user's."""
        match = _MESSAGE_ID.search(octets)
        if match is None or int(match[1]) != self.user or not 0 <= int(match[2]) < len(
                self.sizes):
            found = match[0].decode("ascii", "replace") if match else "no Message-ID"
            raise ImapFailure(f"check {what}", f"not a message of {self.address}: {found}")
        return int(match[2])


def append_pool(seed: int) -> list[bytes]:
    """Messages of 5-10 KB to APPEND; their Message-IDs name no mailbox user (u9999)."""
    corpus = MessageCorpus(seed + 7919, median_size=7168, min_size=5120, max_size=9728)
    return [corpus.message(9999, index) for index in range(APPEND_POOL)]


def client_context(cert: Path) -> ssl.SSLContext:
    """Trust exactly the benchmark's certificate; the name checked is ``localhost``."""
    context = ssl.create_default_context(cafile=str(cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


# ---------------------------------------------------------------------------------------------
# The plan and what workers observe


@dataclass(frozen=True)
class LoadPlan:
    host: str
    port: int
    context: ssl.SSLContext
    password: str
    warmup: float
    duration: float
    headers: int
    bodies: int
    literal_plus: bool
    seed: int
    appends: tuple[bytes, ...]


@dataclass
class WorkerStats:
    sessions: int = 0  # LOGOUT replies inside the window
    sessions_total: int = 0
    commands: int = 0  # tagged OK replies inside the window
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    failure_examples: dict[str, str] = field(default_factory=dict)
    capabilities: frozenset[str] = frozenset()
    tls: str | None = None

    def fail(self, key: str, example: str) -> None:
        self.failures[key] += 1
        self.failure_examples.setdefault(key, example[:300])


def _text(data: bytes) -> str:
    return data[:200].decode("ascii", "replace")


def _capabilities(text: bytes) -> frozenset[str]:
    return frozenset(word.decode("ascii", "replace").upper() for word in text.split()[1:])


# ---------------------------------------------------------------------------------------------
# One simulated client


class Worker:
    """One simulated mail client, repeating :meth:`session` for its own mailbox."""

    def __init__(self, number: int, plan: LoadPlan, box: BoxFacts, window: tuple[float, float],
                 end: float) -> None:
        self.plan, self.box = plan, box
        self.window_start, self.window_end = window
        self.end = end
        self.stats = WorkerStats()
        # The same sequence of choices against every server.
        self.rng = random.Random(f"{plan.seed}-{number}")
        self.appended = number * 7  # where in the append pool this worker starts

    async def run(self) -> None:
        while time.monotonic() < self.end:
            if not await self.one_session():
                await asyncio.sleep(RETRY_PAUSE)

    async def one_session(self) -> bool:
        """Run one session; count a failure instead of raising. True if it succeeded."""
        try:
            async with asyncio.timeout(SESSION_TIMEOUT):
                await self._session()
            return True
        except ImapFailure as exc:
            self.stats.fail(exc.key, str(exc))
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.stats.fail(f"session lost: {type(exc).__name__}", str(exc) or repr(exc))
        return False

    def _timed(self, name: str, started: float) -> None:
        now = time.monotonic()
        if self.window_start <= now < self.window_end:
            self.stats.latencies.setdefault(name, []).append(now - started)

    async def _command(self, conn: ImapConnection, name: str, line: bytes,
                       literal: bytes | None = None) -> Reply:
        started = time.monotonic()
        reply = await conn.command(line, literal, self.plan.literal_plus)
        if reply.status != b"OK":
            raise ImapFailure(f"{name} {reply.status.decode('ascii', 'replace')}",
                              _text(reply.text))
        self._timed(name, started)
        if self.window_start <= time.monotonic() < self.window_end:
            self.stats.commands += 1
        return reply

    async def _session(self) -> None:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(
            self.plan.host, self.plan.port, ssl=self.plan.context, server_hostname="localhost")
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is not None:
                self.stats.tls = f"{ssl_object.version()} {ssl_object.cipher()[0]}"
            conn = ImapConnection(reader, writer)
            await conn.greeting()
            self._timed("connect", started)
            await self._script(conn)
        finally:
            closing = time.monotonic()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._timed("close", closing)
        self.stats.sessions_total += 1
        self._timed("session", started)
        if self.window_start <= time.monotonic() < self.window_end:
            self.stats.sessions += 1

    async def _script(self, conn: ImapConnection) -> None:
        await self._login(conn)
        uidvalidity, uidnext = await self._select(conn)
        flags = await self._fetch_flags(conn)
        uids = sorted(flags)
        await self._fetch_headers(conn, uids[-self.plan.headers:])
        for _ in range(self.plan.bodies):
            await self._fetch_body(conn, self.rng.choice(uids))
        await self._toggle_seen(conn, flags)
        appended = await self._append(conn, uidvalidity, uidnext)
        await self._command(conn, "STORE", b"UID STORE %d +FLAGS.SILENT (\\Deleted)" % appended)
        await self._expunge(conn)
        await self._command(conn, "LOGOUT", b"LOGOUT")

    async def _login(self, conn: ImapConnection) -> None:
        line = b'LOGIN "%s" "%s"' % (self.box.address.encode(), self.plan.password.encode())
        reply = await self._command(conn, "LOGIN", line)
        code = reply.code()
        if not code.upper().startswith(b"CAPABILITY "):
            capability = await self._command(conn, "CAPABILITY", b"CAPABILITY")
            code = next((r.text[2:] for r in capability.untagged
                         if r.text.upper().startswith(b"* CAPABILITY ")), b"")
        self.stats.capabilities = _capabilities(code)

    async def _select(self, conn: ImapConnection) -> tuple[int, int]:
        reply = await self._command(conn, "SELECT", b"SELECT INBOX")
        exists = reply.numbers(b"EXISTS")
        uidvalidity, uidnext = reply.untagged_code(b"UIDVALIDITY"), reply.untagged_code(
            b"UIDNEXT")
        if exists != [len(self.box.sizes)] or uidvalidity is None or uidnext is None:
            if exists and exists[-1] > len(self.box.sizes):
                await self._repair(conn)
            raise ImapFailure("check SELECT", f"EXISTS {exists}, UIDVALIDITY {uidvalidity}, "
                              f"UIDNEXT {uidnext}; delivered {len(self.box.sizes)}")
        return uidvalidity, uidnext

    async def _repair(self, conn: ImapConnection) -> None:
        """Expunge what an earlier, failed session appended, so that one failure stays one."""
        reply = await conn.command(b"UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        strays = []
        for item in reply.fetches():
            match = _MESSAGE_ID.search(item.literal or b"")
            if item.uid is not None and (match is None or int(match[1]) != self.box.user):
                strays.append(b"%d" % item.uid)
        if strays:
            await conn.command(b"UID STORE %s +FLAGS.SILENT (\\Deleted)" % b",".join(strays))
            await conn.command(b"EXPUNGE")

    async def _fetch_flags(self, conn: ImapConnection) -> dict[int, list[bytes]]:
        """UID -> flags of every message."""
        reply = await self._command(conn, "FETCH FLAGS", b"UID FETCH 1:* (FLAGS)")
        items = reply.fetches()
        flags = {item.uid: item.flags for item in items
                 if item.uid is not None and item.flags is not None}
        if len(flags) != len(self.box.sizes) or len(items) != len(flags):
            raise ImapFailure("check FETCH FLAGS", f"{len(items)} FETCH responses, "
                              f"{len(flags)} UIDs; delivered {len(self.box.sizes)}")
        return flags

    async def _fetch_headers(self, conn: ImapConnection, uids: list[int]) -> None:
        line = (b"UID FETCH %d:%d (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS %s])"
                % (uids[0], uids[-1], HEADER_FIELDS))
        reply = await self._command(conn, "FETCH HEADERS", line)
        items = reply.fetches()
        if sorted(item.uid or 0 for item in items) != uids:
            raise ImapFailure("check FETCH HEADERS", f"{len(items)} responses for UIDs "
                              f"{uids[0]}:{uids[-1]}, wanted {len(uids)}")
        for item in items:
            if item.literal is None or item.size is None or item.flags is None \
                    or not item.literal.endswith(b"\r\n\r\n"):
                raise ImapFailure("check FETCH HEADERS", f"incomplete FETCH for UID {item.uid}")
            index = self.box.index_of(item.literal, "FETCH HEADERS")
            if item.size != self.box.sizes[index]:
                raise ImapFailure("check FETCH HEADERS", f"RFC822.SIZE {item.size} of message "
                                  f"{index}, delivered {self.box.sizes[index]}")

    async def _fetch_body(self, conn: ImapConnection, uid: int) -> None:
        reply = await self._command(conn, "FETCH BODY", b"UID FETCH %d (BODY.PEEK[])" % uid)
        items = reply.fetches()
        if len(items) != 1 or items[0].uid != uid or items[0].literal is None:
            raise ImapFailure("check FETCH BODY", f"{len(items)} responses for UID {uid}")
        body = items[0].literal
        index = self.box.index_of(body, "FETCH BODY")
        if hashlib.sha256(body).digest() != self.box.digests[index]:
            raise ImapFailure("check FETCH BODY", f"message {index}: {len(body)} octets that "
                              f"differ from the {self.box.sizes[index]} delivered")

    async def _toggle_seen(self, conn: ImapConnection, flags: dict[int, list[bytes]]) -> None:
        """+FLAGS on an unseen message, -FLAGS on a seen one: both change, both are reported."""
        seen = [uid for uid, found in flags.items() if b"\\Seen" in found]
        unseen = [uid for uid, found in flags.items() if b"\\Seen" not in found]
        if unseen:
            uid = self.rng.choice(unseen)
            await self._store_seen(conn, uid, b"+")
            seen.append(uid)
        if seen:
            await self._store_seen(conn, self.rng.choice(seen), b"-")

    async def _store_seen(self, conn: ImapConnection, uid: int, sign: bytes) -> None:
        reply = await self._command(conn, "STORE", b"UID STORE %d %sFLAGS (\\Seen)" % (uid, sign))
        reported = [item.flags for item in reply.fetches() if item.uid == uid]
        if not reported or reported[-1] is None or (b"\\Seen" in reported[-1]) != (sign == b"+"):
            raise ImapFailure("check STORE", f"UID {uid} {sign.decode()}FLAGS \\Seen: "
                              f"reported {reported}")

    async def _append(self, conn: ImapConnection, uidvalidity: int, uidnext: int) -> int:
        message = self.plan.appends[self.appended % len(self.plan.appends)]
        self.appended += 1
        reply = await self._command(conn, "APPEND", b"APPEND INBOX", literal=message)
        words = reply.code().split()
        if len(words) != 3 or words[0].upper() != b"APPENDUID" or not words[2].isdigit() \
                or int(words[1]) != uidvalidity or int(words[2]) < uidnext:
            raise ImapFailure("check APPEND", f"tagged OK {_text(reply.text)!r}; UIDVALIDITY "
                              f"{uidvalidity}, UIDNEXT {uidnext}")
        return int(words[2])

    async def _expunge(self, conn: ImapConnection) -> None:
        reply = await self._command(conn, "EXPUNGE", b"EXPUNGE")
        expunged, last = reply.numbers(b"EXPUNGE"), len(self.box.sizes) + 1
        if expunged != [last]:
            raise ImapFailure("check EXPUNGE", f"expunged {expunged}, wanted [{last}]")


# ---------------------------------------------------------------------------------------------
# A whole run


CpuProbe = Callable[[], dict[str, float]]


@dataclass
class LoadResult:
    clients: int
    duration: float
    sessions: int
    sessions_total: int
    commands: int
    latencies: dict[str, list[float]]
    failures: dict[str, int]
    failure_examples: dict[str, str]
    capabilities: frozenset[str]
    tls: list[str]
    client_cpu_seconds: float
    cpu: dict[str, float]  # the probe's counters, difference over the measured window

    @property
    def failure_count(self) -> int:
        return sum(self.failures.values())


async def _probe_window(probe: CpuProbe, window: tuple[float, float]) -> dict[str, float]:
    """The probe's counters (and this process's CPU) at the window's start and end: deltas."""
    loop_time = time.monotonic
    await asyncio.sleep(max(0.0, window[0] - loop_time()))
    before, client_before = await asyncio.to_thread(probe), time.process_time()
    await asyncio.sleep(max(0.0, window[1] - loop_time()))
    after, client_after = await asyncio.to_thread(probe), time.process_time()
    deltas = {key: after[key] - before[key] for key in before.keys() & after.keys()}
    deltas["client"] = client_after - client_before
    return deltas


async def run_load(plan: LoadPlan, boxes: list[BoxFacts], probe: CpuProbe) -> LoadResult:
    """One worker per box for warm-up plus duration; merge what they saw."""
    started = time.monotonic()
    window = (started + plan.warmup, started + plan.warmup + plan.duration)
    workers = [Worker(n, plan, box, window, window[1]) for n, box in enumerate(boxes)]
    # Bounded even if a server stops answering: every session is bounded by SESSION_TIMEOUT.
    async with asyncio.timeout(plan.warmup + plan.duration + SESSION_TIMEOUT + 10):
        cpu_task = asyncio.create_task(_probe_window(probe, window))
        await asyncio.gather(*(worker.run() for worker in workers))
        cpu = await cpu_task
    return _merge(plan, [worker.stats for worker in workers], cpu)


async def run_once(plan: LoadPlan, boxes: list[BoxFacts], concurrency: int = 8) -> LoadResult:
    """Exactly one session per box, ``concurrency`` at a time, all counted (no window)."""
    workers = [Worker(n, plan, box, (0.0, float("inf")), 0.0) for n, box in enumerate(boxes)]
    slots = asyncio.Semaphore(concurrency)
    cpu_before = time.process_time()

    async def one(worker: Worker) -> bool:
        async with slots:
            return await worker.one_session()

    await asyncio.gather(*(one(worker) for worker in workers))
    cpu = {"client": time.process_time() - cpu_before}
    return _merge(plan, [worker.stats for worker in workers], cpu)


def _merge(plan: LoadPlan, all_stats: list[WorkerStats], cpu: dict[str, float]) -> LoadResult:
    failures: Counter[str] = Counter()
    examples: dict[str, str] = {}
    latencies: dict[str, list[float]] = {}
    for stats in all_stats:
        failures.update(stats.failures)
        for key, example in stats.failure_examples.items():
            examples.setdefault(key, example)
        for name, values in stats.latencies.items():
            latencies.setdefault(name, []).extend(values)
    capabilities = [s.capabilities for s in all_stats if s.capabilities]
    return LoadResult(
        clients=len(all_stats), duration=plan.duration,
        sessions=sum(s.sessions for s in all_stats),
        sessions_total=sum(s.sessions_total for s in all_stats),
        commands=sum(s.commands for s in all_stats), latencies=latencies,
        failures=dict(failures), failure_examples=examples,
        capabilities=frozenset.intersection(*capabilities) if capabilities else frozenset(),
        tls=sorted({s.tls for s in all_stats if s.tls}),
        client_cpu_seconds=cpu.pop("client", 0.0), cpu=cpu)
