"""``SQLiteStore``: the embedded :class:`~mailpost.store.interface.MailStore`.

Theory of operation
===================

Three kinds of threads do the blocking work; the event loop thread only awaits them:

* one **writer** thread (:mod:`.writer`) runs every mutating operation, many per transaction
  (group commit), and publishes the resulting bus events on the loop after each commit;
* a small **read** pool (:mod:`.reader`), one read-only connection per thread;
* a **body I/O** pool (:mod:`mailpost.store.blobs`) that writes, fsyncs and reads body files.

Bodies (:attr:`SQLiteStore.blobs`, a :class:`~.bodies.BodyStore`) come in two kinds: small ones
are stored inside the database, in the transaction that first references them, and larger ones
as files (see :mod:`.bodies`).

Each public method is therefore a thin adapter: normalise nothing, decide nothing, just hand a
function from the table modules (:mod:`.directory`, :mod:`.mailboxes`, :mod:`.messages`,
:mod:`.delivery`, :mod:`.queue`) to the writer or to the read pool.

Start-up (:meth:`SQLiteStore.open`) creates the directory layout, opens and migrates the
database and, in the process that owns the data directory (see
:meth:`~mailpost.store.blobs.FileBlobStore.prepare`: the command line tool may open the store
while the server runs), removes ``tmp/`` leftovers and starts the **orphan sweep** in a
background thread so that the servers can start at once. The sweep lists the stored body files
and, through the writer (so that its "is this referenced?" check and the unlink cannot
interleave with a delivery), deletes every body that no message and no queue entry references:
bodies that were made durable but whose transaction never committed because the process died in
between. Files created after start-up are protected from it (see :mod:`mailpost.store.blobs`).
It then walks the ``inline_bodies`` table in key order, in short read transactions, and has
the writer delete the rows nothing references (the process died between a release and the
reaper's delete), checking again as it deletes. An inline row needs no guard: it is only ever
inserted together with a row that references it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from pathlib import Path

from mailpost.bus import ChangeBus
from mailpost.store.blobs import FileBlobStore, is_inline_blob_id
from mailpost.store.errors import StoreError
from mailpost.store.sqlite import (
    delivery,
    directory,
    mailboxes,
    messages,
    policies,
    queue,
    queue_run,
)
from mailpost.store.sqlite.bodies import BodyStore
from mailpost.store.sqlite.reader import ReadPool
from mailpost.store.sqlite.rows import now_utc
from mailpost.store.sqlite.writer import (
    DELETE_UNREFERENCED_INLINE,
    WriteContext,
    Writer,
    is_referenced,
)
from mailpost.store.types import (
    Account,
    Alias,
    BlobRef,
    DeliveryOutcome,
    DeliveryTarget,
    FlagMode,
    FlagUpdate,
    MailboxChanges,
    MailboxInfo,
    MessageMeta,
    NewMessage,
    OutboundEnvelope,
    QueueEntry,
    StoredPolicy,
)

log = logging.getLogger(__name__)

DATABASE_NAME = "mailpost.db"
# Body I/O is mostly waiting for fsync; more threads than cores lets concurrent deliveries
# overlap their waits.
BLOB_IO_THREADS = 16
# Inline bodies the start-up sweep examines per read transaction.
SWEEP_INLINE_CHUNK = 1000


class SQLiteStore:
    """SQLite metadata in WAL mode; small bodies in the database, larger ones in files."""

    def __init__(self, blobs: BodyStore, blob_executor: ThreadPoolExecutor, writer: Writer,
                 reads: ReadPool) -> None:
        self._blobs = blobs
        self._blob_executor = blob_executor
        self._writer = writer
        self._reads = reads
        self._closed = False
        self._sweep_stop = threading.Event()
        self._sweep_result: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._sweep_thread = threading.Thread(target=self._sweep, name="store-sweep",
                                              daemon=True)

    @classmethod
    async def open(cls, data_dir: Path, bus: ChangeBus) -> SQLiteStore:
        executor = ThreadPoolExecutor(BLOB_IO_THREADS, thread_name_prefix="store-blob")
        files = FileBlobStore(data_dir, executor)
        path = data_dir / DATABASE_NAME
        reads = ReadPool(path)
        bodies = BodyStore(files, reads)
        writer = Writer(path, bodies, bus.publish)
        try:
            owner = await asyncio.to_thread(files.prepare)
            await asyncio.to_thread(writer.open)
        except BaseException:
            files.close()
            reads.close()
            executor.shutdown(wait=False)
            raise
        store = cls(bodies, executor, writer, reads)
        if owner:
            store._start_sweep()
        else:  # another process owns the directory and sweeps it
            store._sweep_result.set_result(0)
        return store

    @property
    def blobs(self) -> BodyStore:
        return self._blobs

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._sweep_stop.set()
        if self._sweep_thread.is_alive():
            await asyncio.to_thread(self._sweep_thread.join)
        await self._writer.close()
        await asyncio.to_thread(self._reads.close)
        await asyncio.to_thread(self._blob_executor.shutdown, True)
        self._blobs.files.close()

    # -- orphan sweep --------------------------------------------------------------------------

    def _start_sweep(self) -> None:
        self._blobs.files.begin_guard()
        self._sweep_thread.start()

    async def sweep_finished(self) -> int:
        """Wait for the start-up orphan sweep; return how many bodies it removed."""
        return await asyncio.wrap_future(self._sweep_result)

    def _sweep(self) -> None:
        removed = 0
        try:
            removed += self._sweep_files()
            removed += self._sweep_inline()
        except (StoreError, OSError) as exc:  # the store closed underneath, or a disk error
            log.warning("orphan body sweep stopped: %s", exc)
        finally:
            self._blobs.files.end_guard()
            self._sweep_result.set_result(removed)

    def _sweep_files(self) -> int:
        files = self._blobs.files
        removed = 0
        for stored in files.stored_ids():
            if self._sweep_stop.is_set():
                break
            candidates = [blob_id for blob_id in stored if not files.guarded(blob_id)]
            if candidates:
                step = partial(_remove_unreferenced, blob_ids=candidates)
                removed += self._writer.run_threadsafe(step).result()
        return removed

    def _sweep_inline(self) -> int:
        """Find orphan candidates with reads (no writer time when there are none, the usual
        case); the writer deletes them only after checking again."""
        removed, after = 0, ""
        while not self._sweep_stop.is_set():
            scan = partial(_unreferenced_inline, after=after, limit=SWEEP_INLINE_CHUNK)
            last, candidates = self._reads.call(scan)
            if candidates:
                step = partial(_remove_unreferenced_inline, blob_ids=candidates)
                removed += self._writer.run_threadsafe(step).result()
            if last is None:
                break
            after = last
        return removed

    async def release_blob(self, blob: BlobRef) -> None:
        """Delete a finished body that will not be delivered after all (if nothing uses it):
        the pending copy of an inline body at once, a file once the writer has checked that
        no message or queue entry references it."""
        if is_inline_blob_id(blob.id):
            self._blobs.drop_pending(blob.id)
        await self._writer.run(lambda ctx: ctx.release([blob.id]))

    # -- directory -----------------------------------------------------------------------------

    async def add_domain(self, name: str) -> None:
        await self._writer.run(lambda ctx: directory.add_domain(ctx, name))

    async def remove_domain(self, name: str) -> None:
        await self._writer.run(lambda ctx: directory.remove_domain(ctx, name))

    async def list_domains(self) -> list[str]:
        return await self._reads.run(directory.list_domains)

    async def is_local_domain(self, name: str) -> bool:
        return await self._reads.run(lambda conn: directory.is_local_domain(conn, name))

    async def add_account(self, address: str, password_hash: str,
                          quota_bytes: int | None = None,
                          quota_messages: int | None = None,
                          apop_secret: bytes | None = None) -> Account:
        return await self._writer.run(lambda ctx: directory.add_account(
            ctx, address, password_hash, quota_bytes, quota_messages, apop_secret))

    async def set_password(self, address: str, password_hash: str,
                           apop_secret: bytes | None = None) -> None:
        await self._writer.run(
            lambda ctx: directory.set_password(ctx, address, password_hash, apop_secret))

    async def set_apop_secret(self, address: str, secret: bytes | None) -> None:
        await self._writer.run(lambda ctx: directory.set_apop_secret(ctx, address, secret))

    async def get_apop_secret(self, address: str) -> bytes | None:
        return await self._reads.run(lambda conn: directory.get_apop_secret(conn, address))

    async def set_quota(self, address: str, quota_bytes: int | None,
                        quota_messages: int | None = None) -> None:
        await self._writer.run(
            lambda ctx: directory.set_quota(ctx, address, quota_bytes, quota_messages))

    async def remove_account(self, address: str) -> None:
        await self._writer.run(lambda ctx: directory.remove_account(ctx, address))

    async def list_accounts(self) -> list[Account]:
        return await self._reads.run(directory.list_accounts)

    async def get_account(self, address: str) -> Account | None:
        return await self._reads.run(lambda conn: directory.get_account(conn, address))

    async def get_account_by_id(self, account_id: int) -> Account | None:
        return await self._reads.run(lambda conn: directory.get_account_by_id(conn, account_id))

    async def add_alias(self, address: str, target: str) -> None:
        await self._writer.run(lambda ctx: directory.add_alias(ctx, address, target))

    async def remove_alias(self, address: str, target: str | None = None) -> None:
        await self._writer.run(lambda ctx: directory.remove_alias(ctx, address, target))

    async def list_aliases(self) -> list[Alias]:
        return await self._reads.run(directory.list_aliases)

    async def alias_targets(self, address: str) -> list[str]:
        return await self._reads.run(lambda conn: directory.alias_targets(conn, address))

    async def account_usage(self, account_id: int) -> tuple[int, int]:
        return await self._reads.run(lambda conn: directory.account_usage(conn, account_id))

    # -- mailboxes -----------------------------------------------------------------------------

    async def list_mailboxes(self, account_id: int) -> list[MailboxInfo]:
        return await self._reads.run(lambda conn: mailboxes.list_mailboxes(conn, account_id))

    async def get_mailbox(self, account_id: int, name: str) -> MailboxInfo | None:
        return await self._reads.run(lambda conn: mailboxes.get_mailbox(conn, account_id, name))

    async def create_mailbox(self, account_id: int, name: str,
                             special_use: str | None = None) -> MailboxInfo:
        return await self._writer.run(
            lambda ctx: mailboxes.create_mailbox(ctx, account_id, name, special_use))

    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        await self._writer.run(lambda ctx: mailboxes.rename_mailbox(ctx, account_id, old, new))

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        await self._writer.run(lambda ctx: mailboxes.delete_mailbox(ctx, account_id, name))

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        await self._writer.run(
            lambda ctx: mailboxes.set_subscribed(ctx, account_id, name, subscribed))

    async def subscriptions(self, account_id: int) -> list[str]:
        return await self._reads.run(lambda conn: mailboxes.subscriptions(conn, account_id))

    # -- messages ------------------------------------------------------------------------------

    async def messages(self, mailbox_id: int) -> list[MessageMeta]:
        return await self._reads.run(lambda conn: messages.messages(conn, mailbox_id))

    async def append(self, account_id: int, mailbox_id: int, blob: BlobRef,
                     flags: frozenset[str], internal_date: datetime,
                     enforce_quota: bool = True) -> MessageMeta:
        return await self._writer.run(lambda ctx: messages.append(
            ctx, account_id, mailbox_id, blob, flags, internal_date, enforce_quota))

    async def keep_recent_uids(self, marks: Sequence[tuple[int, int]]) -> None:
        await self._writer.run(lambda ctx: mailboxes.keep_recent_uids(ctx, marks))

    async def append_many(self, account_id: int, mailbox_id: int,
                          items: Sequence[NewMessage],
                          enforce_quota: bool = True) -> list[MessageMeta]:
        return await self._writer.run(lambda ctx: messages.append_many(
            ctx, account_id, mailbox_id, items, enforce_quota))

    async def store_flags(self, mailbox_id: int, uids: Sequence[int], mode: FlagMode,
                          flags: frozenset[str],
                          unchanged_since: int | None = None) -> FlagUpdate:
        return await self._writer.run(lambda ctx: messages.store_flags(
            ctx, mailbox_id, uids, mode, flags, unchanged_since))

    async def copy(self, source_mailbox_id: int, uids: Sequence[int],
                   target_mailbox_id: int, enforce_quota: bool = True) -> list[tuple[int, int]]:
        return await self._writer.run(lambda ctx: messages.copy(
            ctx, source_mailbox_id, uids, target_mailbox_id, enforce_quota))

    async def move(self, source_mailbox_id: int, uids: Sequence[int],
                   target_mailbox_id: int) -> list[tuple[int, int]]:
        return await self._writer.run(
            lambda ctx: messages.move(ctx, source_mailbox_id, uids, target_mailbox_id))

    async def expunge(self, mailbox_id: int, uids: Sequence[int]) -> list[int]:
        return await self._writer.run(lambda ctx: messages.expunge(ctx, mailbox_id, uids))

    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxChanges:
        return await self._reads.run(
            lambda conn: messages.changes_since(conn, mailbox_id, modseq))

    # -- delivery and queue --------------------------------------------------------------------

    async def deliver(self, blob: BlobRef, targets: Sequence[DeliveryTarget],
                      outbound: OutboundEnvelope | None = None,
                      internal_date: datetime | None = None) -> DeliveryOutcome:
        when = internal_date if internal_date is not None else now_utc()
        return await self._writer.run(
            lambda ctx: delivery.deliver(ctx, blob, targets, outbound, when))

    async def list_queue(self) -> list[QueueEntry]:
        return await self._reads.run(queue.list_entries)

    async def get_queue_entry(self, entry_id: int) -> QueueEntry | None:
        return await self._reads.run(lambda conn: queue.get_entry(conn, entry_id))

    async def delete_queue_entry(self, entry_id: int) -> None:
        await self._writer.run(lambda ctx: queue.delete_entry(ctx, entry_id))

    async def due_queue_entries(self, now: datetime, limit: int,
                                lease_until: datetime) -> list[QueueEntry]:
        return await self._writer.run(
            lambda ctx: queue_run.claim_due(ctx, now, limit, lease_until))

    async def record_attempt(self, entry_id: int, next_attempt: datetime,
                             error: str | None) -> None:
        await self._writer.run(
            lambda ctx: queue_run.record_attempt(ctx, entry_id, next_attempt, error))

    async def complete_recipients(self, entry_id: int, addresses: Sequence[str], status: str,
                                  error: str | None = None) -> int:
        return await self._writer.run(lambda ctx: queue_run.complete_recipients(
            ctx, entry_id, addresses, status, error))

    async def reschedule_queue(self, entry_id: int | None, when: datetime) -> int:
        return await self._writer.run(lambda ctx: queue_run.reschedule(ctx, entry_id, when))

    async def claim_delay_warning(self, entry_id: int) -> bool:
        return await self._writer.run(lambda ctx: queue_run.claim_delay_warning(ctx, entry_id))

    async def get_mta_sts_policy(self, domain: str) -> StoredPolicy | None:
        return await self._reads.run(lambda conn: policies.get_policy(conn, domain),
                                     single_statement=True)

    async def put_mta_sts_policy(self, policy: StoredPolicy) -> None:
        await self._writer.run(lambda ctx: policies.put_policy(ctx, policy))


def _remove_unreferenced(ctx: WriteContext, blob_ids: list[str]) -> int:
    """Sweep step, on the writer thread: unlink the bodies no row references.

    Running here makes the check and the unlink atomic with respect to every delivery: a later
    operation that tries to reference a removed body gets NotFound instead of a dangling row.
    """
    removed = 0
    for blob_id in blob_ids:
        if not is_referenced(ctx.conn, blob_id):
            ctx.bodies.files.unlink(blob_id)
            removed += 1
    return removed


def _unreferenced_inline(conn: sqlite3.Connection, after: str,
                         limit: int) -> tuple[str | None, list[str]]:
    """Sweep scan, in a read transaction: of the next ``limit`` inline ids after ``after``, the
    ones no row references; and the last id examined (None once the table is done).

    Short key-ordered chunks keep each read transaction short, so the scan never holds back a
    WAL checkpoint for long.
    """
    rows = conn.execute(
        "SELECT id, NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = i.id)"
        "       AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = i.id)"
        "  FROM inline_bodies i WHERE id > ? ORDER BY id LIMIT ?", (after, limit)).fetchall()
    if not rows:
        return None, []
    return rows[-1][0], [row[0] for row in rows if row[1]]


def _remove_unreferenced_inline(ctx: WriteContext, blob_ids: list[str]) -> int:
    """Sweep step, on the writer thread: delete those of ``blob_ids`` still unreferenced."""
    return sum(ctx.conn.execute(DELETE_UNREFERENCED_INLINE, (blob_id,) * 3).rowcount
               for blob_id in blob_ids)
