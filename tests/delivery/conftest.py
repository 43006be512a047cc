"""Fixtures for the outbound delivery tests: a store with a local sender, a settable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailpost.bus import LocalBus
from mailpost.store import open_store
from mailpost.store.interface import MailStore
from mailpost.store.types import Account


class FakeClock:
    """Starts at the real time (queue entries are stamped with it) and moves only when told."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC) + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MailStore]:
    opened = await open_store(tmp_path / "data", LocalBus())
    yield opened
    await opened.close()


@pytest.fixture
async def alice(store: MailStore) -> Account:
    await store.add_domain("example.org")
    return await store.add_account("alice@example.org", "hash")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
