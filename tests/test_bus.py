"""The change bus: exact fan-out per account, bounded queues, overflow instead of blocking."""

from __future__ import annotations

import asyncio

from mailpost.bus import Change, ChangeKind, LocalBus


def change(account: int, modseq: int = 1) -> Change:
    return Change(account, 10, modseq, ChangeKind.MESSAGE_NEW)


async def test_publish_reaches_only_that_accounts_subscribers() -> None:
    bus = LocalBus()
    with bus.subscribe(1) as mine, bus.subscribe(1) as my_phone, bus.subscribe(2) as other:
        bus.publish(change(1))
        assert (await asyncio.wait_for(mine.wait(), 1)) == ([change(1)], False)
        assert my_phone.take() == ([change(1)], False)
        assert other.take() == ([], False)
        assert not other.ready


async def test_wait_wakes_on_publish() -> None:
    bus = LocalBus()
    with bus.subscribe(7) as subscription:
        waiter = asyncio.create_task(subscription.wait())
        await asyncio.sleep(0)
        assert not waiter.done()
        bus.publish(change(7, 3))
        assert await asyncio.wait_for(waiter, 1) == ([change(7, 3)], False)


async def test_slow_subscriber_overflows_instead_of_growing() -> None:
    bus = LocalBus()
    with bus.subscribe(1, capacity=3) as slow:
        for modseq in range(10):
            bus.publish(change(1, modseq))
        changes, overflowed = slow.take()
        assert overflowed and changes == []
        bus.publish(change(1, 11))
        assert slow.take() == ([change(1, 11)], False)


def test_close_unsubscribes() -> None:
    bus = LocalBus()
    subscription = bus.subscribe(1)
    assert bus.subscriber_count(1) == 1
    subscription.close()
    assert bus.subscriber_count(1) == 0
    bus.publish(change(1))  # nobody left: must not fail
