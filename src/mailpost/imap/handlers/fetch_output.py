"""Writing FETCH responses with bounded buffering (security catalogue I10).

Theory of operation
-------------------
A FETCH may return gigabytes (``FETCH 1:* BODY[]`` on a big mailbox) to a client that may
stop reading at any moment. :class:`PacedWriter` therefore never queues more than one chunk
(:data:`~.fetch_source.CHUNK`, 64 KiB) beyond what the connection has accepted: after every
chunk's worth of output it awaits ``session.flush()``, which waits for the transport to
drain below its high-water mark and raises ``ConnectionLost`` once the write deadline
passes. A client that stops reading is thus cut off by the deadline, holds at most the
transport buffer plus one chunk, and holds no store lock meanwhile (the store takes none
for reads).

Small pieces of one response are joined into one write (many tiny writes would become
many tiny TLS records), and the pacing counts octets across responses, so
``FETCH 1:* FLAGS`` on a large mailbox also goes out in 64 KiB batches.

A :class:`~.fetch_source.BlobStream` is copied chunk by chunk from its open handle, each
read in a worker thread (file reads block). If the body turns out shorter than the length
already announced in the literal header, the literal can no longer be completed and the
response stream would be unparseable; the connection is dropped instead.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, BinaryIO

from mailpost.imap import responses as rsp
from mailpost.imap.handlers.fetch_source import CHUNK, BlobStream, Piece
from mailpost.net.listener import ConnectionLost

if TYPE_CHECKING:
    from mailpost.imap.session import IMAPSession


class PacedWriter:
    """Writes to the session, flushing after every :data:`CHUNK` octets."""

    def __init__(self, session: IMAPSession) -> None:
        self.session = session
        self.unflushed = 0

    async def message(self, msn: int, items: list[list[Piece]]) -> None:
        """``* msn FETCH (item item ...)\\r\\n``; small pieces are joined into one write."""
        pending = [rsp.fetch_start(msn)]
        for index, item in enumerate(items):
            if index:
                pending.append(b" ")
            for piece in item:
                if isinstance(piece, BlobStream) or len(piece) > CHUNK:
                    await self.write(b"".join(pending))
                    pending.clear()
                    await self.piece(piece)
                else:
                    pending.append(bytes(piece))
        pending.append(b")" + rsp.CRLF)
        await self.write(b"".join(pending))

    async def piece(self, piece: Piece) -> None:
        if isinstance(piece, BlobStream):
            await self._stream(piece)
        else:
            await self.write(piece)

    async def write(self, data: bytes | memoryview) -> None:
        view, offset = memoryview(data), 0
        while offset < len(view):
            # Cut at the chunk boundary so that at most CHUNK octets are ever unflushed.
            chunk = view[offset:offset + CHUNK - self.unflushed]
            self.session.write(bytes(chunk))
            offset += len(chunk)
            self.unflushed += len(chunk)
            if self.unflushed >= CHUNK:
                await self.flush()

    async def flush(self) -> None:
        self.unflushed = 0
        await self.session.flush()

    async def _stream(self, stream: BlobStream) -> None:
        position, remaining = stream.start, stream.length
        while remaining > 0:
            chunk = await asyncio.to_thread(_read_at, stream.handle, position,
                                            min(CHUNK, remaining))
            if not chunk:
                raise ConnectionLost("message body shorter than its recorded size")
            await self.write(chunk)
            position += len(chunk)
            remaining -= len(chunk)


def _read_at(handle: BinaryIO, position: int, size: int) -> bytes:
    handle.seek(position)
    return handle.read(size)
