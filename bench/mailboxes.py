"""Test mailboxes for the mailbox benchmarks (POP3, later IMAP): the mail, and filling mailpost.

Theory of operation
-------------------
Mailbox benchmarks need the same realistic mail on every server. :class:`MessageCorpus` makes
it deterministically from a seed: sizes spread log-normally around a median, plain-text and
multipart messages, CRLF line ends, a few lines that start with a dot. Every message's
``Message-ID`` names its user and index, so a client can check what it received without relying
on the order a server lists messages in. Text is cut from pools of pre-made lines (C-level joins,
no per-word Python work per message), so a thousand messages take a few tens of milliseconds.

For mailpost, the fastest way to fill a mailbox is the store API in-process
(:func:`open_mailpost_store`, :func:`deliver_to_mailpost`): no SMTP, and mailpost adds no trace
header on this path, so the stored octets are exactly the generated ones. The store may be opened
while the server runs (the server then owns the orphan sweep); refilling between runs does that.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import datetime as dt
import math
import random
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import BenchError

if TYPE_CHECKING:
    from mailpost.store import MailStore

_WORD_TEXT = (
    "the of and to in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there one all we their been has would when if more will "
    "no out so said what up its about into than them can only other new some could time these "
    "two may then do first any my now such like our over man me even most made after also did "
    "many before must through back years where much your way well down should because each just "
    "those people how too little state good very make world still own see men work long get here "
    "between both life being under never day same another know while last might us great old "
    "year off come since against go came right used take three meeting invoice report project "
    "budget schedule review draft agenda attached please thanks regards update quarter team"
)
_WORDS = tuple(_WORD_TEXT.split())
_BENCH_DOMAIN = "bench.test"


class MessageCorpus:
    """Deterministic, realistic test messages; the same seed gives the same octets anywhere.

    Sizes follow a log-normal distribution around ``median_size`` (clipped to
    ``[min_size, max_size]``). Messages under 8 KiB are text/plain; larger ones are
    multipart/mixed with a short text part and a base64 attachment, as real mail of that size
    mostly is. Every line ends in CRLF and is at most 78 octets; about one text line in 200
    starts with a dot, so dot-stuffing is exercised. Each message's ``Message-ID`` is
    ``<b{seed}.u{user}.m{index}@bench.test>`` (see :meth:`parse_id`).
    """

    def __init__(self, seed: int = 1, median_size: int = 10240, min_size: int = 2048,
                 max_size: int = 51200) -> None:
        self.seed = seed
        self.median_size, self.min_size, self.max_size = median_size, min_size, max_size
        pool = random.Random(f"pool-{seed}")
        self._text = self._Lines([self._text_line(pool) for _ in range(8192)])
        self._base64 = self._Lines([_base64_line(pool) for _ in range(8192)])

    class _Lines:
        """A pool of CRLF-terminated lines; slices of it of about a given size."""

        def __init__(self, lines: list[bytes]) -> None:
            self.lines = lines
            self.ends = [0]
            for line in lines:
                self.ends.append(self.ends[-1] + len(line))

        def take(self, rng: random.Random, size: int) -> bytes:
            """Consecutive lines (wrapping around) from a random start, at least ``size``."""
            parts, total = [], 0
            start = rng.randrange(len(self.lines))
            while total < size:
                stop = bisect.bisect_left(self.ends, self.ends[start] + size - total)
                stop = min(max(stop, start + 1), len(self.lines))
                parts.append(b"".join(self.lines[start:stop]))
                total += self.ends[stop] - self.ends[start]
                start = 0
            return b"".join(parts)

    @staticmethod
    def _text_line(rng: random.Random) -> bytes:
        words: list[str] = []
        width = rng.randint(30, 76)
        while sum(len(word) + 1 for word in words) < width:
            words.append(rng.choice(_WORDS))
        line = " ".join(words)[:76]
        if rng.random() < 0.005:
            line = "." + line[:75]
        return line.encode("ascii") + b"\r\n"

    def size(self, user: int, index: int) -> int:
        """The target size of a message (the actual one is a little larger)."""
        rng = random.Random(f"size-{self.seed}-{user}-{index}")
        drawn = rng.lognormvariate(math.log(self.median_size), 0.7)
        return int(min(max(drawn, self.min_size), self.max_size))

    def message(self, user: int, index: int) -> bytes:
        rng = random.Random(f"msg-{self.seed}-{user}-{index}")
        target = self.size(user, index)
        header = self._header(rng, user, index)
        if target < 8192:
            head = header + b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            return head + self._text.take(rng, target - len(head))
        boundary = f"=_bench_{rng.getrandbits(48):012x}".encode("ascii")
        text = self._text.take(rng, rng.randint(600, 3000))
        head = (header + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
                b"This is a multi-part message in MIME format.\r\n\r\n--" + boundary +
                b"\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" + text +
                b"\r\n--" + boundary + b"\r\nContent-Type: application/pdf; "
                b'name="report.pdf"\r\nContent-Transfer-Encoding: base64\r\n'
                b'Content-Disposition: attachment; filename="report.pdf"\r\n\r\n')
        tail = b"\r\n--" + boundary + b"--\r\n"
        return head + self._base64.take(rng, target - len(head) - len(tail)) + tail

    def _header(self, rng: random.Random, user: int, index: int) -> bytes:
        sender = f"{rng.choice(_WORDS)}.{rng.choice(_WORDS)}@example{rng.randint(1, 50)}.net"
        when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=7 * index + user)
        date = when.strftime("%a, %d %b %Y %H:%M:%S +0000")
        subject = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 9)))
        relay = f"mx{rng.randint(1, 9)}.example{rng.randint(1, 50)}.net"
        lines = [
            f"Return-Path: <{sender}>",
            f"Received: from {relay} ([192.0.2.{rng.randint(1, 254)}])",
            f"\tby mx.{_BENCH_DOMAIN} with ESMTPS id {rng.getrandbits(40):010x}; {date}",
            f"Date: {date}",
            f"From: {sender.split('@')[0].replace('.', ' ').title()} <{sender}>",
            f"To: <u{user:03d}@{_BENCH_DOMAIN}>",
            f"Subject: {subject}",
            f"Message-ID: <b{self.seed}.u{user}.m{index}@{_BENCH_DOMAIN}>",
            "MIME-Version: 1.0",
        ]
        return "".join(line + "\r\n" for line in lines).encode("ascii")

    def mailbox(self, user: int, count: int) -> Iterator[bytes]:
        return (self.message(user, index) for index in range(count))

    @staticmethod
    def parse_id(message: bytes) -> tuple[int, int] | None:
        """(user, index) from a corpus message's ``Message-ID``, or None if there is none."""
        match = _MESSAGE_ID.search(message, 0, 2048)
        return (int(match[1]), int(match[2])) if match else None


_MESSAGE_ID = re.compile(rb"\r\nMessage-ID: <b\d+\.u(\d+)\.m(\d+)@")


def _base64_line(rng: random.Random) -> bytes:
    return base64.b64encode(rng.randbytes(57)) + b"\r\n"


# ---------------------------------------------------------------------------------------------
# Filling mailpost's store directly


@contextlib.asynccontextmanager
async def open_mailpost_store(data_dir: Path) -> AsyncIterator[MailStore]:
    """mailpost's store under ``data_dir``, opened in this process (server running or not)."""
    from mailpost.bus import LocalBus
    from mailpost.store import open_store

    store = await open_store(data_dir, LocalBus())
    try:
        yield store
    finally:
        await store.close()


async def add_mailpost_accounts(store: MailStore, addresses: Iterable[str],
                                password: str) -> dict[str, str]:
    """Create the accounts (and their domains) with one password; map address to its hash."""
    from mailpost.admin import ops

    hashes: dict[str, str] = {}
    for address in addresses:
        domain = address.rpartition("@")[2]
        if not await store.is_local_domain(domain):
            await ops.add_domain(store, domain)
        account = await ops.add_user(store, address, password)
        hashes[account.address] = account.password_hash
    return hashes


async def create_accounts(data_dir: Path | None, addresses: list[str],
                          password: str) -> dict[str, str]:
    """The accounts in the store under ``data_dir`` (None: no mailpost in this run, hashes
    only); address -> argon2id hash, for Dovecot's passwd-file."""
    if data_dir is None:
        from mailpost.auth.passwords import hash_password

        return {address: hash_password(password) for address in addresses}
    async with open_mailpost_store(data_dir) as store:
        return await add_mailpost_accounts(store, addresses, password)


async def deliver_to_mailpost(store: MailStore, address: str, messages: Iterable[bytes],
                              concurrency: int = 64) -> int:
    """Deliver ``messages`` into the account's INBOX, in order; return how many.

    Bodies are written ``concurrency`` at a time (the store commits concurrent deliveries as
    one group), but each delivery waits for the previous one, so UIDs follow the given order.
    """
    from mailpost.store import DeliveryTarget

    account = await store.get_account(address)
    if account is None:
        raise BenchError(f"no mailpost account {address}")
    target = [DeliveryTarget(account.id)]
    pending: asyncio.Queue[asyncio.Task[Any] | None] = asyncio.Queue(concurrency)

    async def write_body(message: bytes) -> Any:
        writer = store.blobs.writer()
        writer.write(message)
        return await writer.finish()

    async def deliver_in_order() -> int:
        count = 0
        while (task := await pending.get()) is not None:
            await store.deliver(await task, target)
            count += 1
        return count

    deliverer = asyncio.create_task(deliver_in_order())
    for message in messages:
        await pending.put(asyncio.create_task(write_body(message)))
    await pending.put(None)
    return await deliverer
