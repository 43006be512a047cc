"""Waiting on the change bus costs an idle session little: a bare future per wait, bounded
however often a waiter gives up, and a publish counter for queries shared between sessions."""

from __future__ import annotations

import asyncio

from mailpost.bus import Change, ChangeKind, LocalBus, published


def change(account: int, modseq: int = 1) -> Change:
    return Change(account, 10, modseq, ChangeKind.MESSAGE_NEW)


async def test_wait_ready_is_done_at_once_when_something_is_queued() -> None:
    bus = LocalBus()
    with bus.subscribe(1) as subscription:
        bus.publish(change(1))
        assert subscription.wait_ready().done()
        assert subscription.take() == ([change(1)], False)  # waiting took nothing


async def test_every_waiter_wakes_on_publish_and_ensure_future_needs_no_task() -> None:
    bus = LocalBus()
    with bus.subscribe(3) as subscription:
        first, second = subscription.wait_ready(), subscription.wait_ready()
        assert asyncio.ensure_future(first) is first  # what the IDLE loop does with it
        await asyncio.sleep(0)
        assert not first.done() and not second.done()
        bus.publish(change(3))
        await asyncio.wait_for(asyncio.gather(first, second), 1)


async def test_waiters_that_gave_up_do_not_pile_up() -> None:
    bus = LocalBus()
    with bus.subscribe(5) as subscription:
        for _ in range(1000):
            subscription.wait_ready().cancel()  # an IDLE whose client keeps talking
        last = subscription.wait_ready()
        assert len(subscription._waiters) == 1
        bus.publish(change(5))
        await asyncio.wait_for(last, 1)
        assert subscription._waiters == []


async def test_overflow_wakes_a_waiter() -> None:
    bus = LocalBus()
    with bus.subscribe(1, capacity=1) as slow:
        bus.publish(change(1, 1))
        waiter = slow.wait_ready()
        bus.publish(change(1, 2))
        assert waiter.done()
        assert slow.take() == ([], True)


def test_published_changes_with_every_publish_on_any_bus() -> None:
    first, second = LocalBus(), LocalBus()
    seen = {published()}
    for bus in (first, second, first):
        bus.publish(change(9))  # with or without subscribers
        assert published() not in seen
        seen.add(published())


def test_subscriptions_are_slotted() -> None:
    with LocalBus().subscribe(1) as subscription:
        assert not hasattr(subscription, "__dict__")
