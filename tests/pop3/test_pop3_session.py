"""The POP3 session's failure paths, driven through a scripted connection and a real store:
store trouble at login, during RETR and at QUIT; connection loss; lock release on every exit.
Also the maildrop snapshot, the lock, and the purity of the sans-I/O core."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mailpost.auth.authenticator import Authenticator
from mailpost.auth.passwords import hash_password
from mailpost.auth.ratelimit import AuthThrottle
from mailpost.bus import LocalBus
from mailpost.config import Config, LimitsConfig
from mailpost.net.listener import AccountSessionLimiter, ConnectionLost
from mailpost.pop3 import session as pop3_session
from mailpost.pop3.locks import MaildropLocks
from mailpost.pop3.maildrop import Maildrop
from mailpost.pop3.session import POP3Services, POP3Session
from mailpost.store import open_store
from mailpost.store.errors import StoreUnavailable
from mailpost.store.interface import MailStore
from mailpost.store.types import Account, DeliveryTarget, FlagMode, MessageMeta

ALICE = "alice@example.test"
PASSWORD = "s3cret-pass"
LOGIN = f"USER {ALICE}\r\nPASS {PASSWORD}\r\n".encode()
MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


class ScriptedConnection:
    """Stands in for net.Connection: hands out scripted reads, records writes."""

    def __init__(self, reads: Sequence[bytes | Exception], *, tls: bool = True) -> None:
        self.reads: deque[bytes | Exception] = deque(reads)
        self.output = bytearray()
        self.tls_active = tls
        self.remote_ip = "192.0.2.7"

    async def read(self, timeout: float) -> bytes:
        item = self.reads.popleft() if self.reads else b""
        if isinstance(item, Exception):
            raise item
        return item

    def write(self, data: bytes) -> None:
        self.output += data

    async def flush(self, timeout: float) -> None:
        return None

    def lines(self) -> list[bytes]:
        return bytes(self.output).split(b"\r\n")


class FlakyStore:
    """A store whose chosen methods fail with StoreUnavailable; everything else passes through."""

    def __init__(self, store: MailStore, failing: set[str]) -> None:
        self._store = store
        self.failing = failing

    def __getattr__(self, name: str) -> Any:
        if name in self.failing:
            async def fail(*args: object, **kwargs: object) -> None:
                raise StoreUnavailable(f"{name} failed")
            return fail
        return getattr(self._store, name)


@dataclass
class Setup:
    store: MailStore
    services: POP3Services
    account: Account

    def session(self, reads: Sequence[bytes | Exception],
                store: object | None = None) -> tuple[POP3Session, ScriptedConnection]:
        connection = ScriptedConnection(reads)
        services = replace(self.services, store=store or self.store)  # type: ignore[arg-type]
        return POP3Session(connection, services), connection  # type: ignore[arg-type]

    async def deliver(self, body: bytes = MESSAGE) -> MessageMeta:
        writer = self.store.blobs.writer()
        writer.write(body)
        outcome = await self.store.deliver(await writer.finish(),
                                           [DeliveryTarget(self.account.id)])
        return outcome.local[0]

    async def inbox(self) -> list[MessageMeta]:
        info = await self.store.get_mailbox(self.account.id, "INBOX")
        assert info is not None
        return await self.store.messages(info.id)


@functools.cache
def password_hash() -> str:
    return hash_password(PASSWORD)  # argon2 is slow on purpose: once per test run


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    store = await open_store(tmp_path / "data", LocalBus())
    await store.add_domain("example.test")
    account = await store.add_account(ALICE, password_hash())
    limits = replace(LimitsConfig(), auth_fail_delay=0.01, auth_fail_delay_max=0.02)
    config = replace(Config(), limits=limits)
    throttle = AuthThrottle.from_limits(limits)
    services = POP3Services(config, store, Authenticator(store, throttle), throttle, None,
                            AccountSessionLimiter(5), MaildropLocks())
    yield Setup(store, services, account)
    await store.close()


def assert_released(setup: Setup) -> None:
    assert not setup.services.locks.held(setup.account.id)
    assert setup.services.account_sessions.acquire(setup.account.id)  # a slot is free again
    setup.services.account_sessions.release(setup.account.id)


async def test_login_reads_the_snapshot_and_quit_releases(setup: Setup) -> None:
    await setup.deliver()
    session, connection = setup.session([LOGIN + b"STAT\r\nQUIT\r\n"])
    await session.run()
    lines = connection.lines()
    assert lines[2] == f"+OK maildrop has 1 messages ({len(MESSAGE)} octets)".encode()
    assert lines[3] == f"+OK 1 {len(MESSAGE)}".encode()
    assert_released(setup)


async def test_store_unavailable_at_login_is_sys_temp_and_releases_the_lock(
        setup: Setup) -> None:
    flaky = FlakyStore(setup.store, {"messages"})
    session, connection = setup.session([LOGIN + b"QUIT\r\n"], store=flaky)
    await session.run()
    assert connection.lines()[2] == b"-ERR [SYS/TEMP] maildrop unavailable, try again later"
    assert_released(setup)


async def test_update_failure_reports_and_keeps_the_messages(setup: Setup) -> None:
    await setup.deliver()
    flaky = FlakyStore(setup.store, {"expunge"})
    session, connection = setup.session([LOGIN + b"DELE 1\r\nQUIT\r\n"], store=flaky)
    await session.run()
    assert connection.lines()[-2] == (
        b"-ERR [SYS/TEMP] some deleted messages not removed, try again later")
    assert len(await setup.inbox()) == 1
    assert_released(setup)


async def test_quit_expunges_in_one_call(setup: Setup) -> None:
    for _ in range(3):
        await setup.deliver()
    calls: list[tuple[int, list[int]]] = []
    original = setup.store.expunge

    async def counting(mailbox_id: int, uids: Sequence[int]) -> list[int]:
        calls.append((mailbox_id, list(uids)))
        return await original(mailbox_id, uids)

    spy = FlakyStore(setup.store, set())
    spy.expunge = counting  # type: ignore[attr-defined]
    session, _ = setup.session([LOGIN + b"DELE 3\r\nDELE 1\r\nQUIT\r\n"], store=spy)
    await session.run()
    assert len(calls) == 1 and calls[0][1] == [1, 3]
    assert [meta.uid for meta in await setup.inbox()] == [2]


async def test_body_store_trouble_is_sys_temp_and_the_session_goes_on(setup: Setup) -> None:
    await setup.deliver()

    class BrokenBlobs:
        def open(self, ref: object) -> None:
            raise StoreUnavailable("disk on fire")

        async def read(self, ref: object) -> bytes:
            raise StoreUnavailable("disk on fire")

    flaky = FlakyStore(setup.store, set())
    flaky.blobs = BrokenBlobs()  # type: ignore[attr-defined]
    session, connection = setup.session([LOGIN + b"RETR 1\r\nNOOP\r\nQUIT\r\n"], store=flaky)
    await session.run()
    assert connection.lines()[3:5] == [b"-ERR [SYS/TEMP] maildrop unavailable, try again later",
                                       b"+OK"]


async def test_unreadable_body_mid_stream_drops_the_connection(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pop3_session, "WHOLE_MESSAGE_MAX", 0)  # force the streaming path
    await setup.deliver()

    class FailingFile:
        def read(self, size: int) -> bytes:
            raise OSError("EIO")

        def close(self) -> None:
            return None

    class Blobs:
        def open(self, ref: object) -> FailingFile:
            return FailingFile()

    flaky = FlakyStore(setup.store, set())
    flaky.blobs = Blobs()  # type: ignore[attr-defined]
    await setup.deliver()
    session, connection = setup.session([LOGIN + b"DELE 1\r\nRETR 2\r\nQUIT\r\n"],
                                        store=flaky)
    with pytest.raises(ConnectionLost):
        await session.run()
    assert connection.lines()[-2] == f"+OK {len(MESSAGE)} octets".encode()
    assert len(await setup.inbox()) == 2  # QUIT was never reached: no UPDATE
    assert_released(setup)


async def test_flag_update_failure_does_not_fail_retr(setup: Setup) -> None:
    await setup.deliver()
    flaky = FlakyStore(setup.store, {"store_flags"})
    session, connection = setup.session([LOGIN + b"RETR 1\r\nQUIT\r\n"], store=flaky)
    await session.run()
    assert connection.lines()[3] == f"+OK {len(MESSAGE)} octets".encode()
    assert bytes(connection.output).count(b"\r\n.\r\n") == 1


async def test_retr_adds_seen_and_keeps_other_flags(setup: Setup) -> None:
    delivered = await setup.deliver()
    await setup.store.store_flags(delivered.mailbox_id, [delivered.uid], FlagMode.ADD,
                                  frozenset({"$Forwarded"}))
    session, _ = setup.session([LOGIN + b"RETR 1\r\nRETR 1\r\nQUIT\r\n"])
    await session.run()
    [stored] = await setup.inbox()
    assert stored.flags == {"$Forwarded", "\\Seen"}


class CountingBlobs:
    """Passes body reads through to the real store, counting the calls of each kind."""

    def __init__(self, blobs: Any) -> None:
        self._blobs = blobs
        self.reads = 0
        self.batches: list[int] = []

    async def read(self, ref: Any, start: int = 0, end: int | None = None) -> bytes:
        self.reads += 1
        data: bytes = await self._blobs.read(ref, start, end)
        return data

    async def read_many(self, refs: Sequence[Any]) -> dict[str, bytes]:
        self.batches.append(len(refs))
        found: dict[str, bytes] = await self._blobs.read_many(refs)
        return found


READY = b"Subject: ready\r\n\r\nplain\r\n"
NEEDS_WORK = [b"Subject: dots\r\n\r\n.dot line\r\n", b"Subject: bare\n\nbare lf\n"]


async def test_pipelined_retr_lines_are_read_in_one_store_call_and_sent_byte_exact(
        setup: Setup) -> None:
    bodies = [READY, *NEEDS_WORK, READY]
    for body in bodies:
        await setup.deliver(body)
    spy = FlakyStore(setup.store, set())
    spy.blobs = counting = CountingBlobs(setup.store.blobs)  # type: ignore[attr-defined]
    retrs = b"".join(b"RETR %d\r\n" % number for number in range(1, 5))
    session, connection = setup.session([LOGIN + retrs + b"QUIT\r\n"], store=spy)
    await session.run()
    assert counting.batches == [4] and counting.reads == 0
    wire = bytes(connection.output)
    expected = [b"Subject: ready\r\n\r\nplain\r\n.\r\n",
                b"Subject: dots\r\n\r\n..dot line\r\n.\r\n",
                b"Subject: bare\r\n\r\nbare lf\r\n.\r\n",
                b"Subject: ready\r\n\r\nplain\r\n.\r\n"]
    responses = [f"+OK {len(body)} octets\r\n".encode() + sent
                 for body, sent in zip(bodies, expected)]
    assert b"".join(responses) in wire
    assert session.read_ahead == {}
    assert all("\\Seen" in meta.flags for meta in await setup.inbox())


async def test_a_message_expunged_before_the_batch_read_is_err_and_the_rest_arrive(
        setup: Setup) -> None:
    for _ in range(3):
        await setup.deliver()
    session, connection = setup.session([LOGIN, b"RETR 1\r\nRETR 2\r\nRETR 3\r\nQUIT\r\n"])
    original_read = connection.read

    async def expunge_then_read(timeout: float) -> bytes:
        if len(connection.reads) == 1:  # logged in: another session removes message 2
            [_, second, _] = await setup.inbox()
            await setup.store.expunge(second.mailbox_id, [second.uid])
        return await original_read(timeout)

    connection.read = expunge_then_read  # type: ignore[method-assign]
    await session.run()
    lines = connection.lines()
    assert lines.count(f"+OK {len(MESSAGE)} octets".encode()) == 2
    assert b"-ERR no such message: it was removed by another session" in lines


async def test_seen_is_written_once_at_quit_and_not_for_deleted_messages(setup: Setup) -> None:
    first, second = await setup.deliver(), await setup.deliver()
    calls: list[list[int]] = []
    original = setup.store.store_flags

    async def counting(mailbox_id: int, uids: Sequence[int], *args: Any) -> Any:
        calls.append(list(uids))
        return await original(mailbox_id, uids, *args)

    spy = FlakyStore(setup.store, set())
    spy.store_flags = counting  # type: ignore[attr-defined]
    session, _ = setup.session([LOGIN + b"RETR 1\r\nRETR 2\r\nDELE 1\r\nQUIT\r\n"], store=spy)
    await session.run()
    assert calls == [[second.uid]]
    assert [meta.uid for meta in await setup.inbox()] == [second.uid]
    assert first.uid != second.uid


async def test_connection_loss_releases_the_lock_and_deletes_nothing(setup: Setup) -> None:
    await setup.deliver()
    session, _ = setup.session([LOGIN + b"DELE 1\r\n", ConnectionLost("reset")])
    with pytest.raises(ConnectionLost):
        await session.run()
    assert len(await setup.inbox()) == 1
    assert_released(setup)


async def test_no_starttls_without_a_tls_context(setup: Setup) -> None:
    session, connection = setup.session([b"CAPA\r\nSTLS\r\nQUIT\r\n"])
    connection.tls_active = False
    session.proto = type(session.proto)(tls_available=False)
    await session.run()
    assert b"STLS\r\n" not in bytes(connection.output)
    assert b"-ERR [SYS/PERM] TLS is not available\r\n" in bytes(connection.output)


# --- the snapshot and the lock --------------------------------------------------------------------


def meta(uid: int, size: int = 10, flags: frozenset[str] = frozenset()) -> MessageMeta:
    return MessageMeta(mailbox_id=1, uid=uid, modseq=1, flags=flags,
                       internal_date=datetime(2026, 1, 1, tzinfo=UTC), size=size,
                       blob_id=f"{uid:032x}")


def test_maildrop_numbers_messages_by_uid_and_hides_deleted_ones() -> None:
    drop = Maildrop(1, 777, [meta(9, 5), meta(3, 7), meta(4, 11, frozenset({"\\Seen"}))])
    assert drop.scan_listing() == ("1 7", "2 11", "3 5")
    assert drop.unique_id_listing() == ("1 777.3", "2 777.4", "3 777.9")
    assert drop.stat() == (3, 23)
    assert drop.get(0) is None and drop.get(4) is None
    assert drop.delete(2) and not drop.delete(2)
    assert drop.get(2) is None
    assert drop.stat() == (2, 12)
    assert drop.scan_listing() == ("1 7", "3 5")
    assert drop.deleted_uids() == [4]
    drop.reset()
    assert drop.stat() == (3, 23) and drop.deleted_uids() == []
    first = drop.get(1)
    second = drop.get(2)
    assert first is not None and second is not None
    assert not drop.is_seen(first) and drop.is_seen(second)
    drop.mark_seen(first)
    assert drop.is_seen(first)


def test_maildrop_locks_are_exclusive_per_account() -> None:
    locks = MaildropLocks()
    assert locks.acquire(1) and not locks.acquire(1) and locks.acquire(2)
    locks.release(1)
    locks.release(1)  # harmless
    assert locks.acquire(1)


def test_the_protocol_core_does_no_io() -> None:
    code = ("import sys; import mailpost.pop3.protocol; "
            "print([m for m in ('asyncio', 'ssl', 'socket', 'mailpost.store', 'mailpost.net', "
            "'mailpost.auth') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=30)
    assert result.stdout.strip() == "[]"
