"""APPEND size limits (RFC 7889 APPENDLIMIT, RFC 7888 §4 literals, security catalogue I1/I2)
and a large message streamed to disk as it arrives."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailpost.imap.handlers import append as append_handlers
from mailpost.store.blobs import is_file_blob_id
from tests.e2e.harness import ServerThread, make_config
from tests.imapserver.helpers import RawIMAP
from tests.imapserver.test_append import ALICE, MESSAGE, append, metas, start_literal

LIMIT = 4096


@pytest.fixture
def small(tmp_path: Path) -> Iterator[ServerThread]:
    """A server whose APPENDLIMIT (limits.max_message_size) is 4 KiB."""
    with ServerThread(make_config(tmp_path / "var", max_message_size=LIMIT)) as running:
        running.add_user(ALICE)
        yield running


@pytest.fixture
def small_client(small: ServerThread) -> Iterator[RawIMAP]:
    raw = RawIMAP(small)
    raw.login()
    yield raw
    raw.close()


def test_appendlimit_capability_names_the_configured_limit(small: ServerThread) -> None:
    assert append_handlers.appendlimit_capability(small.config) == f"APPENDLIMIT={LIMIT}"


def test_exactly_the_limit_is_accepted(small_client: RawIMAP, small: ServerThread) -> None:
    body = b"x" * LIMIT
    assert append(small_client, "INBOX", body).startswith(b"OK [APPENDUID ")
    assert small.inbox(ALICE) == [body]


def test_synchronising_literal_over_the_limit_gets_toobig_without_continuation(
        small_client: RawIMAP, small: ServerThread) -> None:
    reply = start_literal(small_client, b"a1 APPEND INBOX {%d}" % (LIMIT + 1))
    assert reply.startswith(b"a1 NO [TOOBIG]"), reply
    small_client.ok("NOOP")  # nothing was sent, nothing needs skipping
    assert small.inbox(ALICE) == []


def test_non_synchronising_literal_over_the_limit_is_skipped(small_client: RawIMAP,
                                                             small: ServerThread) -> None:
    big = b"z" * (LIMIT + 100)
    small_client.send(b"a1 APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
    _, tagged = small_client.until_tagged("a1")
    assert tagged.startswith(b"a1 NO [TOOBIG]"), tagged
    # RFC 7888 §4 option 1: the octets were read and thrown away; the session goes on.
    assert small_client.ok("NOOP") == []
    assert append(small_client, "INBOX", MESSAGE).startswith(b"OK ")
    assert small.inbox(ALICE) == [MESSAGE]


def test_absurd_non_synchronising_literal_gets_bye(small_client: RawIMAP,
                                                   small: ServerThread) -> None:
    # Security catalogue I2: too big to skip (beyond max_command_size): NO, BYE, close.
    small_client.send(b"a1 APPEND INBOX {4294967295+}\r\n" + b"q" * 1000)
    tagged = small_client.read_response()
    assert tagged.startswith(b"a1 NO [TOOBIG]"), tagged
    assert small_client.read_response().startswith(b"* BYE [TOOBIG]")
    with pytest.raises((ConnectionError, OSError)):
        small_client.read_response()
    assert small.inbox(ALICE) == []


def test_multiappend_is_atomic_when_the_second_message_is_too_big(small_client: RawIMAP,
                                                                  small: ServerThread) -> None:
    assert start_literal(small_client, b"m1 APPEND INBOX {5}") == b"+ Ready"
    small_client.send(b"first {%d}\r\n" % (LIMIT + 1))
    reply = small_client.read_response()
    assert reply.startswith(b"m1 NO [TOOBIG]"), reply
    small_client.ok("NOOP")
    assert small.inbox(ALICE) == []


def test_multiappend_non_synchronising_second_message_too_big(small_client: RawIMAP,
                                                              small: ServerThread) -> None:
    big = b"b" * (LIMIT + 1)
    small_client.send(b"m1 APPEND INBOX {5+}\r\nfirst {%d+}\r\n" % len(big) + big + b"\r\n")
    _, tagged = small_client.until_tagged("m1")
    assert tagged.startswith(b"m1 NO [TOOBIG]"), tagged
    small_client.ok("NOOP")
    assert small.inbox(ALICE) == []


# -- a large message streamed to disk ----------------------------------------------------------

TEN_MB = 10 * 1024 * 1024
CHUNK = 64 * 1024


def _chunks() -> Iterator[bytes]:
    header = b"Subject: big\r\nContent-Type: application/octet-stream\r\n\r\n"
    yield header
    sent = len(header)
    counter = 0
    while sent < TEN_MB:
        piece = (b"%07d" % counter * (CHUNK // 7 + 1))[: min(CHUNK, TEN_MB - sent)]
        counter += 1
        sent += len(piece)
        yield piece


def _spooled(server: ServerThread) -> int:
    """Octets of partial bodies on disk (``tmp/`` holds bodies still being received)."""
    tmp = server.config.data_dir / "tmp"
    return sum(entry.stat().st_size for entry in tmp.iterdir())


def test_ten_megabytes_are_streamed_to_disk_while_they_arrive(server: ServerThread) -> None:
    raw = RawIMAP(server, timeout=60)
    raw.login()
    digest = hashlib.sha256()
    pieces = list(_chunks())
    half = len(pieces) // 2
    try:
        assert start_literal(raw, b"big APPEND INBOX {%d}" % TEN_MB) == b"+ Ready"
        for piece in pieces[:half]:
            digest.update(piece)
            raw.send(piece)
        # Before the message is complete, most of what was sent is already in a file: the
        # session hands the octets on as they come instead of collecting the message.
        deadline = time.monotonic() + 30
        while _spooled(server) < TEN_MB // 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _spooled(server) >= TEN_MB // 4
        for piece in pieces[half:]:
            digest.update(piece)
            raw.send(piece)
        raw.send(b"\r\n")
        _, tagged = raw.until_tagged("big")
    finally:
        raw.close()
    assert tagged.startswith(b"big OK [APPENDUID "), tagged
    [meta] = metas(server)
    assert meta.size == TEN_MB
    assert is_file_blob_id(meta.blob_id)  # a body file, renamed into place at the end
    assert _spooled(server) == 0
    assert hashlib.sha256(server.inbox(ALICE)[0]).digest() == digest.digest()


def test_slow_client_append_is_not_held_whole(server: ServerThread) -> None:
    """Octets that trickle in are stored as they arrive, in order."""
    raw = RawIMAP(server)
    raw.login()
    pieces = [b"Subject: slow\r\n\r\n"] + [bytes([65 + i]) * 1000 for i in range(10)]
    body = b"".join(pieces)
    try:
        assert start_literal(raw, b"s1 APPEND INBOX {%d}" % len(body)) == b"+ Ready"
        raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            raw.send(piece)
            time.sleep(0.01)
        raw.send(b"\r\n")
        _, tagged = raw.until_tagged("s1")
    finally:
        raw.close()
    assert tagged.startswith(b"s1 OK "), tagged
    assert server.inbox(ALICE) == [body]
