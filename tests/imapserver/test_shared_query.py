"""The store query that sessions woken together share (imap.selected.changes_since): one
answer, or one failure, reaches every session still waiting; sessions that left get nothing,
and a failure nobody waits for any more is not reported as unretrieved."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from mailpost.imap.selected import changes_since
from mailpost.store.errors import NotFound
from mailpost.store.types import MailboxChanges


class GatedStore:
    """``changes_since`` that answers (or fails) when the test opens the gate."""

    def __init__(self, failure: Exception | None = None) -> None:
        self.gate = asyncio.Event()
        self.failure = failure
        self.queries = 0

    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxChanges:
        self.queries += 1
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return MailboxChanges(modseq + 1, 5, (), ())


def ask(store: GatedStore, modseq: int = 3) -> asyncio.Future[MailboxChanges]:
    return changes_since(store, 7, modseq)  # type: ignore[arg-type]


async def test_one_answer_reaches_every_waiter() -> None:
    store = GatedStore()
    waiters = [ask(store) for _ in range(3)]
    other_modseq = ask(store, 2)
    await asyncio.sleep(0)
    store.gate.set()
    answers = await asyncio.gather(*waiters)
    assert all(answer is answers[0] for answer in answers)
    assert answers[0].highest_modseq == 4
    assert (await other_modseq).highest_modseq == 3
    assert store.queries == 2


async def test_a_failure_reaches_every_waiter() -> None:
    store = GatedStore(NotFound("mailbox deleted"))
    waiters = [ask(store) for _ in range(3)]
    await asyncio.sleep(0)
    store.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, NotFound) for result in results)
    assert store.queries == 1


async def test_waiters_that_left_get_nothing_and_nothing_is_reported() -> None:
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        store = GatedStore(NotFound("mailbox deleted"))
        waiters = [ask(store) for _ in range(2)]
        await asyncio.sleep(0)
        for waiter in waiters:
            waiter.cancel()
        store.gate.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert all(waiter.cancelled() for waiter in waiters)
        del waiters
        gc.collect()
        assert reported == []
    finally:
        loop.set_exception_handler(None)


async def test_a_query_that_is_answered_is_not_joined_again() -> None:
    store = GatedStore()
    store.gate.set()
    first = await ask(store)
    second = await ask(store)
    assert store.queries == 2 and first is not second


@pytest.mark.parametrize("leaving", [0, 1])
async def test_one_waiter_leaving_does_not_cancel_the_others(leaving: int) -> None:
    store = GatedStore()
    waiters = [ask(store), ask(store)]
    await asyncio.sleep(0)
    waiters[leaving].cancel()
    store.gate.set()
    staying = waiters[1 - leaving]
    assert (await staying).highest_modseq == 4
    assert waiters[leaving].cancelled()
