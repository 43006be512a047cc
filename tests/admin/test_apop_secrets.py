"""Administrative operations and APOP secrets: stored sealed when a key is given, replaced or
cleared by every password change (RFC 1939 §7)."""

from __future__ import annotations

import os

import pytest

from mailpost.admin import ops
from mailpost.admin.ops import AdminError
from mailpost.auth.apop_key import APOPKey
from mailpost.auth.passwords import verify_password
from mailpost.store.interface import MailStore

ALICE = "alice@example.org"


@pytest.fixture
async def domain(store: MailStore) -> str:
    return await ops.add_domain(store, "example.org")


@pytest.fixture
def key() -> APOPKey:
    return APOPKey(os.urandom(32))


async def secret_of(store: MailStore, key: APOPKey, address: str = ALICE) -> str | None:
    sealed = await store.get_apop_secret(address)
    if sealed is None:
        return None
    opened = key.open(address, sealed)
    assert opened is not None, "a stored secret must open with the key that sealed it"
    return opened


async def test_add_user_without_a_key_stores_no_secret(store: MailStore, domain: str) -> None:
    await ops.add_user(store, ALICE, "pw")
    assert await store.get_apop_secret(ALICE) is None


async def test_add_user_with_a_key_stores_the_sealed_password(
        store: MailStore, domain: str, key: APOPKey) -> None:
    account = await ops.add_user(store, "Alice@Example.ORG", "s3cret pw", apop_key=key)
    assert account.address == ALICE
    sealed = await store.get_apop_secret(ALICE)
    assert sealed is not None and b"s3cret" not in sealed
    assert await secret_of(store, key) == "s3cret pw"
    assert verify_password(account.password_hash, "s3cret pw")  # USER/PASS works as before


async def test_set_password_with_a_key_replaces_the_secret(
        store: MailStore, domain: str, key: APOPKey) -> None:
    await ops.add_user(store, ALICE, "old", apop_key=key)
    await ops.set_password(store, ALICE, "new", apop_key=key)
    assert await secret_of(store, key) == "new"


async def test_set_password_without_a_key_clears_the_secret(
        store: MailStore, domain: str, key: APOPKey) -> None:
    await ops.add_user(store, ALICE, "old", apop_key=key)
    await ops.set_password(store, ALICE, "new")
    assert await store.get_apop_secret(ALICE) is None
    account = await store.get_account(ALICE)
    assert account is not None and verify_password(account.password_hash, "new")


async def test_set_password_with_a_key_adds_a_secret_to_an_older_account(
        store: MailStore, domain: str, key: APOPKey) -> None:
    await ops.add_user(store, ALICE, "pw")
    await ops.set_password(store, ALICE, "pw", apop_key=key)
    assert await secret_of(store, key) == "pw"


async def test_bad_input_stores_nothing(store: MailStore, domain: str, key: APOPKey) -> None:
    await ops.add_user(store, ALICE, "pw", apop_key=key)
    with pytest.raises(AdminError, match="control characters"):
        await ops.set_password(store, ALICE, "bad\npw", apop_key=key)
    with pytest.raises(AdminError, match="no user"):
        await ops.set_password(store, "ghost@example.org", "pw", apop_key=key)
    assert await secret_of(store, key) == "pw"
