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

An idle subscriber must cost little, because a server holds thousands of them (every IMAP
session in IDLE): a :class:`Subscription` is a slotted object with a plain list as its queue,
and waiting for it (:meth:`Subscription.wait_ready`) hands out a bare future that the next
offer resolves, rather than a task running a coroutine around an :class:`asyncio.Event`.

:func:`published` counts publishes in this process. A reader that shares one store query
between several woken sessions uses it to tell whether a change was announced after the shared
query started, which that query may have missed (see ``imap.selected``). A bus that feeds
local subscribers from elsewhere (PostgreSQL) must count its deliveries the same way.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self


class ChangeKind(enum.Enum):
    MESSAGE_NEW = "new"
    FLAGS = "flags"
    EXPUNGE = "expunge"
    MAILBOX = "mailbox"  # created, renamed or deleted
    SUBSCRIPTION = "subscription"
    QUEUE = "queue"  # outbound mail due now: announced under QUEUE_CHANNEL


# The account id under which outbound-queue changes are announced: no account has id 0, so
# only the queue runner listens there.
QUEUE_CHANNEL = 0


@dataclass(frozen=True, slots=True)
class Change:
    account_id: int
    mailbox_id: int | None
    modseq: int
    kind: ChangeKind
    mailbox_name: str | None = None


_PUBLISHES = itertools.count(1)
_latest_publish = 0


def published() -> int:
    """A number that changes whenever any bus of this process publishes (0: none yet)."""
    return _latest_publish


def _count_publish() -> None:
    global _latest_publish
    # next() on itertools.count is atomic, so concurrent buses (one per thread) never hand
    # out the same number; the value only has to differ from every earlier one.
    _latest_publish = next(_PUBLISHES)


class Subscription:
    """One session's view of the bus for one account."""

    __slots__ = ("_bus", "_capacity", "_overflowed", "_pending", "_waiters", "account_id")

    def __init__(self, bus: LocalBus, account_id: int, capacity: int) -> None:
        self._bus = bus
        self.account_id = account_id
        self._capacity = capacity
        self._pending: list[Change] = []
        self._overflowed = False
        # Futures handed out by wait_ready() and not yet resolved (usually none or one).
        self._waiters: list[asyncio.Future[None]] = []

    def _offer(self, change: Change) -> None:
        if self._overflowed:
            return
        if len(self._pending) >= self._capacity:
            # Never block or grow without bound for a slow reader: drop and flag.
            self._pending.clear()
            self._overflowed = True
        else:
            self._pending.append(change)
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    @property
    def ready(self) -> bool:
        return bool(self._pending) or self._overflowed

    def take(self) -> tuple[list[Change], bool]:
        """Return (changes, overflowed) queued so far and reset; does not wait."""
        changes, self._pending = self._pending, []
        overflowed = self._overflowed
        self._overflowed = False
        return changes, overflowed

    def wait_ready(self) -> asyncio.Future[None]:
        """A future that completes once something is queued (at once if something is),
        without taking it. Cancelling the future is how a waiter gives up."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.ready:
            waiter.set_result(None)
            return waiter
        # Drop futures their waiters gave up on (or that input beat), so that a session that
        # keeps waiting and giving up (IDLE with chatty input) cannot grow the list. After a
        # change the list is empty: the usual wake-up pays for no copy.
        if self._waiters:
            self._waiters = [w for w in self._waiters if not w.done()]
        self._waiters.append(waiter)
        return waiter

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
        _count_publish()
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
