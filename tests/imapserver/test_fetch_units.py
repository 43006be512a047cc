"""Unit tests of the FETCH building blocks: the parsed-message cache, lazy body access
(never reading more than needed) and the paced writer (bounded output, catalogue I10)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import BinaryIO

import pytest

from mailpost.imap.handlers.fetch_cache import MessageCache
from mailpost.imap.handlers.fetch_output import PacedWriter
from mailpost.imap.handlers.fetch_source import (
    CHUNK,
    HEADER_PROBE,
    READ_AT_ONCE,
    BlobStream,
    MessageSource,
)
from mailpost.imap.handlers.fetch_store import UnknownSystemFlag, storable_flags
from mailpost.mime import Part, parse_message
from mailpost.net.listener import ConnectionLost
from mailpost.store.errors import NotFound
from mailpost.store.types import MessageMeta

SMALL = b"Subject: s\r\n\r\nbody\r\n"


class FakeBlobs:
    """A BlobStore over a dict that records every read."""

    def __init__(self, bodies: dict[str, bytes]) -> None:
        self.bodies = bodies
        self.reads: list[tuple[int, int | None]] = []
        self.opened = 0

    async def read(self, ref: str, start: int = 0, end: int | None = None) -> bytes:
        if ref not in self.bodies:
            raise NotFound(ref)
        self.reads.append((start, end))
        data = self.bodies[ref]
        return data[start:] if end is None else data[start:end]

    def open(self, ref: str) -> BinaryIO:
        if ref not in self.bodies:
            raise NotFound(ref)
        self.opened += 1
        return io.BytesIO(self.bodies[ref])


def meta_for(blob_id: str, size: int) -> MessageMeta:
    return MessageMeta(1, 1, 1, frozenset(), datetime(2024, 1, 1, tzinfo=UTC), size, blob_id)


def source(bodies: dict[str, bytes], blob_id: str,
           cache: MessageCache | None = None) -> tuple[MessageSource, FakeBlobs]:
    blobs = FakeBlobs(bodies)
    return MessageSource(blobs, meta_for(blob_id, len(bodies[blob_id])),  # type: ignore[arg-type]
                         cache if cache is not None else MessageCache()), blobs


def test_cache_evicts_least_recently_used_by_count() -> None:
    cache = MessageCache(max_entries=2)
    tree = parse_message(SMALL)
    cache.put("a", tree)
    cache.put("b", tree)
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", tree)
    assert cache.get("b") is None and cache.get("a") is not None and len(cache) == 2


def test_cache_bounds_the_total_number_of_parts() -> None:
    parts = b"".join(b"--b\r\n\r\npart %d\r\n" % n for n in range(10))
    multipart = (b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + b"--b--\r\n")
    tree = parse_message(multipart)
    cache = MessageCache(max_entries=100, max_parts=25)
    cache.put("x", tree)
    cache.put("y", tree)  # 11 parts each: both fit
    assert cache.weight == 22
    cache.put("z", tree)
    assert cache.get("x") is None and cache.weight == 22
    too_big = MessageCache(max_parts=5)
    assert too_big.put("huge", tree).tree is tree and len(too_big) == 0


def test_cache_renders_each_variant_once() -> None:
    entry = MessageCache().put("a", parse_message(SMALL))
    calls: list[Part] = []

    def make(tree: Part) -> bytes:
        calls.append(tree)
        return b"x"

    assert [entry.render(("BODY", False, True), make) for _ in range(3)] == [b"x"] * 3
    assert calls == [entry.tree]


async def test_parsed_tree_comes_from_the_cache_the_second_time() -> None:
    cache = MessageCache()
    first, blobs = source({"a": SMALL}, "a", cache)
    await first.tree()
    second, blobs2 = source({"a": SMALL}, "a", cache)
    await second.tree()
    assert blobs.reads == [(0, None)] and blobs2.reads == []


async def test_large_range_is_streamed_not_read() -> None:
    body = b"Subject: big\r\n\r\n" + b"x" * (3 * READ_AT_ONCE)
    message, blobs = source({"big": body}, "big")
    piece = await message.octets(0, len(body))
    assert isinstance(piece, BlobStream) and piece.length == len(body)
    assert blobs.reads == [] and blobs.opened == 1
    small = await message.octets(5, 20)
    assert small == body[5:20] and blobs.reads == [(5, 20)]
    message.close()
    assert piece.handle.closed


async def test_header_of_a_large_message_reads_only_a_probe() -> None:
    header = b"From: a@b.test\r\nSubject: big\r\n\r\n"
    body = header + b"y" * (2 * 1024 * 1024)
    message, blobs = source({"big": body}, "big")
    span = await message.header_span()
    assert (span.start, span.body_start, span.end) == (0, len(header), len(body))
    assert blobs.reads == [(0, HEADER_PROBE)]


async def test_header_longer_than_the_probe_falls_back_to_a_full_parse() -> None:
    header = b"X-Long: " + b"z" * (HEADER_PROBE + 10) + b"\r\n\r\n"
    body = header + b"y" * (2 * 1024 * 1024)
    message, blobs = source({"big": body}, "big")
    span = await message.header_span()
    assert span.body_start == len(header)
    assert (0, None) in blobs.reads


async def test_a_missing_body_raises_not_found() -> None:
    message, _ = source({"a": SMALL}, "a")
    message.meta = meta_for("gone", 10 * READ_AT_ONCE)
    with pytest.raises(NotFound):
        await message.octets(0, 10 * READ_AT_ONCE)
    with pytest.raises(NotFound):
        await message.tree()


class FakeSession:
    """Records writes and flushes; tracks the most output ever queued between flushes."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.queued = 0
        self.peak = 0
        self.flushes = 0

    def write(self, data: bytes) -> None:
        self.out += data
        self.queued += len(data)
        self.peak = max(self.peak, self.queued)

    async def flush(self) -> None:
        self.flushes += 1
        self.queued = 0


async def test_paced_writer_never_queues_more_than_a_chunk() -> None:
    session = FakeSession()
    writer = PacedWriter(session)  # type: ignore[arg-type]
    body = bytes(range(256)) * 8192  # 2 MiB
    stream = BlobStream(io.BytesIO(b"junk" + body), 4, len(body))
    await writer.message(7, [[b"UID 1"], [b"BODY[] {%d}\r\n" % len(body), stream],
                             [b"FLAGS ()"]])
    assert bytes(session.out) == (b"* 7 FETCH (UID 1 BODY[] {%d}\r\n" % len(body) + body
                                  + b" FLAGS ())\r\n")
    assert session.peak <= CHUNK
    assert session.flushes >= len(body) // CHUNK


async def test_paced_writer_drops_the_connection_on_a_short_body() -> None:
    writer = PacedWriter(FakeSession())  # type: ignore[arg-type]
    with pytest.raises(ConnectionLost):
        await writer.piece(BlobStream(io.BytesIO(b"abc"), 0, 10))


def test_storable_flags() -> None:
    assert storable_flags(("\\Seen", "\\Recent", "$Junk")) == frozenset({"\\Seen", "$Junk"})
    assert storable_flags(("\\Recent",)) == frozenset()
    with pytest.raises(UnknownSystemFlag):
        storable_flags(("\\Bogus",))
