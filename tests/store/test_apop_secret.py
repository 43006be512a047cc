"""Conformance: the per-account APOP secret (opaque sealed bytes, RFC 1939 §7)."""

from __future__ import annotations

import pytest

from mailpost.store.errors import NotFound
from mailpost.store.interface import MailStore
from mailpost.store.types import Account
from tests.store.conftest import StoreFactory

SEALED = b"\x01sealed\x00secret\xff"


async def test_new_accounts_have_no_secret(store: MailStore, alice: Account) -> None:
    assert await store.get_apop_secret(alice.address) is None


async def test_set_get_and_clear(store: MailStore, alice: Account, bob: Account) -> None:
    await store.set_apop_secret("ALICE@example.org", SEALED)
    assert await store.get_apop_secret("alice@EXAMPLE.org") == SEALED
    assert await store.get_apop_secret(bob.address) is None  # other accounts untouched
    await store.set_apop_secret(alice.address, None)
    assert await store.get_apop_secret(alice.address) is None


async def test_secret_of_a_missing_account(store: MailStore, alice: Account) -> None:
    with pytest.raises(NotFound):
        await store.set_apop_secret("ghost@example.org", SEALED)
    assert await store.get_apop_secret("ghost@example.org") is None


async def test_add_account_with_a_secret(store: MailStore) -> None:
    await store.add_domain("example.org")
    account = await store.add_account("carol@example.org", "hash", apop_secret=SEALED)
    assert await store.get_apop_secret(account.address) == SEALED
    assert await store.get_account(account.address) == account  # nothing else changed


async def test_password_change_replaces_or_clears_the_secret(store: MailStore,
                                                             alice: Account) -> None:
    await store.set_apop_secret(alice.address, SEALED)
    await store.set_password(alice.address, "hash-2", apop_secret=b"new")
    assert await store.get_apop_secret(alice.address) == b"new"
    await store.set_password(alice.address, "hash-3")
    assert await store.get_apop_secret(alice.address) is None  # no secret outlives a password
    account = await store.get_account(alice.address)
    assert account is not None and account.password_hash == "hash-3"


async def test_secret_survives_a_reopen(factory: StoreFactory, store: MailStore,
                                        alice: Account) -> None:
    await store.set_apop_secret(alice.address, SEALED)
    await store.close()
    reopened = await factory.open()
    assert await reopened.get_apop_secret(alice.address) == SEALED


async def test_removed_account_takes_its_secret(store: MailStore, alice: Account) -> None:
    await store.set_apop_secret(alice.address, SEALED)
    await store.remove_account(alice.address)
    await store.add_account(alice.address, "hash")
    assert await store.get_apop_secret(alice.address) is None
