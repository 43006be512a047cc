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

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction on a worker thread."""
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self._call, fn)
        except RuntimeError as exc:  # the executor is shut down
            raise StoreUnavailable("the store is closed") from exc
        return await future

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
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

    def close(self) -> None:
        """Blocking: wait for running reads, then close every connection."""
        self._executor.shutdown(wait=True)
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
