"""The administrative operations against a real store (mailpost.admin.ops)."""

from __future__ import annotations

import pytest

from mailpost.admin import ops
from mailpost.admin.ops import AdminError, Usage
from mailpost.auth.passwords import verify_password
from mailpost.store.interface import MailStore
from mailpost.store.types import DEFAULT_MAILBOXES, Alias, DeliveryTarget

DOMAIN = "example.org"


@pytest.fixture
async def domain(store: MailStore) -> str:
    return await ops.add_domain(store, DOMAIN)


# --- domains ---------------------------------------------------------------------------------


async def test_add_domain_normalises_and_lists_sorted(store: MailStore) -> None:
    assert await ops.add_domain(store, "Zeta.Example") == "zeta.example"
    await ops.add_domain(store, "alpha.example")
    assert await ops.list_domains(store) == ["alpha.example", "zeta.example"]
    assert await store.is_local_domain("zeta.example")


async def test_add_domain_twice(store: MailStore, domain: str) -> None:
    with pytest.raises(AdminError, match="^domain example.org exists already$"):
        await ops.add_domain(store, "EXAMPLE.org")


async def test_add_invalid_domain_touches_nothing(store: MailStore) -> None:
    with pytest.raises(AdminError, match="invalid domain"):
        await ops.add_domain(store, "not a domain")
    assert await ops.list_domains(store) == []


async def test_remove_domain(store: MailStore, domain: str) -> None:
    assert await ops.remove_domain(store, "Example.Org") == DOMAIN
    assert await ops.list_domains(store) == []


async def test_remove_unknown_domain(store: MailStore) -> None:
    with pytest.raises(AdminError, match="^domain nowhere.example is not a local domain"):
        await ops.remove_domain(store, "nowhere.example")


async def test_remove_domain_with_user_is_refused(store: MailStore, domain: str) -> None:
    await ops.add_user(store, "alice@example.org", "pw")
    with pytest.raises(AdminError, match="still has users or aliases"):
        await ops.remove_domain(store, DOMAIN)
    assert await ops.list_domains(store) == [DOMAIN]


async def test_remove_domain_with_alias_is_refused(store: MailStore, domain: str) -> None:
    await ops.add_alias(store, "@example.org", "someone@elsewhere.example")
    with pytest.raises(AdminError, match="still has users or aliases"):
        await ops.remove_domain(store, DOMAIN)


# --- users -----------------------------------------------------------------------------------


async def test_add_user(store: MailStore, domain: str) -> None:
    account = await ops.add_user(store, "Alice@Example.org", "correct horse", 500 * 1024**2)
    assert account.address == "alice@example.org"
    assert account.quota_bytes == 500 * 1024**2
    assert account.password_hash.startswith("$argon2id$")
    assert verify_password(account.password_hash, "correct horse")
    assert not verify_password(account.password_hash, "wrong")
    stored = await store.get_account("alice@example.org")
    assert stored is not None and stored.id == account.id
    names = [box.name for box in await store.list_mailboxes(account.id)]
    assert sorted(names) == sorted(name for name, _ in DEFAULT_MAILBOXES)


async def test_add_user_unlimited_by_default(store: MailStore, domain: str) -> None:
    assert (await ops.add_user(store, "bob@example.org", "pw")).quota_bytes is None


async def test_add_user_in_unknown_domain(store: MailStore) -> None:
    with pytest.raises(AdminError) as info:
        await ops.add_user(store, "bob@example.org", "pw")
    assert str(info.value) == ("domain example.org is not a local domain; "
                               "add it with: mailpost domain add example.org")


async def test_add_user_twice(store: MailStore, domain: str) -> None:
    await ops.add_user(store, "bob@example.org", "pw")
    with pytest.raises(AdminError, match="^user bob@example.org exists already$"):
        await ops.add_user(store, "BOB@example.org", "other")


async def test_add_user_at_an_alias_address(store: MailStore, domain: str) -> None:
    await ops.add_alias(store, "info@example.org", "x@elsewhere.example")
    with pytest.raises(AdminError, match="is an alias; remove it first"):
        await ops.add_user(store, "info@example.org", "pw")
    assert await store.get_account("info@example.org") is None


@pytest.mark.parametrize(("password", "quota", "message"), [
    ("", None, "empty password"),
    ("a\nb", None, "control characters"),
    ("pw", 0, "invalid quota"),
    ("pw", -5, "invalid quota"),
])
async def test_add_user_rejects_bad_input(store: MailStore, domain: str, password: str,
                                          quota: int | None, message: str) -> None:
    with pytest.raises(AdminError, match=message):
        await ops.add_user(store, "carol@example.org", password, quota)
    assert await store.list_accounts() == []


async def test_set_password(store: MailStore, domain: str) -> None:
    await ops.add_user(store, "bob@example.org", "old")
    assert await ops.set_password(store, "Bob@Example.org", "new") == "bob@example.org"
    account = await store.get_account("bob@example.org")
    assert account is not None
    assert verify_password(account.password_hash, "new")
    assert not verify_password(account.password_hash, "old")


async def test_set_password_errors(store: MailStore, domain: str) -> None:
    with pytest.raises(AdminError, match="^no user ghost@example.org; see: mailpost user list$"):
        await ops.set_password(store, "ghost@example.org", "pw")
    await ops.add_user(store, "bob@example.org", "old")
    with pytest.raises(AdminError, match="empty password"):
        await ops.set_password(store, "bob@example.org", "")


async def test_set_quota(store: MailStore, domain: str) -> None:
    await ops.add_user(store, "bob@example.org", "pw")
    assert await ops.set_quota(store, "BOB@example.org", 2 * 1024**3) == "bob@example.org"
    account = await store.get_account("bob@example.org")
    assert account is not None and account.quota_bytes == 2 * 1024**3
    await ops.set_quota(store, "bob@example.org", None)
    account = await store.get_account("bob@example.org")
    assert account is not None and account.quota_bytes is None


async def test_set_quota_unknown_user(store: MailStore, domain: str) -> None:
    with pytest.raises(AdminError, match="^no user ghost@example.org"):
        await ops.set_quota(store, "ghost@example.org", 10)


async def test_remove_user(store: MailStore, domain: str) -> None:
    await ops.add_user(store, "bob@example.org", "pw")
    assert await ops.remove_user(store, "BOB@example.org") == "bob@example.org"
    assert await store.get_account("bob@example.org") is None
    with pytest.raises(AdminError, match="^no user bob@example.org"):
        await ops.remove_user(store, "bob@example.org")


async def test_list_users_with_usage(store: MailStore, domain: str) -> None:
    bob = await ops.add_user(store, "bob@example.org", "pw", 1024)
    alice = await ops.add_user(store, "alice@example.org", "pw")
    writer = store.blobs.writer()
    writer.write(b"Subject: hi\r\n\r\nhello\r\n")
    blob = await writer.finish()
    await store.deliver(blob, [DeliveryTarget(bob.id)])
    users = await ops.list_users(store)
    assert [(account.address, usage) for account, usage in users] == [
        (alice.address, Usage(size=0, messages=0)),
        (bob.address, Usage(size=blob.size, messages=1)),
    ]
    assert users[1][0].quota_bytes == 1024


# --- aliases ---------------------------------------------------------------------------------


async def test_alias_lifecycle(store: MailStore, domain: str) -> None:
    await ops.add_user(store, "alice@example.org", "pw")
    assert await ops.add_alias(store, "Postmaster@Example.org", "ALICE@example.org") == (
        "postmaster@example.org", "alice@example.org")
    await ops.add_alias(store, "postmaster@example.org", "admin@elsewhere.example")
    await ops.add_alias(store, "@example.org", "alice@example.org")
    assert await ops.list_aliases(store) == [
        Alias("@example.org", "alice@example.org"),
        Alias("postmaster@example.org", "admin@elsewhere.example"),
        Alias("postmaster@example.org", "alice@example.org"),
    ]
    assert await ops.remove_alias(store, "Postmaster@example.org", "Admin@elsewhere.example") == (
        "postmaster@example.org", "admin@elsewhere.example")
    assert await store.alias_targets("postmaster@example.org") == ["alice@example.org"]
    assert await ops.remove_alias(store, "@EXAMPLE.org") == ("@example.org", None)
    assert await ops.list_aliases(store) == [
        Alias("postmaster@example.org", "alice@example.org")]


async def test_remove_alias_without_target_removes_every_target(
        store: MailStore, domain: str) -> None:
    await ops.add_alias(store, "team@example.org", "a@elsewhere.example")
    await ops.add_alias(store, "team@example.org", "b@elsewhere.example")
    await ops.remove_alias(store, "team@example.org")
    assert await ops.list_aliases(store) == []


async def test_add_alias_twice(store: MailStore, domain: str) -> None:
    await ops.add_alias(store, "info@example.org", "a@elsewhere.example")
    with pytest.raises(AdminError,
                       match="^alias info@example.org -> a@elsewhere.example exists already$"):
        await ops.add_alias(store, "info@example.org", "A@elsewhere.example")


async def test_add_alias_in_unknown_domain(store: MailStore) -> None:
    with pytest.raises(AdminError, match="^domain example.org is not a local domain; add it"):
        await ops.add_alias(store, "@example.org", "a@elsewhere.example")


async def test_add_alias_at_a_user_address(store: MailStore, domain: str) -> None:
    await ops.add_user(store, "alice@example.org", "pw")
    with pytest.raises(AdminError, match="is a user"):
        await ops.add_alias(store, "alice@example.org", "a@elsewhere.example")


async def test_add_alias_to_itself(store: MailStore, domain: str) -> None:
    with pytest.raises(AdminError, match="cannot point to itself"):
        await ops.add_alias(store, "loop@example.org", "LOOP@example.org")


async def test_add_alias_rejects_bad_names(store: MailStore, domain: str) -> None:
    with pytest.raises(AdminError, match="invalid address"):
        await ops.add_alias(store, "info@example.org", "not-an-address")
    with pytest.raises(AdminError, match="invalid domain"):
        await ops.add_alias(store, "@-bad.example", "a@elsewhere.example")
    assert await ops.list_aliases(store) == []


async def test_remove_unknown_alias(store: MailStore, domain: str) -> None:
    with pytest.raises(AdminError, match="^no alias info@example.org; see: mailpost alias list$"):
        await ops.remove_alias(store, "info@example.org")
    await ops.add_alias(store, "info@example.org", "a@elsewhere.example")
    with pytest.raises(AdminError, match="^no alias info@example.org -> b@elsewhere.example"):
        await ops.remove_alias(store, "info@example.org", "b@elsewhere.example")


# --- first run -------------------------------------------------------------------------------


async def test_first_run_creates_demo_user_once(store: MailStore) -> None:
    created = await ops.ensure_first_run(store)
    assert created is not None
    address, password = created
    assert address == "demo@example.test"
    assert len(password) >= 16
    account = await store.get_account(address)
    assert account is not None and verify_password(account.password_hash, password)
    assert await ops.list_domains(store) == ["example.test"]
    assert await ops.ensure_first_run(store) is None
    assert len(await store.list_accounts()) == 1


async def test_first_run_passwords_differ(store: MailStore) -> None:
    first = await ops.ensure_first_run(store)
    assert first is not None
    await ops.remove_user(store, first[0])
    second = await ops.ensure_first_run(store)  # the domain exists already this time
    assert second is not None and second[1] != first[1]


async def test_first_run_does_nothing_when_users_exist(store: MailStore, domain: str) -> None:
    await ops.add_user(store, "alice@example.org", "pw")
    assert await ops.ensure_first_run(store) is None
    assert await ops.list_domains(store) == [DOMAIN]
