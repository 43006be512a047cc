"""Reads: a few read-only connections, one per worker thread of a small pool.

Theory of operation
===================

In WAL mode readers never block the writer and the writer never blocks readers, so reads do not
go through the writer thread. Each worker thread of a dedicated :class:`ThreadPoolExecutor` opens
its own read-only connection on first use (a thread-local, so a connection is never shared
between threads) and runs each read inside ``BEGIN ... COMMIT``: the queries of one read (a
mailbox's counters and its change list, say) see one consistent snapshot.

A read issued after a write's future resolved sees that write: the commit happened before the
future was resolved, and a new read transaction starts from the latest commit.

Blocking callers that already run on some other worker thread (a POP3 session streaming a body
through :meth:`BlobStore.open <mailpost.store.interface.BlobStore.open>`) use :meth:`ReadPool.call`
instead: it borrows an idle connection from a small free list for the duration of the call, so
such threads need no connection of their own.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from mailpost.store.errors import StoreUnavailable
from mailpost.store.sqlite.schema import open_reader_connection

T = TypeVar("T")

READ_THREADS = 4


class ReadPool:
    def __init__(self, path: Path, threads: int = READ_THREADS) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="store-read")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        # Idle connections for :meth:`call` (a borrowed one is closed by its borrower if the
        # pool closed meanwhile); guarded by ``_lock``.
        self._spare: list[sqlite3.Connection] = []
        self._closed = False

    async def run(self, fn: Callable[[sqlite3.Connection], T], *,
                  single_statement: bool = False) -> T:
        """Run ``fn`` in one read transaction on a worker thread. ``single_statement``: ``fn``
        runs one SELECT, which is a consistent snapshot by itself, so the BEGIN/COMMIT round
        trips are skipped (they cost as much as a small body read)."""
        loop = asyncio.get_running_loop()
        call = self._call_single if single_statement else self._call
        try:
            future = loop.run_in_executor(self._executor, call, fn)
        except RuntimeError as exc:  # the executor is shut down
            raise StoreUnavailable("the store is closed") from exc
        return await future

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Blocking: run ``fn`` in one read transaction on the calling (worker) thread."""
        conn = self._borrow()
        try:
            return _in_transaction(conn, fn)
        finally:
            self._give_back(conn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._connection()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"database read failed: {exc}") from exc
        return _in_transaction(conn, fn)

    def _call_single(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._connection())
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"database read failed: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = open_reader_connection(self._path)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _borrow(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StoreUnavailable("the store is closed")
            if self._spare:
                return self._spare.pop()
        try:
            return open_reader_connection(self._path)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"database read failed: {exc}") from exc

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            # A connection left inside a transaction (its COMMIT failed) is not reused.
            if not self._closed and not conn.in_transaction:
                self._spare.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Blocking: wait for running reads, then close every idle connection."""
        self._executor.shutdown(wait=True)
        with self._lock:
            self._closed = True
            connections = self._connections + self._spare
            self._connections, self._spare = [], []
        for conn in connections:
            conn.close()


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """``fn`` inside one read transaction (one consistent snapshot)."""
    try:
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"database read failed: {exc}") from exc
