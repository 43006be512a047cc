"""Message bodies on disk: one immutable file per body, durable before any row names it.

Theory of operation
===================

A body is written exactly once and never modified; copies of a message share it. The layout
under the data directory is::

    tmp/<id>                 a body being received (never referenced by the database)
    messages/<2 hex>/<id>    a finished, durable body

``<id>`` is 32 random hex digits (from :func:`os.urandom`), never derived from anything a
client sent, so no client string ever becomes part of a path and nobody can guess or collide
with another body's name. ``<2 hex>`` is the first two digits, which spreads bodies over 256
directories created once at start-up (so a new body never creates a directory that would itself
need an fsync of its parent).

Small bodies may instead live inside the database (:mod:`mailpost.store.sqlite.bodies`). Their
ids are the same random digits behind the prefix :data:`INLINE_PREFIX`, a character no file id
has, so every reader knows from the id alone where a body lives, and an inline id can never name
a file here (:meth:`FileBlobStore.path_of` refuses it).

Writing a body (:class:`FileBlobWriter`) follows the spool protocol of the reference MTAs
(RFC 5321 §6.1: after "250 OK" the message must not be lost):

1. :meth:`~FileBlobWriter.write` keeps up to :data:`SPILL_THRESHOLD` bytes in memory. Beyond
   that, the buffered bytes are handed to a worker thread that appends them to ``tmp/<id>``.
   The event loop thread therefore never makes a blocking system call, not even ``open``: a
   ``write`` on a loaded disk can stall for a long time under dirty-page throttling, and one
   slow client must not stall every other session. At most one spill per body is in flight, so
   chunks reach the file in order; bytes that arrive meanwhile stay buffered (the SMTP/IMAP size
   limit bounds them).
2. :meth:`~FileBlobWriter.finish` (in a worker thread) writes the rest, ``fsync``s the file,
   renames it to ``messages/<2 hex>/<id>`` and ``fsync``s that directory. Only then does it
   return a :class:`BlobRef` that rows may reference.
3. Any ``OSError`` (ENOSPC, EIO, EFBIG ...) removes the partial file and raises
   :class:`StoreUnavailable`. A failed ``fsync`` is never retried: Linux reports a writeback
   error once and then forgets it, so a retry could "succeed" over lost data.

Deleting bodies is decided by the database writer (a body goes once no message row and no queue
entry references it); this module only performs the unlink. Start-up removes ``tmp/*`` leftovers
here (:meth:`FileBlobStore.prepare`, only in the process that owns the directory); bodies that were made durable but whose transaction never
committed (a crash between the two) are found by :meth:`FileBlobStore.stored_ids` and handed to
the writer, which deletes those no row references. Bodies created by this process while that
sweep runs are protected by a *guard set*: their ids are recorded before their file exists, and
the sweep skips them, so a body waiting for its ``deliver`` call is never mistaken for an orphan.

I/O runs on a dedicated thread pool rather than the loop's default executor: ``fsync`` can block
for a long time, and a burst of deliveries must not starve DNS lookups, password hashing and
other users of the default pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from mailpost.store.errors import NotFound, StoreUnavailable
from mailpost.store.types import BlobRef

# Bodies smaller than this never touch tmp/ before finish(); most mail is smaller.
SPILL_THRESHOLD = 64 * 1024

LOCK_NAME = "store.lock"

# First character of the id of a body stored inside the database; never a hex digit.
INLINE_PREFIX = "i"

# How long a free-space figure is reused: statvfs on every MAIL FROM is a system call on the
# event loop thread, and free space does not change meaningfully within a second.
FREE_SPACE_TTL = 1.0

_FILE_ID = re.compile(r"[0-9a-f]{32}")
_INLINE_ID = re.compile(INLINE_PREFIX + r"[0-9a-f]{32}")
_FANOUT = tuple(f"{i:02x}" for i in range(256))


class _RandomBytes:
    """Bytes from :func:`os.urandom`, fetched a block at a time.

    Every ``os.urandom`` call releases the interpreter lock around the system call, and the
    event loop thread then queues behind whichever store thread took it meanwhile; one call per
    :data:`_BLOCK` bytes instead of one per id keeps that off the per-message path. The bytes
    are the same kernel randomness, each handed out once; a forked child starts afresh, so it
    never repeats its parent's ids.
    """

    _BLOCK = 4096

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._offset = 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._offset + count > len(self._buffer):
                self._buffer, self._offset = os.urandom(max(self._BLOCK, count)), 0
            chunk = self._buffer[self._offset:self._offset + count]
            self._offset += count
            return chunk


_RANDOM = _RandomBytes()
os.register_at_fork(after_in_child=_RANDOM._reset)


def new_blob_id() -> str:
    """A fresh random file body id (128 bits, so collisions are not a practical concern)."""
    return _RANDOM.take(16).hex()


def new_inline_blob_id() -> str:
    """A fresh random id for a body stored in the database."""
    return INLINE_PREFIX + _RANDOM.take(16).hex()


def is_file_blob_id(text: str) -> bool:
    return _FILE_ID.fullmatch(text) is not None


def is_inline_blob_id(text: str) -> bool:
    return _INLINE_ID.fullmatch(text) is not None


def is_blob_id(text: str) -> bool:
    """True for the id of either kind of body."""
    return is_file_blob_id(text) or is_inline_blob_id(text)


def blob_id_of(ref: BlobRef | str) -> str:
    """The id of ``ref``, refusing anything that is not one of our ids (no path tricks)."""
    blob_id = ref.id if isinstance(ref, BlobRef) else ref
    if not is_blob_id(blob_id):
        raise NotFound(f"no such body: {blob_id!r}")
    return blob_id


def _file_blob_id_of(ref: BlobRef | str) -> str:
    blob_id = ref.id if isinstance(ref, BlobRef) else ref
    if not is_file_blob_id(blob_id):
        raise NotFound(f"no such body file: {blob_id!r}")
    return blob_id


def _fsync_directory(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (the entry lives in the directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class FileBlobStore:
    """The :class:`~mailpost.store.interface.BlobStore` over a directory tree."""

    def __init__(self, root: Path, executor: ThreadPoolExecutor) -> None:
        self._root = root
        self._tmp = root / "tmp"
        self._messages = root / "messages"
        self._executor = executor
        # Ids created while the orphan sweep runs; None when no sweep runs. Only added to from
        # the event loop thread and read by the sweep thread (set operations are atomic).
        self._guard: set[str] | None = None
        self._lock_fd: int | None = None
        # (bytes free, monotonic time it was measured); replaced whole, so no lock is needed.
        self._free_space: tuple[int, float] | None = None

    # -- start-up (blocking; called from a worker thread before the store opens) -------------

    def prepare(self) -> bool:
        """Create the layout; return True if this process owns the data directory.

        Several processes may open one data directory (the server, and the command line tool
        adding a user meanwhile). Only the owner, the first to take the lock file, may clean
        up: another process's ``tmp/`` files and not-yet-delivered bodies look exactly like
        leftovers. The owner removes ``tmp/`` leftovers now (nothing references them) and runs
        the orphan sweep; the lock is held until :meth:`close`.
        """
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._tmp.mkdir(mode=0o700, exist_ok=True)
        self._messages.mkdir(mode=0o700, exist_ok=True)
        for name in _FANOUT:
            (self._messages / name).mkdir(mode=0o700, exist_ok=True)
        _fsync_directory(self._messages)
        _fsync_directory(self._root)
        owner = self._take_lock()
        if owner:
            for leftover in os.listdir(self._tmp):
                (self._tmp / leftover).unlink(missing_ok=True)
        return owner

    def _take_lock(self) -> bool:
        fd = os.open(self._root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def close(self) -> None:
        """Release the ownership lock (if held)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the BlobStore protocol ------------------------------------------------------------

    def writer(self) -> FileBlobWriter:
        blob_id = new_blob_id()
        if self._guard is not None:
            self._guard.add(blob_id)
        return FileBlobWriter(self, blob_id)

    async def read(self, ref: BlobRef | str, start: int = 0, end: int | None = None) -> bytes:
        path = self.path_of(ref)
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, _read_range, path, start, end)
        except RuntimeError as exc:  # the pool is shut down
            raise StoreUnavailable("the store is closed") from exc
        return await future

    def open(self, ref: BlobRef | str) -> BinaryIO:
        try:
            return open(self.path_of(ref), "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"no such body: {ref!r}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"cannot open body: {exc}") from exc

    def free_space(self) -> int:
        now = time.monotonic()
        cached = self._free_space
        if cached is not None and 0 <= now - cached[1] < FREE_SPACE_TTL:
            return cached[0]
        stats = os.statvfs(self._messages)
        free = stats.f_bavail * stats.f_frsize
        self._free_space = (free, now)
        return free

    # -- used by the database writer and the sweep ----------------------------------------

    def path_of(self, ref: BlobRef | str) -> Path:
        blob_id = _file_blob_id_of(ref)
        return self._messages / blob_id[:2] / blob_id

    def tmp_path_of(self, blob_id: str) -> Path:
        return self._tmp / blob_id

    def stored_size(self, blob_id: str) -> int | None:
        """Size of a finished body, or None when it does not exist."""
        try:
            return self.path_of(blob_id).stat().st_size
        except (FileNotFoundError, NotFound):
            return None

    def unlink(self, blob_id: str) -> None:
        """Remove a body nobody references; a missing file is fine (already gone)."""
        try:
            self.path_of(blob_id).unlink()
        except FileNotFoundError:
            pass

    def stored_ids(self) -> Iterator[list[str]]:
        """Yield, one fan-out directory at a time, the ids of bodies on disk."""
        for name in _FANOUT:
            try:
                entries = os.listdir(self._messages / name)
            except FileNotFoundError:
                continue
            yield [entry for entry in entries if is_file_blob_id(entry)]

    def begin_guard(self) -> None:
        self._guard = set()

    def guarded(self, blob_id: str) -> bool:
        guard = self._guard
        return guard is not None and blob_id in guard

    def end_guard(self) -> None:
        self._guard = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        return self._executor


def read_existing(paths: dict[str, Path]) -> dict[str, bytes]:
    """Blocking: the whole files among ``paths`` (blob id -> path) that exist."""
    found: dict[str, bytes] = {}
    for blob_id, path in paths.items():
        try:
            found[blob_id] = _read_range(path, 0, None)
        except NotFound:
            continue
    return found


def _read_range(path: Path, start: int, end: int | None) -> bytes:
    try:
        with open(path, "rb") as body:
            body.seek(start)
            return body.read() if end is None else body.read(max(0, end - start))
    except FileNotFoundError as exc:
        raise NotFound(f"no such body: {path.name}") from exc
    except OSError as exc:
        raise StoreUnavailable(f"cannot read body: {exc}") from exc


class _State(enum.Enum):
    OPEN = "open"
    FINISHING = "finishing"
    DONE = "done"
    ABORTED = "aborted"


class FileBlobWriter:
    """Receives one body; see the module docstring for the durability protocol.

    ``write``/``finish``/``abort`` are called on the event loop thread. The file descriptor and
    the ``_renamed`` flag are only touched by worker-thread jobs, which never overlap: a new job
    (spill, persist or clean-up) starts only once the previous one, ``_job``, is done.
    """

    def __init__(self, store: FileBlobStore, blob_id: str) -> None:
        self._store = store
        self._id = blob_id
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._size = 0
        self._state = _State.OPEN
        self._job: concurrent.futures.Future[None] | None = None
        self._fd: int | None = None
        self._renamed = False

    @property
    def size(self) -> int:
        return self._size

    @property
    def blob_id(self) -> str:
        return self._id

    def write(self, data: bytes) -> None:
        if self._state is not _State.OPEN:
            raise StoreUnavailable(f"body writer is {self._state.value}")
        self._raise_job_error()
        if not data:
            return
        self._pending.append(bytes(data))
        self._pending_size += len(data)
        self._size += len(data)
        if self._pending_size >= SPILL_THRESHOLD and not self._job_running():
            self._job = self._submit(self._append, self._take_pending())

    async def finish(self) -> BlobRef:
        if self._state is not _State.OPEN:
            raise StoreUnavailable(f"body writer is {self._state.value}")
        self._state = _State.FINISHING
        try:
            if self._job is not None:
                await asyncio.wrap_future(self._job)
            self._job = self._submit(self._persist, self._take_pending())
            await asyncio.wrap_future(self._job)
        except OSError as exc:
            # The failing job removed the partial file itself.
            self._state = _State.ABORTED
            raise StoreUnavailable(f"cannot store message body: {exc}") from exc
        except BaseException:
            # Cancelled (the client went away): the job may still run, so clean up once it
            # is over. Whatever a crash leaves here is an orphan for the start-up sweep.
            self._state = _State.ABORTED
            self._discard_after_job()
            raise
        self._state = _State.DONE
        return BlobRef(self._id, self._size)

    def abort(self) -> None:
        if self._state is not _State.OPEN:
            # DONE: the body is durable and may be referenced, so it is never removed here.
            # FINISHING/ABORTED: finish() cleans up after itself.
            return
        self._state = _State.ABORTED
        self._pending.clear()
        self._pending_size = 0
        self._discard_after_job()

    # -- internals --------------------------------------------------------------------------

    def _submit(self, job: Callable[[bytes], None], data: bytes) -> concurrent.futures.Future[None]:
        try:
            return self._store.executor.submit(job, data)
        except RuntimeError as exc:  # the pool is shut down: the store is closing
            self._state = _State.ABORTED
            self._discard_files()
            raise StoreUnavailable("the store is closed") from exc

    def _job_running(self) -> bool:
        return self._job is not None and not self._job.done()

    def _raise_job_error(self) -> None:
        job = self._job
        if job is None or not job.done() or job.cancelled():
            return
        exc = job.exception()
        if exc is not None:
            self.abort()
            raise StoreUnavailable(f"cannot store message body: {exc}") from exc

    def _take_pending(self) -> bytes:
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        return data

    def _append(self, data: bytes) -> None:
        """Worker thread: append to ``tmp/<id>``, creating it on first use."""
        try:
            if self._fd is None:
                self._fd = os.open(self._store.tmp_path_of(self._id),
                                   os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            _write_all(self._fd, data)
        except OSError:
            self._discard_files()
            raise

    def _persist(self, rest: bytes) -> None:
        """Worker thread: the write / fsync / rename / fsync-directory sequence."""
        try:
            self._append(rest)
            assert self._fd is not None
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            final = self._store.path_of(self._id)
            os.rename(self._store.tmp_path_of(self._id), final)
            self._renamed = True
            _fsync_directory(final.parent)
        except OSError:
            self._discard_files()
            raise

    def _discard_after_job(self) -> None:
        job = self._job
        if job is None:
            return  # nothing ever reached the disk
        if not job.done():
            job.add_done_callback(lambda _: self._discard_files())
            return
        try:
            self._store.executor.submit(self._discard_files)
        except RuntimeError:  # pool shut down: do the cheap calls right here
            self._discard_files()

    def _discard_files(self) -> None:
        """Close and remove whatever exists of this body; never raises."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        paths = [self._store.tmp_path_of(self._id)]
        if self._renamed:
            paths.append(self._store.path_of(self._id))
        for path in paths:
            try:
                path.unlink()
            except OSError:
                pass  # already gone, or the disk is failing: the start-up sweep retries
