"""Conformance: domains, accounts, aliases and default mailboxes."""

from __future__ import annotations

import pytest

from mailpost.store.errors import AlreadyExists, InUse, NotFound
from mailpost.store.interface import MailStore
from mailpost.store.types import DEFAULT_MAILBOXES, Account, Alias, DeliveryTarget
from tests.store.helpers import put_body

# -- domains ---------------------------------------------------------------------------------


async def test_domains_are_case_insensitive_and_listed_lowercase(store: MailStore) -> None:
    await store.add_domain("Example.ORG")
    await store.add_domain("b.example")
    assert await store.list_domains() == ["b.example", "example.org"]
    assert await store.is_local_domain("EXAMPLE.org")
    assert not await store.is_local_domain("other.org")
    with pytest.raises(AlreadyExists):
        await store.add_domain("example.org")


async def test_remove_domain(store: MailStore) -> None:
    await store.add_domain("example.org")
    await store.remove_domain("EXAMPLE.ORG")
    assert await store.list_domains() == []
    with pytest.raises(NotFound):
        await store.remove_domain("example.org")


async def test_remove_domain_refused_while_accounts_exist(store: MailStore,
                                                          alice: Account) -> None:
    with pytest.raises(InUse):
        await store.remove_domain("example.org")
    await store.remove_account(alice.address)
    await store.remove_domain("example.org")
    assert not await store.is_local_domain("example.org")


async def test_remove_domain_refused_while_aliases_exist(store: MailStore) -> None:
    await store.add_domain("example.org")
    await store.add_alias("@example.org", "someone@elsewhere.net")
    with pytest.raises(InUse):
        await store.remove_domain("example.org")
    await store.remove_alias("@example.org")
    await store.remove_domain("example.org")
    assert await store.list_domains() == []


# -- accounts --------------------------------------------------------------------------------


async def test_account_address_is_lowercased_and_found_case_insensitively(
        store: MailStore) -> None:
    await store.add_domain("example.org")
    account = await store.add_account("Alice@Example.org", "hash", 1000, 10)
    assert account.address == "alice@example.org"
    assert (account.quota_bytes, account.quota_messages) == (1000, 10)
    assert await store.get_account("ALICE@example.ORG") == account
    assert await store.get_account_by_id(account.id) == account
    assert await store.get_account("nobody@example.org") is None
    assert await store.get_account_by_id(account.id + 1000) is None
    assert await store.list_accounts() == [account]


async def test_add_account_errors(store: MailStore, alice: Account) -> None:
    with pytest.raises(NotFound):
        await store.add_account("carol@not-local.org", "hash")
    with pytest.raises(AlreadyExists):
        await store.add_account("ALICE@example.org", "hash")


async def test_account_and_alias_addresses_exclude_each_other(store: MailStore,
                                                              alice: Account) -> None:
    with pytest.raises(AlreadyExists):
        await store.add_alias("alice@example.org", "bob@example.org")
    await store.add_alias("postmaster@example.org", "alice@example.org")
    with pytest.raises(AlreadyExists):
        await store.add_account("Postmaster@example.org", "hash")


async def test_set_password_and_quota(store: MailStore, alice: Account) -> None:
    await store.set_password("Alice@example.org", "new-hash")
    await store.set_quota("alice@example.org", 5000, 50)
    updated = await store.get_account("alice@example.org")
    assert updated == Account(alice.id, alice.address, "new-hash", 5000, 50)
    await store.set_quota("alice@example.org", None)
    updated = await store.get_account("alice@example.org")
    assert updated is not None
    assert (updated.quota_bytes, updated.quota_messages) == (None, None)
    with pytest.raises(NotFound):
        await store.set_password("nobody@example.org", "x")
    with pytest.raises(NotFound):
        await store.set_quota("nobody@example.org", 1)


async def test_new_account_gets_subscribed_default_mailboxes(store: MailStore,
                                                             alice: Account) -> None:
    boxes = await store.list_mailboxes(alice.id)
    assert [box.name for box in boxes] == sorted(name for name, _ in DEFAULT_MAILBOXES)
    assert {box.name: box.special_use for box in boxes} == dict(DEFAULT_MAILBOXES)
    for box in boxes:
        assert box.subscribed
        assert (box.uidnext, box.highest_modseq, box.messages, box.unseen, box.size) == \
            (1, 1, 0, 0, 0)
        assert 0 < box.uidvalidity < 2**32
    assert len({box.uidvalidity for box in boxes}) == len(boxes)
    assert await store.subscriptions(alice.id) == sorted(name for name, _ in DEFAULT_MAILBOXES)


async def test_remove_account_removes_mailboxes_and_messages(store: MailStore,
                                                             alice: Account) -> None:
    body = await put_body(store)
    await store.deliver(body, [DeliveryTarget(alice.id)])
    await store.remove_account("ALICE@example.org")
    assert await store.get_account("alice@example.org") is None
    assert await store.list_mailboxes(alice.id) == []
    assert await store.account_usage(alice.id) == (0, 0)
    with pytest.raises(NotFound):
        await store.remove_account("alice@example.org")


async def test_account_usage_counts_every_mailbox(store: MailStore, alice: Account) -> None:
    small, large = await put_body(store, b"a" * 100), await put_body(store, b"b" * 250)
    await store.deliver(small, [DeliveryTarget(alice.id)])
    await store.deliver(large, [DeliveryTarget(alice.id, "Archive")])
    assert await store.account_usage(alice.id) == (350, 2)


# -- aliases ---------------------------------------------------------------------------------


async def test_alias_with_several_targets_and_catch_all(store: MailStore) -> None:
    await store.add_domain("example.org")
    await store.add_alias("Team@example.org", "alice@example.org")
    await store.add_alias("team@example.org", "Bob@Remote.NET")
    await store.add_alias("@Example.org", "catchall@example.org")
    assert await store.alias_targets("TEAM@example.org") == ["Bob@remote.net",
                                                             "alice@example.org"]
    assert await store.alias_targets("@example.org") == ["catchall@example.org"]
    assert await store.alias_targets("nobody@example.org") == []
    assert await store.list_aliases() == [
        Alias("@example.org", "catchall@example.org"),
        Alias("team@example.org", "Bob@remote.net"),
        Alias("team@example.org", "alice@example.org"),
    ]
    with pytest.raises(AlreadyExists):
        await store.add_alias("team@example.org", "alice@example.org")


async def test_alias_of_foreign_domain_is_refused(store: MailStore) -> None:
    with pytest.raises(NotFound):
        await store.add_alias("team@nowhere.org", "alice@example.org")


async def test_remove_alias_one_target_or_all(store: MailStore) -> None:
    await store.add_domain("example.org")
    for target in ("a@example.org", "b@example.org", "c@example.org"):
        await store.add_alias("team@example.org", target)
    await store.remove_alias("team@example.org", "b@example.org")
    assert await store.alias_targets("team@example.org") == ["a@example.org", "c@example.org"]
    with pytest.raises(NotFound):
        await store.remove_alias("team@example.org", "b@example.org")
    await store.remove_alias("team@example.org")
    assert await store.alias_targets("team@example.org") == []
    with pytest.raises(NotFound):
        await store.remove_alias("team@example.org")
