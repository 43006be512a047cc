"""Where FETCH gets a message's octets and MIME tree, reading no more than it needs.

Theory of operation
-------------------
One :class:`MessageSource` serves one message of one FETCH command. It loads lazily and
keeps what it loaded until the message's response is written:

* Items that need only metadata (FLAGS, UID, INTERNALDATE, RFC822.SIZE, MODSEQ, EMAILID)
  never touch the body.
* A contiguous range of the body (``BODY[]``, ``BODY[TEXT]``, a part's body, a partial) is
  returned by :meth:`MessageSource.octets`: from memory when the whole body is loaded
  anyway, read at once when short, and otherwise as a :class:`BlobStream` (an open handle,
  an offset and a length) that the writer copies to the client in chunks. The handle is
  opened *before* anything of the message's response is written, so a body that is gone
  (expunged elsewhere, RFC 2180 §4.1) is noticed while the message can still be left out,
  and an open handle keeps reading even if the body is deleted meanwhile.
* The MIME tree (ENVELOPE, BODYSTRUCTURE, numbered sections, BINARY) comes from the process
  cache (:mod:`.fetch_cache`) or is parsed from the whole body, in a worker thread when the
  body is large so that other sessions keep being served.
* Header-only requests on the message itself (``BODY[HEADER]``, ``HEADER.FIELDS``,
  ``BODY[TEXT]``, ``RFC822.HEADER``) need only where the header ends. For a large message
  whose tree is not cached, :meth:`MessageSource.header_span` reads a prefix and finds the
  blank line there instead of loading megabytes of attachments.

Reads go through the store's ``BlobStore``: ``read`` (async) for ranges, ``open`` (blocking,
so in a worker thread) for streams. Both raise ``NotFound`` for a body that no longer
exists.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import BinaryIO

from mailpost.imap.handlers.fetch_cache import MessageCache, ParsedMessage
from mailpost.mime import Part, parse_message
from mailpost.store.interface import BlobStore
from mailpost.store.types import MessageMeta

# Octets per chunk when copying a body to the client (and the flush interval).
CHUNK = 64 * 1024
# Ranges up to this length are read into memory at once; longer ones are streamed.
READ_AT_ONCE = 256 * 1024
# Messages up to this size are parsed whole even for header-only requests (and cached).
PARSE_WHOLE = 1024 * 1024
# How much of a large message is read to find the end of its header.
HEADER_PROBE = 64 * 1024
# Parsing more than this runs in a worker thread.
PARSE_IN_THREAD = 256 * 1024
HEADER_CACHE_MAX = 8 * 1024  # header blocks kept in the message cache


@dataclass(slots=True)
class BlobStream:
    """``length`` octets of an open body, from ``start``: copied to the client in chunks."""

    handle: BinaryIO
    start: int
    length: int


# What a FETCH response is made of: octets in memory, or a range still to be read.
Piece = bytes | memoryview | BlobStream


def piece_length(piece: Piece) -> int:
    return piece.length if isinstance(piece, BlobStream) else len(piece)


class MessageSource:
    """Lazy access to one message's body and tree (see the module docstring)."""

    def __init__(self, blobs: BlobStore, meta: MessageMeta, cache: MessageCache) -> None:
        self.blobs = blobs
        self.meta = meta
        self.cache = cache
        self._data: bytes | None = None
        self._parsed: ParsedMessage | None = None
        self._handles: list[BinaryIO] = []

    @property
    def size(self) -> int:
        return self.meta.size

    async def parsed(self) -> ParsedMessage:
        """The cached tree and renderings, parsing the whole body on a miss."""
        if self._parsed is None:
            self._parsed = self.cache.get(self.meta.blob_id)
        if self._parsed is None:
            data = await self._whole()
            if len(data) > PARSE_IN_THREAD:
                tree = await asyncio.to_thread(parse_message, data)
            else:
                tree = parse_message(data)
            self._parsed = self.cache.put(self.meta.blob_id, tree)
            if tree.body_start <= HEADER_CACHE_MAX:
                self._parsed.header = data[:tree.body_start]
        return self._parsed

    async def tree(self) -> Part:
        return (await self.parsed()).tree

    async def header_span(self) -> Part:
        """A part for the message header only: ``start`` 0, ``header_end``, ``body_start``
        and ``end`` (the message size) are right; it has no children."""
        if self._parsed is None:
            self._parsed = self.cache.get(self.meta.blob_id)
        if self._parsed is None and self._data is None and self.size > PARSE_WHOLE:
            probe = await self.blobs.read(self.meta.blob_id, 0, HEADER_PROBE)
            root = parse_message(probe)
            # The blank line must lie wholly inside the probe: at least one octet follows it.
            if root.header_end < root.body_start < len(probe):
                return Part(0, root.header_end, root.body_start, self.size)
        root = await self.tree()
        return Part(root.start, root.header_end, root.body_start, self.size)

    async def octets(self, start: int, end: int) -> Piece:
        """The body's octets ``[start, end)`` (clipped to the message) for the client."""
        end = min(end, self.size)
        start = min(start, end)
        if self._data is not None:
            return memoryview(self._data)[start:end]
        if end - start <= READ_AT_ONCE:
            return await self.window(start, end)
        handle = await asyncio.to_thread(self.blobs.open, self.meta.blob_id)
        self._handles.append(handle)
        return BlobStream(handle, start, end - start)

    async def window(self, start: int, end: int) -> bytes:
        """The octets ``[start, end)`` in memory (for header subsets and decoding)."""
        if start >= end:
            return b""
        if self._data is not None:
            return self._data[start:end]
        if self._parsed is None:
            self._parsed = self.cache.get(self.meta.blob_id)
        header = self._parsed.header if self._parsed is not None else None
        if header is not None and end <= len(header):
            return header[start:end]
        return await self.blobs.read(self.meta.blob_id, start, end)

    async def part_window(self, part: Part, start: int) -> tuple[bytes, Part]:
        """The octets of ``part`` from offset ``start`` to its end, and a copy of ``part``
        whose offsets are relative to them (for the MIME functions that take data + part)."""
        data = await self.window(start, part.end)
        shifted = replace(part, start=max(0, part.start - start),
                          header_end=max(0, part.header_end - start),
                          body_start=part.body_start - start, end=part.end - start)
        return data, shifted

    def close(self) -> None:
        """Release the open stream handles and the loaded body."""
        for handle in self._handles:
            handle.close()
        self._handles.clear()
        self._data = None

    async def _whole(self) -> bytes:
        if self._data is None:
            self._data = await self.blobs.read(self.meta.blob_id)
        return self._data
