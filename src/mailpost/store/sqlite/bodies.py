"""Message bodies of the SQLite store: small ones inside the database, larger ones as files.

Theory of operation
===================

A body file costs a create, an ``fsync`` of the file, a rename and an ``fsync`` of its directory
before the database transaction that references it can even start (see
:mod:`mailpost.store.blobs`). Most mail is a few kilobytes, and for those bytes that is most of
the cost of accepting a message. So a body that is complete while still entirely in the
writer's memory buffer (at most :data:`~mailpost.store.blobs.SPILL_THRESHOLD` bytes) never
touches the file system:

1. :meth:`BodyWriter.finish` gives it a fresh random *inline* id (prefix
   :data:`~mailpost.store.blobs.INLINE_PREFIX`, so the kind of a body is visible in its id and
   reads never probe) and parks the bytes in :class:`PendingBodies`, an in-memory map. It
   returns at once: nothing is durable yet, and nothing references the body yet either.
2. The write operation that first references the body (``deliver`` or ``append``, through
   :meth:`~mailpost.store.sqlite.writer.WriteContext.reference`) inserts the bytes into the
   ``inline_bodies`` table *in its own transaction*. The body therefore becomes durable in the
   very commit (WAL, ``synchronous=FULL``, shared by the whole batch) that makes the message
   visible: when SMTP answers 250 both are on disk, and if the commit fails neither is.
3. Only after that commit is the pending entry dropped (on the event loop, just before the
   caller's future is resolved). If the operation is rolled back (over quota) or the commit
   fails, the entry stays pending and the caller may retry.

A body that outgrows the buffer is handed, with everything buffered so far, to a
:class:`~mailpost.store.blobs.FileBlobWriter` and follows the file protocol unchanged.

Pending entries are bounded. A session that fails between ``finish()`` and ``deliver()`` would
leave its entry behind, so each new entry first evicts entries older than :data:`PENDING_TTL`
(the map is in insertion order, so that is a walk from its front); ``abort()`` after
``finish()`` and ``release_blob`` drop an entry at once. And when the map already holds
:data:`PENDING_BUDGET` bytes, a new body goes to a file instead: never more memory, never a
refusal.

Deleting an inline body is the writer's job, as for files: once nothing references it, its row
is deleted by the operation that dropped the last reference, or (when an operation releases
many bodies at once) by the writer's reaper in a later transaction; the start-up sweep deletes
rows left unreferenced by a crash in between.

Reads look at the pending map first, then at the table through a read-only connection: an entry
leaves the map only after the commit that put it in the table, so one of the two has it.
"""

from __future__ import annotations

import dataclasses
import io
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from mailpost.store.blobs import (
    SPILL_THRESHOLD,
    FileBlobStore,
    FileBlobWriter,
    blob_id_of,
    is_file_blob_id,
    is_inline_blob_id,
    new_inline_blob_id,
    read_existing,
)
from mailpost.store.errors import NotFound, StoreUnavailable
from mailpost.store.lineform import WireFormCheck
from mailpost.store.sqlite.reader import ReadPool
from mailpost.store.types import BlobRef

# A finished body nobody referenced for this long was abandoned by its session.
# Stays well below SQLite's bound on host parameters in one statement (999 in old builds).
_IDS_PER_SELECT = 500
PENDING_TTL = 300.0
# At most this many bytes of finished, unreferenced inline bodies are held in memory.
PENDING_BUDGET = 64 * 1024 * 1024


class PendingBodies:
    """Finished inline bodies that no transaction has stored yet.

    Only the event loop thread changes the map (:meth:`add`, :meth:`discard`); the writer
    thread and the threads behind ``open`` only look entries up, and a dict lookup is atomic.
    So there is no lock: a lock shared with the writer thread would make the event loop wait
    whenever the writer holds it and has lost the interpreter lock meanwhile.
    """

    def __init__(self, ttl: float | None = None, budget: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = PENDING_TTL if ttl is None else ttl
        self._budget = PENDING_BUDGET if budget is None else budget
        self._clock = clock
        # id -> (bytes, time added); insertion order is age order.
        self._entries: dict[str, tuple[bytes, float]] = {}
        self._bytes = 0

    def add(self, data: bytes) -> str | None:
        """Park ``data`` under a new inline id; None when the memory budget is used up."""
        now = self._clock()
        self._evict_older_than(now - self._ttl)
        if self._bytes + len(data) > self._budget:
            return None
        blob_id = new_inline_blob_id()
        self._entries[blob_id] = (data, now)
        self._bytes += len(data)
        return blob_id

    def get(self, blob_id: str) -> bytes | None:
        """Any thread."""
        entry = self._entries.get(blob_id)
        return None if entry is None else entry[0]

    def discard(self, blob_ids: Iterable[str]) -> None:
        for blob_id in blob_ids:
            entry = self._entries.pop(blob_id, None)
            if entry is not None:
                self._bytes -= len(entry[0])

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._bytes

    def _evict_older_than(self, cutoff: float) -> None:
        while self._entries:
            oldest = next(iter(self._entries))
            data, added = self._entries[oldest]
            if added >= cutoff:
                return
            del self._entries[oldest]
            self._bytes -= len(data)


class BodyStore:
    """The :class:`~mailpost.store.interface.BlobStore` of the SQLite store (both kinds)."""

    def __init__(self, files: FileBlobStore, reads: ReadPool,
                 pending: PendingBodies | None = None) -> None:
        self._files = files
        self._reads = reads
        self._pending = pending if pending is not None else PendingBodies()

    @property
    def files(self) -> FileBlobStore:
        return self._files

    @property
    def pending(self) -> PendingBodies:
        return self._pending

    # -- the BlobStore protocol ------------------------------------------------------------

    def writer(self) -> BodyWriter:
        return BodyWriter(self)

    async def read(self, ref: BlobRef | str, start: int = 0, end: int | None = None) -> bytes:
        blob_id = blob_id_of(ref)
        if not is_inline_blob_id(blob_id):
            return await self._files.read(blob_id, start, end)
        data = self._pending.get(blob_id)
        if data is not None:
            return _slice(data, start, end)
        return await self._reads.run(lambda conn: read_inline(conn, blob_id, start, end),
                                     single_statement=True)

    async def read_many(self, refs: Sequence[BlobRef | str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        inline: list[str] = []
        files: dict[str, Path] = {}
        for ref in refs:
            blob_id = ref.id if isinstance(ref, BlobRef) else ref
            if is_file_blob_id(blob_id):
                files[blob_id] = self._files.path_of(blob_id)
            elif is_inline_blob_id(blob_id):
                data = self._pending.get(blob_id)
                if data is None:
                    inline.append(blob_id)
                else:
                    found[blob_id] = data
        if inline or files:
            # One hop to a reader thread for all of them: the rows in one SELECT, the files
            # in the same thread. Bodies never change once stored, so no transaction is
            # needed to read several of them consistently.
            found.update(await self._reads.run(
                lambda conn: read_inline_many(conn, inline) | read_existing(files),
                single_statement=True))
        return found

    def open(self, ref: BlobRef | str) -> BinaryIO:
        blob_id = blob_id_of(ref)
        if not is_inline_blob_id(blob_id):
            return self._files.open(blob_id)
        data = self._pending.get(blob_id)
        if data is None:
            data = self._reads.call(lambda conn: read_inline(conn, blob_id, 0, None))
        return io.BytesIO(data)

    def free_space(self) -> int:
        return self._files.free_space()

    # -- used by the writer thread -----------------------------------------------------------

    def store_inline(self, conn: sqlite3.Connection, blob: BlobRef) -> None:
        """Inside a write transaction: make sure the inline body ``blob`` has its row.

        The first reference inserts the pending bytes; a later one (the same body appended
        again) finds the row. The pending entry stays until the commit has succeeded
        (:meth:`committed`).
        """
        data = self._pending.get(blob.id)
        if data is not None:
            if len(data) != blob.size:
                raise NotFound(f"no stored body {blob.id!r} of {blob.size} bytes")
            conn.execute("INSERT OR IGNORE INTO inline_bodies (id, data) VALUES (?, ?)",
                         (blob.id, data))
            return
        row = conn.execute("SELECT length(data) FROM inline_bodies WHERE id = ?",
                           (blob.id,)).fetchone()
        if row is None or row[0] != blob.size:
            raise NotFound(f"no stored body {blob.id!r} of {blob.size} bytes")

    def committed(self, blob_ids: Iterable[str]) -> None:
        """On the event loop, after the commit that stored these inline bodies in the table:
        forget their pending copies."""
        self._pending.discard(blob_ids)

    def drop_pending(self, blob_id: str) -> None:
        """The body will not be delivered (abort, release); a stored row is not affected."""
        self._pending.discard([blob_id])


def read_inline(conn: sqlite3.Connection, blob_id: str, start: int, end: int | None) -> bytes:
    """``[start, end)`` of a stored inline body; ``substr`` counts bytes of a BLOB from 1."""
    start = max(0, start)
    if start == 0 and end is None:
        row = conn.execute("SELECT data FROM inline_bodies WHERE id = ?", (blob_id,)).fetchone()
    elif end is None:
        row = conn.execute("SELECT substr(data, ?) FROM inline_bodies WHERE id = ?",
                           (start + 1, blob_id)).fetchone()
    else:
        row = conn.execute("SELECT substr(data, ?, ?) FROM inline_bodies WHERE id = ?",
                           (start + 1, max(0, end - start), blob_id)).fetchone()
    if row is None:
        raise NotFound(f"no such body: {blob_id!r}")
    return bytes(row[0] or b"")


def read_inline_many(conn: sqlite3.Connection, blob_ids: Sequence[str]) -> dict[str, bytes]:
    """The stored inline bodies among ``blob_ids`` (one SELECT per batch of ids)."""
    found: dict[str, bytes] = {}
    for first in range(0, len(blob_ids), _IDS_PER_SELECT):
        batch = blob_ids[first:first + _IDS_PER_SELECT]
        marks = ",".join("?" * len(batch))
        rows = conn.execute(f"SELECT id, data FROM inline_bodies WHERE id IN ({marks})", batch)
        found.update((row[0], bytes(row[1] or b"")) for row in rows)
    return found


def _slice(data: bytes, start: int, end: int | None) -> bytes:
    start = max(0, start)
    return data[start:] if end is None else data[start:max(start, end)]


class BodyWriter:
    """Buffers a body in memory; finishes it inline, or hands it to a file writer once large.

    Called on the event loop thread only. Once :attr:`_file` is set, every call is delegated
    to it (it keeps its own state machine); until then this object's state says it all.
    """

    def __init__(self, store: BodyStore) -> None:
        self._store = store
        self._chunks: list[bytes] = []
        self._size = 0
        self._file: FileBlobWriter | None = None
        self._state = "open"  # open -> done | aborted (while no file writer exists)
        self._inline_id: str | None = None
        self._form = WireFormCheck()  # every octet passes here, whichever kind it becomes

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        if self._file is not None:
            self._file.write(data)
            self._size += len(data)
            self._form.feed(data)
            return
        if self._state != "open":
            raise StoreUnavailable(f"body writer is {self._state}")
        if not data:
            return
        self._chunks.append(bytes(data))
        self._size += len(data)
        self._form.feed(data)
        if self._size > SPILL_THRESHOLD:
            self._to_file()

    async def finish(self) -> BlobRef:
        if self._file is None:
            if self._state != "open":
                raise StoreUnavailable(f"body writer is {self._state}")
            data = self._take_buffer()
            blob_id = self._store.pending.add(data)
            if blob_id is not None:
                self._state, self._inline_id = "done", blob_id
                return BlobRef(blob_id, len(data), self._form.ready)
            self._chunks.append(data)  # over the memory budget: store it as a file
            self._to_file()
        assert self._file is not None
        return dataclasses.replace(await self._file.finish(), wire_ready=self._form.ready)

    def abort(self) -> None:
        if self._file is not None:
            self._file.abort()
        elif self._state == "open":
            self._state = "aborted"
            self._chunks.clear()
        elif self._inline_id is not None:
            # Finished but abandoned: drop the body unless a transaction already stored it.
            self._store.drop_pending(self._inline_id)
            self._inline_id = None

    def _take_buffer(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def _to_file(self) -> None:
        """Continue as a file body: the file writer gets everything buffered so far."""
        file_writer = self._store.files.writer()
        try:
            file_writer.write(self._take_buffer())
        except BaseException:
            self._state = "aborted"
            file_writer.abort()
            raise
        self._file = file_writer
