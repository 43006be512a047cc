"""Fixtures for the store conformance suite.

The suite is written against the :class:`~mailpost.store.interface.MailStore` interface only.
Each implementation registers a :class:`StoreFactory` in :data:`FACTORIES`; every conformance
test runs once per implementation (a PostgreSQL store adds an entry, skipped unless its server
is configured). Implementation-specific tests (files, SQLite pragmas) live in
``test_sqlite_*.py`` and use the SQLite store directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from mailpost.bus import LocalBus
from mailpost.store import open_store
from mailpost.store.interface import MailStore
from mailpost.store.sqlite import SQLiteStore
from mailpost.store.types import Account, MailboxInfo


class StoreFactory:
    """Opens stores over one persistent location, and closes whatever it opened."""

    def __init__(self, opener: Callable[[LocalBus], Awaitable[MailStore]], bus: LocalBus) -> None:
        self._opener = opener
        self.bus = bus
        self._open: list[MailStore] = []

    async def open(self) -> MailStore:
        store = await self._opener(self.bus)
        self._open.append(store)
        return store

    async def close_all(self) -> None:
        for store in self._open:
            await store.close()
        self._open.clear()


def _sqlite_factory(tmp_path: Path, bus: LocalBus) -> StoreFactory:
    return StoreFactory(lambda b: open_store(tmp_path / "data", b), bus)


FACTORIES: dict[str, Callable[[Path, LocalBus], StoreFactory]] = {"sqlite": _sqlite_factory}


@pytest.fixture
def bus() -> LocalBus:
    return LocalBus()


@pytest.fixture(params=sorted(FACTORIES))
async def factory(request: pytest.FixtureRequest, tmp_path: Path,
                  bus: LocalBus) -> AsyncIterator[StoreFactory]:
    made = FACTORIES[request.param](tmp_path, bus)
    yield made
    await made.close_all()


@pytest.fixture
async def store(factory: StoreFactory) -> MailStore:
    return await factory.open()


@pytest.fixture
async def alice(store: MailStore) -> Account:
    await store.add_domain("example.org")
    return await store.add_account("alice@example.org", "hash-a")


@pytest.fixture
async def bob(store: MailStore, alice: Account) -> Account:
    return await store.add_account("bob@example.org", "hash-b")


@pytest.fixture
async def inbox(store: MailStore, alice: Account) -> MailboxInfo:
    info = await store.get_mailbox(alice.id, "INBOX")
    assert info is not None
    return info


# -- the SQLite store itself, for the implementation-specific tests (test_sqlite_*.py) ---------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def sqlite_store(data_dir: Path, bus: LocalBus) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(data_dir, bus)
    await opened.sweep_finished()  # its steps are writer operations: keep them out of the tests
    yield opened
    await opened.close()


@pytest.fixture
async def account(sqlite_store: SQLiteStore) -> Account:
    await sqlite_store.add_domain("example.org")
    return await sqlite_store.add_account("alice@example.org", "hash")
