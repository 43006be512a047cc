"""Persistent state: the store interface, its value types and errors, and how to open it.

Protocol code imports from here: :func:`open_store` returns the embedded
:class:`~mailpost.store.sqlite.SQLiteStore` (SQLite metadata and small bodies in one database,
larger bodies one file each, all under ``data_dir``) behind the
:class:`~mailpost.store.interface.MailStore` interface.
"""

from __future__ import annotations

from pathlib import Path

from mailpost.bus import ChangeBus
from mailpost.store.errors import (
    AlreadyExists,
    InUse,
    InvalidName,
    NotFound,
    OverQuota,
    StoreError,
    StoreUnavailable,
)
from mailpost.store.interface import BlobStore, BlobWriter, MailStore
from mailpost.store.types import (
    DEFAULT_MAILBOXES,
    HIERARCHY_DELIMITER,
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
    OutboundEnvelope,
    OutboundRecipient,
    QueueEntry,
)


async def open_store(data_dir: Path, bus: ChangeBus) -> MailStore:
    """Open (creating if needed) the store under ``data_dir``; close it with ``close()``.

    Raises:
        StoreUnavailable: the database cannot be opened or is newer than this program.
        OSError: the data directory cannot be created.
    """
    # Imported on use: mailpost.store.sqlite imports from this package (no import cycle).
    from mailpost.store.sqlite import SQLiteStore

    return await SQLiteStore.open(data_dir, bus)


__all__ = [
    "DEFAULT_MAILBOXES",
    "HIERARCHY_DELIMITER",
    "Account",
    "Alias",
    "AlreadyExists",
    "BlobRef",
    "BlobStore",
    "BlobWriter",
    "DeliveryOutcome",
    "DeliveryTarget",
    "FlagMode",
    "FlagUpdate",
    "InUse",
    "InvalidName",
    "MailStore",
    "MailboxChanges",
    "MailboxInfo",
    "MessageMeta",
    "NotFound",
    "OutboundEnvelope",
    "OutboundRecipient",
    "OverQuota",
    "QueueEntry",
    "StoreError",
    "StoreUnavailable",
    "open_store",
]
