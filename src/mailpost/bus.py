"""The change-event bus: the store announces committed changes, sessions wake up.

A change is first committed in the store (which keeps the durable per-mailbox change log with
modseqs); only then is a small :class:`Change` published here. The bus is a doorbell, not the
data: a woken session pulls what changed from the store (``changes_since``), so a lost or
coalesced notification never loses information.

Each subscriber has a bounded queue. A subscriber that falls behind (a slow client) is marked
*overflowed* and its queue dropped instead of blocking the publisher; it resynchronises from
the store (IMAP: a full mailbox re-read, or NOTIFICATIONOVERFLOW under NOTIFY).

:class:`LocalBus` fans out inside one process. A PostgreSQL ``LISTEN/NOTIFY`` bus implements
the same :class:`ChangeBus` protocol to span processes: ``publish`` becomes ``NOTIFY`` with a
small JSON payload, and a listener task feeds the local subscribers.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self


class ChangeKind(enum.Enum):
    MESSAGE_NEW = "new"
    FLAGS = "flags"
    EXPUNGE = "expunge"
    MAILBOX = "mailbox"  # created, renamed or deleted
    SUBSCRIPTION = "subscription"


@dataclass(frozen=True, slots=True)
class Change:
    account_id: int
    mailbox_id: int | None
    modseq: int
    kind: ChangeKind
    mailbox_name: str | None = None


class Subscription:
    """One session's view of the bus for one account."""

    def __init__(self, bus: LocalBus, account_id: int, capacity: int) -> None:
        self._bus = bus
        self.account_id = account_id
        self._capacity = capacity
        self._pending: deque[Change] = deque()
        self._overflowed = False
        self._wakeup = asyncio.Event()

    def _offer(self, change: Change) -> None:
        if self._overflowed:
            return
        if len(self._pending) >= self._capacity:
            # Never block or grow without bound for a slow reader: drop and flag.
            self._pending.clear()
            self._overflowed = True
        else:
            self._pending.append(change)
        self._wakeup.set()

    @property
    def ready(self) -> bool:
        return bool(self._pending) or self._overflowed

    def take(self) -> tuple[list[Change], bool]:
        """Return (changes, overflowed) queued so far and reset; does not wait."""
        changes = list(self._pending)
        overflowed = self._overflowed
        self._pending.clear()
        self._overflowed = False
        self._wakeup.clear()
        return changes, overflowed

    async def wait_ready(self) -> None:
        """Wait until something is queued, without taking it."""
        while not self.ready:
            self._wakeup.clear()
            await self._wakeup.wait()

    async def wait(self) -> tuple[list[Change], bool]:
        """Wait until something is queued, then :meth:`take` it."""
        await self.wait_ready()
        return self.take()

    def close(self) -> None:
        self._bus._remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ChangeBus(Protocol):
    def publish(self, change: Change) -> None:
        """Announce a committed change; never blocks."""

    def subscribe(self, account_id: int, capacity: int = 1024) -> Subscription:
        """Start receiving the account's changes; close the subscription when done."""


class LocalBus:
    """In-process fan-out: a publish touches exactly the subscribers of that account."""

    def __init__(self) -> None:
        self._subscribers: dict[int, set[Subscription]] = {}

    def publish(self, change: Change) -> None:
        for subscription in self._subscribers.get(change.account_id, ()):
            subscription._offer(change)

    def subscribe(self, account_id: int, capacity: int = 1024) -> Subscription:
        subscription = Subscription(self, account_id, capacity)
        self._subscribers.setdefault(account_id, set()).add(subscription)
        return subscription

    def subscriber_count(self, account_id: int) -> int:
        return len(self._subscribers.get(account_id, ()))

    def _remove(self, subscription: Subscription) -> None:
        group = self._subscribers.get(subscription.account_id)
        if group is not None:
            group.discard(subscription)
            if not group:
                del self._subscribers[subscription.account_id]
