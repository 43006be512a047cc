"""Operator actions on the outbound queue: list, show, flush, delete.

These work on the store directly, so they run from the command line while the server runs in
another process (SQLite WAL). ``flush`` only makes entries due now; the server's queue runner
picks them up at its next poll (a few seconds), exactly as it would after a back-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mailpost.admin.ops import AdminError
from mailpost.store.errors import NotFound
from mailpost.store.interface import MailStore
from mailpost.store.types import QueueEntry

# How much of a stored message ``queue show`` prints: its header, up to this many bytes.
SHOW_HEADER_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class QueueDetail:
    entry: QueueEntry
    header: str


def _missing(entry_id: int) -> AdminError:
    return AdminError(f"no queue entry {entry_id}; see: mailpost queue list")


async def list_queue(store: MailStore) -> list[QueueEntry]:
    return await store.list_queue()


async def show_entry(store: MailStore, entry_id: int) -> QueueDetail:
    """The entry and the header of its message (the body itself is not printed)."""
    entry = await store.get_queue_entry(entry_id)
    if entry is None:
        raise _missing(entry_id)
    head = await store.blobs.read(entry.blob, 0, SHOW_HEADER_LIMIT)
    header = head.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return QueueDetail(entry, header)


async def flush(store: MailStore, entry_id: int | None = None,
                now: datetime | None = None) -> int:
    """Make one entry (or all of them) due now; return how many."""
    try:
        return await store.reschedule_queue(entry_id, now or datetime.now(UTC))
    except NotFound as exc:
        assert entry_id is not None
        raise _missing(entry_id) from exc


async def delete_entry(store: MailStore, entry_id: int) -> None:
    """Drop an entry without delivering it and without a bounce."""
    try:
        await store.delete_queue_entry(entry_id)
    except NotFound as exc:
        raise _missing(entry_id) from exc


def describe_time(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
