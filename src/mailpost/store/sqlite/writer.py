"""The single writer thread: group commit, per-operation savepoints, commit-then-broadcast.

Theory of operation
===================

SQLite allows one writer at a time, and with ``synchronous=FULL`` each commit costs an fsync of
the WAL. Serialising writers on a lock would cap throughput at one operation per fsync. Instead,
every write operation is a plain function ``op(ctx) -> result`` queued to one thread, which:

1. takes *every* operation waiting in its queue (up to :data:`MAX_BATCH`);
2. opens one transaction and runs each operation inside its own ``SAVEPOINT``: an operation
   that raises is rolled back to its savepoint and gets its exception, the others are
   unaffected;
3. commits once (one fsync for the whole batch);
4. hands the batch back to the event loop with one ``call_soon_threadsafe``. On the loop, for
   each operation in order, its :class:`~mailpost.bus.Change` events are published and then its
   caller's future is resolved. Publishing happens only after the commit and only on the loop
   thread (the bus is not thread-safe), in commit order, so a session woken by the bus always
   finds the change in the store (the interface's commit-then-broadcast rule).

While one batch commits, new operations pile up in the queue and form the next batch, so the
batch size adapts to the load: one caller sees one fsync of latency, twenty concurrent callers
share each fsync.

If the transaction itself fails (disk full, I/O error on commit), every operation of the batch
gets :class:`StoreUnavailable` and nothing is published; the connection is closed and reopened
before the next batch, because after a failed fsync the state of the WAL is not to be trusted.

Storing bodies
--------------
:meth:`WriteContext.reference` is called before a row points at a body. A file body must already
be durable; an inline body (:mod:`.bodies`) is inserted into ``inline_bodies`` right there, in
the operation's savepoint, so it is committed with the row that references it. The ids of inline
bodies stored that way are collected like bus events, and their pending in-memory copies are
dropped on the event loop after the commit (the pending map is only changed on the loop; an
operation submitted from another thread leaves them to expire): a rolled-back operation or a
failed commit leaves the body pending, ready for a retry.

Deleting bodies
---------------
An operation that removes a reference to a body (expunge, mailbox or account deletion, queue
entry deletion) *releases* the body's id. An inline body that nothing references any more is
deleted by the operation itself, in its savepoint (:meth:`WriteContext.delete_released_inline`),
so it goes atomically with its last reference: when an expunge returns, the body is gone. Only
the first :data:`INLINE_DELETES_PER_OP` are handled that way, so that deleting a large mailbox
does not turn into one huge transaction that stalls deliveries.

Everything else is left to the *reaper*: after the commit, the writer checks which released
bodies nothing references any more and queues them for deletion, in small chunks. Files are
unlinked between batches; inline rows are deleted inside the next batch's transaction (in a
savepoint of their own, after the operations, so no extra commit and no extra fsync), or in a
transaction of their own when no operation is waiting. Because the check and the deletion both
run on this thread, and an operation that references a body first takes it off the deletion
queue (:meth:`WriteContext.reference`), a body is never deleted while a committed row points at
it; the inline ``DELETE`` checks that again anyway. The files removed are not fsynced and a
failed deletion is not retried: a crash or an error at worst leaves an unreferenced body, which
the start-up sweep removes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from mailpost.bus import Change
from mailpost.store.blobs import is_inline_blob_id
from mailpost.store.errors import NotFound, StoreError, StoreUnavailable
from mailpost.store.sqlite.bodies import BodyStore
from mailpost.store.sqlite.schema import migrate, open_writer_connection
from mailpost.store.types import BlobRef

T = TypeVar("T")

log = logging.getLogger(__name__)

# Upper bound on operations per transaction: keeps one batch's latency and memory bounded.
MAX_BATCH = 512
# Bodies unlinked between two batches (inline rows deleted per batch) while writes are waiting.
REAP_CHUNK = 64
# Inline bodies an operation deletes itself; beyond that, the reaper takes over.
INLINE_DELETES_PER_OP = 64

# Deletes an inline body only if no row references it (``id`` given three times).
DELETE_UNREFERENCED_INLINE = (
    "DELETE FROM inline_bodies WHERE id = ?"
    " AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = ?)"
    " AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = ?)")


class WriteContext:
    """What one write operation sees: the connection, plus collectors for its side effects.

    The collectors are discarded if the operation fails, so a rolled-back operation neither
    publishes events nor releases bodies.
    """

    def __init__(self, conn: sqlite3.Connection, bodies: BodyStore,
                 undoom: Callable[[str], None]) -> None:
        self.conn = conn
        self.bodies = bodies
        self._undoom = undoom
        self._changes: dict[tuple[object, ...], Change] = {}
        self.released: set[str] = set()
        # Inline bodies this operation stored in the table (pending copies go after commit).
        self.inlined: set[str] = set()

    def publish(self, change: Change) -> None:
        """Queue a bus event for after the commit; one per (mailbox, kind), the latest wins."""
        key: tuple[object, ...] = (change.account_id, change.mailbox_id, change.kind)
        if change.mailbox_id is None:
            key += (change.mailbox_name,)
        self._changes.pop(key, None)
        self._changes[key] = change

    @property
    def changes(self) -> list[Change]:
        return list(self._changes.values())

    def release(self, blob_ids: Iterable[str]) -> None:
        """These bodies lost a reference; they are deleted if none remains."""
        self.released.update(blob_ids)

    def delete_released_inline(self, limit: int) -> None:
        """At the end of the operation: delete up to ``limit`` released inline bodies that
        nothing references any more, in its own savepoint; the rest are left to the reaper."""
        inline = [blob_id for blob_id in self.released if is_inline_blob_id(blob_id)]
        for blob_id in inline[:limit]:
            if self.conn.execute(DELETE_UNREFERENCED_INLINE, (blob_id,) * 3).rowcount:
                self.released.discard(blob_id)

    def reference(self, blob: BlobRef) -> None:
        """Make sure ``blob`` is a stored body before a row points at it.

        A file body must exist with that size. An inline body is written into the table here,
        in this operation's savepoint, so it becomes durable with the row that references it.
        """
        if is_inline_blob_id(blob.id):
            self.bodies.store_inline(self.conn, blob)
            self.inlined.add(blob.id)
        else:
            size = self.bodies.files.stored_size(blob.id)
            if size is None or size != blob.size:
                raise NotFound(f"no stored body {blob.id!r} of {blob.size} bytes")
        self._undoom(blob.id)


@dataclass
class _Op(Generic[T]):
    fn: Callable[[WriteContext], T]
    # An asyncio future (resolved on its loop) or a concurrent future (for other threads).
    future: asyncio.Future[T] | concurrent.futures.Future[T]
    loop: asyncio.AbstractEventLoop | None


@dataclass
class _Result:
    op: _Op[Any]
    value: Any = None
    error: BaseException | None = None
    changes: list[Change] = field(default_factory=list)
    released: set[str] = field(default_factory=set)
    inlined: set[str] = field(default_factory=set)


_STOP = object()


class Writer:
    """Owns the read-write connection and the thread that uses it."""

    def __init__(self, path: Path, bodies: BodyStore,
                 publish: Callable[[Change], None]) -> None:
        self._path = path
        self._bodies = bodies
        self._publish = publish
        self._queue: queue.SimpleQueue[_Op[Any] | object] = queue.SimpleQueue()
        self._conn: sqlite3.Connection | None = None
        # Bodies waiting to be deleted (ordered sets): files to unlink, inline rows to delete.
        # Only this thread touches them.
        self._doomed_files: dict[str, None] = {}
        self._doomed_inline: dict[str, None] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="store-writer", daemon=True)

    def open(self) -> None:
        """Blocking: open the connection, migrate the schema, start the thread."""
        self._conn = open_writer_connection(self._path)
        try:
            migrate(self._conn)
        except BaseException:
            self._conn.close()
            raise
        self._thread.start()

    # -- submitting --------------------------------------------------------------------------

    async def run(self, fn: Callable[[WriteContext], T]) -> T:
        """Run ``fn`` in the next batch; return its result once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_Op(fn, future, loop))
        return await future

    def run_threadsafe(self, fn: Callable[[WriteContext], T]) -> concurrent.futures.Future[T]:
        """Like :meth:`run`, for callers on other threads (the start-up sweep)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put(_Op(fn, future, None))
        return future

    def _put(self, op: _Op[Any]) -> None:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        self._queue.put(op)

    async def close(self) -> None:
        """Finish what is queued, stop the thread, close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)

    # -- the thread --------------------------------------------------------------------------

    def _serve(self) -> None:
        stop = False
        while not stop:
            ops, stop = self._next_batch()
            if ops or self._doomed_inline:
                self._run_batch(ops)
            self._reap_files(REAP_CHUNK)
        while self._doomed_inline:
            self._run_batch([])
        self._reap_files(len(self._doomed_files))
        self._fail_leftovers()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _next_batch(self) -> tuple[list[_Op[Any]], bool]:
        # Block for work only when there is nothing left to delete.
        try:
            first = self._queue.get(block=not (self._doomed_files or self._doomed_inline))
        except queue.Empty:
            return [], False
        items = [first]
        while len(items) < MAX_BATCH:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        ops = [item for item in items if isinstance(item, _Op)]
        return ops, any(item is _STOP for item in items)

    def _run_batch(self, ops: list[_Op[Any]]) -> None:
        # Taken off the queue before anything can fail: a failed delete is not retried (the
        # start-up sweep catches it), so a broken disk cannot make this loop spin.
        reaped = self._take_doomed_inline(REAP_CHUNK)
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            results = [self._run_one(conn, op) for op in ops]
            self._delete_inline(conn, reaped)
            conn.execute("COMMIT")
        except Exception as exc:  # sqlite3.Error, OSError, or a bug: fail the batch, keep serving
            log.error("store transaction failed: %s", exc, exc_info=not isinstance(
                exc, (sqlite3.Error, OSError)))
            self._reset_connection()
            results = [_Result(op, error=StoreUnavailable(f"database write failed: {exc}"))
                       for op in ops]
        else:
            self._doom_unreferenced(results)
        self._hand_back(results)

    def _run_one(self, conn: sqlite3.Connection, op: _Op[Any]) -> _Result:
        ctx = WriteContext(conn, self._bodies, self._undoom)
        conn.execute("SAVEPOINT op")
        try:
            value = op.fn(ctx)
            ctx.delete_released_inline(INLINE_DELETES_PER_OP)
        except StoreError as exc:
            self._rollback_savepoint(conn)
            return _Result(op, error=exc)
        except (sqlite3.Error, OSError) as exc:
            # If SQLite already rolled back the whole transaction (SQLITE_FULL, IOERR), the
            # savepoint is gone and this raises, failing the batch, as it must.
            self._rollback_savepoint(conn)
            return _Result(op, error=StoreUnavailable(f"database write failed: {exc}"))
        except Exception as exc:  # noqa: BLE001 -- a bug in one operation fails only its caller
            self._rollback_savepoint(conn)
            return _Result(op, error=exc)
        conn.execute("RELEASE op")
        return _Result(op, value=value, changes=ctx.changes, released=ctx.released,
                       inlined=ctx.inlined)

    @staticmethod
    def _rollback_savepoint(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_writer_connection(self._path)
        return self._conn

    def _reset_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # closing the connection discards the transaction anyway
        conn.close()

    # -- after the commit ----------------------------------------------------------------------

    def _hand_back(self, results: list[_Result]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Result]] = {}
        for result in results:
            if result.op.loop is None:
                _resolve_threadsafe(result)
            else:
                by_loop.setdefault(result.op.loop, []).append(result)
        for loop, group in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._complete, group)
            except RuntimeError:
                log.warning("event loop closed; %d store results dropped", len(group))

    def _complete(self, group: list[_Result]) -> None:
        """On the event loop: publish each committed operation's changes, then wake its caller."""
        for result in group:
            if result.error is None:
                self._bodies.committed(result.inlined)
                for change in result.changes:
                    try:
                        self._publish(change)
                    except Exception:
                        log.exception("change bus publish failed")
            future = result.op.future
            assert isinstance(future, asyncio.Future)
            if future.done():  # the caller was cancelled; the operation committed anyway
                continue
            if result.error is None:
                future.set_result(result.value)
            else:
                future.set_exception(result.error)

    def _doom_unreferenced(self, results: list[_Result]) -> None:
        released: set[str] = set()
        for result in results:
            released |= result.released
        if not released or self._conn is None:
            return
        try:
            for blob_id in released:
                if not is_referenced(self._conn, blob_id):
                    doomed = (self._doomed_inline if is_inline_blob_id(blob_id)
                              else self._doomed_files)
                    doomed[blob_id] = None
        except sqlite3.Error as exc:
            # Not fatal: the body stays stored until the next start-up sweep.
            log.warning("could not check body references: %s", exc)

    def _undoom(self, blob_id: str) -> None:
        self._doomed_files.pop(blob_id, None)
        self._doomed_inline.pop(blob_id, None)

    def _reap_files(self, limit: int) -> None:
        for _ in range(min(limit, len(self._doomed_files))):
            blob_id = next(iter(self._doomed_files))
            del self._doomed_files[blob_id]
            try:
                self._bodies.files.unlink(blob_id)
            except OSError as exc:
                log.warning("could not remove body %s: %s", blob_id, exc)

    def _take_doomed_inline(self, limit: int) -> list[str]:
        taken: list[str] = []
        while self._doomed_inline and len(taken) < limit:
            blob_id = next(iter(self._doomed_inline))
            del self._doomed_inline[blob_id]
            taken.append(blob_id)
        return taken

    @staticmethod
    def _delete_inline(conn: sqlite3.Connection, blob_ids: list[str]) -> None:
        """Delete unreferenced inline rows in a savepoint: a failure here fails no operation."""
        if not blob_ids:
            return
        conn.execute("SAVEPOINT reap")
        try:
            conn.executemany(DELETE_UNREFERENCED_INLINE, [(blob_id,) * 3 for blob_id in blob_ids])
        except sqlite3.Error as exc:
            log.warning("could not delete %d inline bodies: %s", len(blob_ids), exc)
            conn.execute("ROLLBACK TO reap")
        conn.execute("RELEASE reap")

    def _fail_leftovers(self) -> None:
        leftovers: list[_Result] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Op):
                leftovers.append(_Result(item, error=StoreUnavailable("the store is closed")))
        self._hand_back(leftovers)


def is_referenced(conn: sqlite3.Connection, blob_id: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE blob_id = ?)"
        " OR EXISTS (SELECT 1 FROM queue WHERE blob_id = ?)",
        (blob_id, blob_id)).fetchone()
    return bool(row[0])


def _resolve_threadsafe(result: _Result) -> None:
    future = result.op.future
    assert isinstance(future, concurrent.futures.Future)
    if result.error is None:
        future.set_result(result.value)
    else:
        future.set_exception(result.error)
