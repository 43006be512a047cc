"""``mailpost deliver``: local delivery from a pipe, with sysexits statuses."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailpost.bus import LocalBus
from mailpost.delivery.lda import Request, Status, deliver_stream
from mailpost.store import open_store
from mailpost.store.errors import StoreUnavailable
from mailpost.store.interface import MailStore

MESSAGE = b"From: a@remote.test\nSubject: piped\n\nline one\n.dot line\n"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[MailStore]:
    opened = await open_store(tmp_path / "data", LocalBus())
    await opened.add_domain("example.test")
    for user in ("alice", "bob"):
        await opened.add_account(f"{user}@example.test", "hash")
    await opened.add_alias("team@example.test", "alice@example.test")
    await opened.add_alias("team@example.test", "bob@example.test")
    await opened.add_alias("away@example.test", "someone@remote.test")
    yield opened
    await opened.close()


async def folder(store: MailStore, address: str, name: str = "INBOX") -> list[bytes]:
    account = await store.get_account(address)
    assert account is not None
    info = await store.get_mailbox(account.id, name)
    assert info is not None
    return [await store.blobs.read(meta.blob_id) for meta in await store.messages(info.id)]


def request(*recipients: str, **options: object) -> Request:
    return Request(recipients=recipients, hostname="mail.example.test", **options)  # type: ignore[arg-type]


async def test_a_piped_message_is_stored_with_crlf_and_trace_fields(store: MailStore) -> None:
    piped = b"From a@remote.test Thu Nov 26 10:00:00 2026\n" + MESSAGE
    outcome = await deliver_stream(store, request("alice@example.test", sender="a@remote.test"),
                                   io.BytesIO(piped))
    assert outcome.status is Status.OK
    [stored] = await folder(store, "alice@example.test")
    assert stored.startswith(b"Return-Path: <a@remote.test>\r\nReceived: by mail.example.test"
                             b" (mailpost) with local id ")
    assert stored.endswith(b"\r\n" + MESSAGE.replace(b"\n", b"\r\n"))  # no mbox "From " line
    assert b"\n" not in stored.replace(b"\r\n", b"")


async def test_aliases_fan_out_and_each_account_gets_one_copy(store: MailStore) -> None:
    outcome = await deliver_stream(store, request("team@example.test", "alice+tag@example.test"),
                                   io.BytesIO(MESSAGE))
    assert outcome.status is Status.OK
    assert len(await folder(store, "alice@example.test")) == 1
    assert len(await folder(store, "bob@example.test")) == 1


async def test_a_folder_is_used_when_it_exists_else_inbox(store: MailStore) -> None:
    await deliver_stream(store, request("alice@example.test", mailbox="Archive"),
                         io.BytesIO(MESSAGE))
    await deliver_stream(store, request("alice@example.test", mailbox="No/Such"),
                         io.BytesIO(MESSAGE))
    assert len(await folder(store, "alice@example.test", "Archive")) == 1
    assert len(await folder(store, "alice@example.test")) == 1


@pytest.mark.parametrize(("recipient", "words"), [
    ("nobody@example.test", "unknown"),
    ("someone@remote.test", "not a local address"),
    ("away@example.test", "remote"),
])
async def test_recipients_that_are_not_local_accounts_are_nouser(
        store: MailStore, recipient: str, words: str) -> None:
    outcome = await deliver_stream(store, request("alice@example.test", recipient),
                                   io.BytesIO(MESSAGE))
    assert outcome.status is Status.NOUSER and words in outcome.detail
    assert await folder(store, "alice@example.test") == []  # all or nothing


async def test_too_large_or_empty_is_dataerr(store: MailStore) -> None:
    big = await deliver_stream(store, request("alice@example.test", max_size=100),
                               io.BytesIO(MESSAGE * 10))
    empty = await deliver_stream(store, request("alice@example.test"), io.BytesIO(b""))
    assert (big.status, empty.status) == (Status.DATAERR, Status.DATAERR)
    assert await folder(store, "alice@example.test") == []


async def test_store_trouble_is_tempfail(store: MailStore,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("disk full")

    monkeypatch.setattr(store, "deliver", broken)
    outcome = await deliver_stream(store, request("alice@example.test"), io.BytesIO(MESSAGE))
    assert outcome.status is Status.TEMPFAIL and "disk full" in outcome.detail
