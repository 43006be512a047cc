"""Conformance: mailbox names, create/rename/delete, UIDVALIDITY, subscriptions."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime

import pytest

from mailpost.store.errors import AlreadyExists, InvalidName, NotFound
from mailpost.store.interface import MailStore
from mailpost.store.types import Account, MailboxInfo
from tests.store.helpers import mailbox, put_body

BAD_NAMES = [
    pytest.param("", id="empty"),
    pytest.param("/x", id="leading-slash"),
    pytest.param("x/", id="trailing-slash"),
    pytest.param("/", id="only-slash"),
    pytest.param("a//b", id="empty-component"),
    pytest.param(".", id="dot"),
    pytest.param("..", id="dotdot"),
    pytest.param("../x", id="parent-prefix"),
    pytest.param("a/../../b", id="parent-inside"),
    pytest.param("INBOX/..", id="inbox-parent"),
    pytest.param("a/./b", id="dot-component"),
    pytest.param("a\x00b", id="NUL"),
    pytest.param("a\rb", id="CR"),
    pytest.param("a\nb", id="LF"),
    pytest.param("a\tb", id="TAB"),
    pytest.param("a\x7fb", id="DEL"),
    pytest.param("a\x85b", id="C1-NEL"),
    pytest.param("x" * 2000, id="2000-bytes"),
    pytest.param("\u00e9" * 501, id="1002-utf8-bytes"),
    pytest.param("a\ud800b", id="lone-surrogate"),
]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_invalid_names_are_refused_everywhere(store: MailStore, alice: Account,
                                                    name: str) -> None:
    with pytest.raises(InvalidName):
        await store.create_mailbox(alice.id, name)
    with pytest.raises(InvalidName):
        await store.rename_mailbox(alice.id, "Archive", name)
    with pytest.raises(InvalidName):
        await store.set_subscribed(alice.id, name, True)
    assert await store.get_mailbox(alice.id, name) is None
    with pytest.raises(NotFound):
        await store.delete_mailbox(alice.id, name)
    assert len(await store.list_mailboxes(alice.id)) == 6


async def test_longest_allowed_name(store: MailStore, alice: Account) -> None:
    name = "x" * 1000
    created = await store.create_mailbox(alice.id, name)
    assert created.name == name


async def test_names_are_data_not_paths(store: MailStore, alice: Account) -> None:
    for name in ("a b", "%*", "#news", "&-", "Entwürfe", "x.y", "...", "a/.hidden"):
        created = await store.create_mailbox(alice.id, name)
        assert created.name == name
        assert await mailbox(store, alice.id, name) == created


async def test_names_are_normalised_to_nfc(store: MailStore, alice: Account) -> None:
    decomposed = unicodedata.normalize("NFD", "Entwürfe")
    created = await store.create_mailbox(alice.id, decomposed)
    assert created.name == "Entwürfe"
    assert await mailbox(store, alice.id, "Entwürfe") == created
    assert await mailbox(store, alice.id, decomposed) == created


async def test_inbox_is_case_insensitive(store: MailStore, alice: Account,
                                         inbox: MailboxInfo) -> None:
    assert inbox.name == "INBOX"
    for spelling in ("inbox", "InBoX", "INBOX"):
        assert await mailbox(store, alice.id, spelling) == inbox
    with pytest.raises(AlreadyExists):
        await store.create_mailbox(alice.id, "Inbox")
    child = await store.create_mailbox(alice.id, "inbox/Work")
    assert child.name == "INBOX/Work"
    assert await store.get_mailbox(alice.id, "INBOX/work") is None  # only the prefix folds


async def test_create_list_and_duplicates(store: MailStore, alice: Account) -> None:
    created = await store.create_mailbox(alice.id, "Projects/2024", "\\Flagged")
    assert created.special_use == "\\Flagged"
    assert (created.uidnext, created.highest_modseq, created.messages) == (1, 1, 0)
    assert not created.subscribed
    with pytest.raises(AlreadyExists):
        await store.create_mailbox(alice.id, "Projects/2024")
    names = [box.name for box in await store.list_mailboxes(alice.id)]
    assert names == sorted(names)
    assert "Projects/2024" in names
    with pytest.raises(NotFound):
        await store.create_mailbox(alice.id + 1000, "Orphan")


async def test_mailboxes_are_per_account(store: MailStore, alice: Account,
                                         bob: Account) -> None:
    await store.create_mailbox(alice.id, "Private")
    assert await store.get_mailbox(bob.id, "Private") is None
    await store.create_mailbox(bob.id, "Private")
    assert (await mailbox(store, bob.id, "Private")).account_id == bob.id


async def test_delete_and_recreate_gets_new_higher_uidvalidity(store: MailStore,
                                                               alice: Account) -> None:
    first = await store.create_mailbox(alice.id, "Lists")
    body = await put_body(store)
    await store.append(alice.id, first.id, body, frozenset(), datetime.now(UTC))
    await store.delete_mailbox(alice.id, "Lists")
    assert await store.get_mailbox(alice.id, "Lists") is None
    second = await store.create_mailbox(alice.id, "Lists")
    assert second.uidvalidity > first.uidvalidity
    assert second.id != first.id
    assert second.messages == 0
    with pytest.raises(NotFound):
        await store.messages(first.id)


async def test_uidvalidity_strictly_increases_across_creations(store: MailStore,
                                                               alice: Account) -> None:
    values = [(await store.create_mailbox(alice.id, f"box{i}")).uidvalidity for i in range(5)]
    assert values == sorted(values)
    assert len(set(values)) == 5


async def test_delete_errors_and_children_survive(store: MailStore, alice: Account) -> None:
    await store.create_mailbox(alice.id, "a")
    await store.create_mailbox(alice.id, "a/b")
    await store.delete_mailbox(alice.id, "a")
    assert await store.get_mailbox(alice.id, "a") is None
    assert await store.get_mailbox(alice.id, "a/b") is not None
    with pytest.raises(NotFound):
        await store.delete_mailbox(alice.id, "a")
    with pytest.raises(InvalidName):  # RFC 9051 §6.3.5
        await store.delete_mailbox(alice.id, "inbox")
    assert await store.get_mailbox(alice.id, "INBOX") is not None


async def test_rename_moves_children_and_keeps_uidvalidity_and_messages(
        store: MailStore, alice: Account) -> None:
    before = {name: await store.create_mailbox(alice.id, name)
              for name in ("a", "a/x", "a/x/y", "ab")}
    body = await put_body(store)
    meta = await store.append(alice.id, before["a/x"].id, body, frozenset({"\\Seen"}),
                              datetime.now(UTC))
    before["a/x"] = await mailbox(store, alice.id, "a/x")
    await store.set_subscribed(alice.id, "a/x", True)
    await store.rename_mailbox(alice.id, "a", "b")
    for old, new in (("a", "b"), ("a/x", "b/x"), ("a/x/y", "b/x/y")):
        assert await store.get_mailbox(alice.id, old) is None
        renamed = await mailbox(store, alice.id, new)
        assert (renamed.id, renamed.uidvalidity, renamed.uidnext) == \
            (before[old].id, before[old].uidvalidity, before[old].uidnext)
    assert await mailbox(store, alice.id, "ab") == before["ab"]  # a sibling, not a child
    assert await store.messages(before["a/x"].id) == [meta]
    assert "b/x" in await store.subscriptions(alice.id)
    assert "a/x" not in await store.subscriptions(alice.id)


async def test_rename_errors(store: MailStore, alice: Account) -> None:
    await store.create_mailbox(alice.id, "a")
    await store.create_mailbox(alice.id, "a/child")
    await store.create_mailbox(alice.id, "b")
    await store.create_mailbox(alice.id, "c/child")
    with pytest.raises(NotFound):
        await store.rename_mailbox(alice.id, "missing", "z")
    with pytest.raises(AlreadyExists):
        await store.rename_mailbox(alice.id, "a", "b")
    with pytest.raises(AlreadyExists):  # a/child would land on the existing c/child
        await store.rename_mailbox(alice.id, "a", "c")
    with pytest.raises(InvalidName):
        await store.rename_mailbox(alice.id, "a", "a/child/deeper")
    with pytest.raises(InvalidName):  # RFC 9051 §6.3.9: the IMAP layer does INBOX itself
        await store.rename_mailbox(alice.id, "INBOX", "Old")
    names = {box.name for box in await store.list_mailboxes(alice.id)}
    assert {"a", "a/child", "b", "c/child"} <= names
    assert "c" not in names


async def test_subscriptions_may_name_missing_mailboxes(store: MailStore,
                                                        alice: Account) -> None:
    await store.set_subscribed(alice.id, "Not/There", True)
    await store.set_subscribed(alice.id, "Not/There", True)  # idempotent
    await store.set_subscribed(alice.id, "Junk", False)
    await store.set_subscribed(alice.id, "Never", False)
    subscribed = await store.subscriptions(alice.id)
    assert "Not/There" in subscribed
    assert "Junk" not in subscribed
    assert not (await mailbox(store, alice.id, "Junk")).subscribed
    created = await store.create_mailbox(alice.id, "Not/There")
    assert created.subscribed
