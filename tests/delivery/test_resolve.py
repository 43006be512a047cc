"""Recipient resolution and sender ownership against the real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailpost.admin import ops
from mailpost.bus import LocalBus
from mailpost.delivery.resolve import RecipientResolver, Refusal, Resolution
from mailpost.store import open_store
from mailpost.store.interface import MailStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MailStore]:
    opened = await open_store(tmp_path, LocalBus())
    await ops.add_domain(opened, "example.test")
    await ops.add_domain(opened, "other.test")
    for user in ("alice@example.test", "bob@example.test"):
        await ops.add_user(opened, user, "password-123")
    yield opened
    await opened.close()


async def resolve(store: MailStore, address: str, relay: bool = False) -> Resolution | Refusal:
    return await RecipientResolver(store, "mail.example.test").resolve(address, may_relay=relay)


async def accounts(store: MailStore, address: str) -> set[str]:
    result = await resolve(store, address)
    assert isinstance(result, Resolution), result
    return {account.address for account in result.accounts.values()}


async def test_accounts_case_and_subaddress(store: MailStore) -> None:
    assert await accounts(store, "alice@example.test") == {"alice@example.test"}
    assert await accounts(store, "Alice@EXAMPLE.test") == {"alice@example.test"}
    assert await accounts(store, "alice+news@example.test") == {"alice@example.test"}
    assert await resolve(store, "carol@example.test") == Refusal.UNKNOWN_USER


async def test_aliases_groups_catch_all_and_remote_targets(store: MailStore) -> None:
    await ops.add_alias(store, "team@example.test", "alice@example.test")
    await ops.add_alias(store, "team@example.test", "bob@example.test")
    await ops.add_alias(store, "fwd@example.test", "someone@remote.test")
    await ops.add_alias(store, "@other.test", "bob@example.test")
    assert await accounts(store, "team@example.test") == {"alice@example.test",
                                                          "bob@example.test"}
    forwarded = await resolve(store, "fwd@example.test")
    assert isinstance(forwarded, Resolution) and forwarded.remote == ["someone@remote.test"]
    assert await accounts(store, "whatever@other.test") == {"bob@example.test"}


async def test_alias_cycles_terminate(store: MailStore) -> None:
    await ops.add_alias(store, "a@example.test", "b@example.test")
    await ops.add_alias(store, "b@example.test", "a@example.test")
    await ops.add_alias(store, "b@example.test", "alice@example.test")
    assert await accounts(store, "a@example.test") == {"alice@example.test"}


async def test_relay_rules(store: MailStore) -> None:
    assert await resolve(store, "x@remote.test") == Refusal.RELAY_DENIED
    assert await resolve(store, "x@remote.test", relay=True) == Resolution(remote=["x@remote.test"])
    assert await resolve(store, "x%remote.test@example.test") == Refusal.ROUTING_TRICK
    assert await resolve(store, "remote.test!x@example.test") == Refusal.ROUTING_TRICK
    assert await resolve(store, "x%y@remote.test", relay=True) == Refusal.ROUTING_TRICK


async def test_postmaster_goes_to_the_servers_domain(store: MailStore) -> None:
    resolver = RecipientResolver(store, "mail.example.test")
    assert await resolver.postmaster_address() == "postmaster@example.test"


async def test_sender_ownership(store: MailStore) -> None:
    await ops.add_alias(store, "sales@example.test", "alice@example.test")
    await ops.add_alias(store, "@other.test", "alice@example.test")
    alice = await store.get_account("alice@example.test")
    assert alice is not None
    resolver = RecipientResolver(store, "mail.example.test")
    allowed = ["alice@example.test", "ALICE@example.test", "alice+x@example.test",
               "sales@example.test", ""]
    refused = ["bob@example.test", "someone@remote.test", "anyone@other.test",
               "alicex@example.test"]
    for sender in allowed:
        assert await resolver.sender_allowed(alice, sender), sender
    for sender in refused:
        assert not await resolver.sender_allowed(alice, sender), sender
