"""Connection.flush (net.listener): with little output queued it returns at once without
arming a deadline; a peer that stops reading still meets the write deadline, and a lost
connection is still reported."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from mailpost.net.listener import Connection, ConnectionLost


@dataclass
class Pair:
    connection: Connection  # the server's side
    peer_reader: asyncio.StreamReader
    peer_writer: asyncio.StreamWriter


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
        asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)),
                                        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer_reader, peer_writer = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = await accepted
    connection = Connection(reader, writer, "test", implicit_tls=False)
    try:
        yield Pair(connection, peer_reader, peer_writer)
    finally:
        peer_writer.close()
        await connection.close()
        server.close()
        await server.wait_closed()


def _no_deadline(*args: Any) -> Any:
    raise AssertionError("no deadline may be armed for a flush with little output queued")


async def test_small_output_is_flushed_without_a_deadline(pair: Pair,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pair.connection.write(b"* 1 EXISTS\r\n")
    with monkeypatch.context() as patched:
        patched.setattr(asyncio, "timeout", _no_deadline)  # what listener uses
        await pair.connection.flush(30)
    assert await asyncio.wait_for(pair.peer_reader.readline(), 5) == b"* 1 EXISTS\r\n"


async def test_a_peer_that_stops_reading_meets_the_write_deadline(pair: Pair) -> None:
    chunk = b"x" * 65536
    with pytest.raises(ConnectionLost, match="write timeout"):
        for _ in range(1024):  # 64 MiB at most: far more than the kernel buffers take
            pair.connection.write(chunk)
            await pair.connection.flush(0.2)


async def test_a_lost_connection_is_reported(pair: Pair) -> None:
    # Reset, not a polite close: SO_LINGER with a zero timeout makes close() send RST.
    sock = pair.peer_writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    pair.peer_writer.transport.abort()
    with pytest.raises(ConnectionLost):
        await pair.connection.read(5)  # the server's side notices the reset
    pair.connection.write(b"* BYE\r\n")
    with pytest.raises(ConnectionLost):
        await pair.connection.flush(5)
