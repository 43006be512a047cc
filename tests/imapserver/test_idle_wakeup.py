"""IDLE's one waiting point (RFC 2177): a wait ends on the client's input or on the bus, input
wins a tie, a late callback of an earlier read never wakes a later wait; and, over the wire,
the behaviour around it: DONE split around a push, input other than DONE, the idle deadline."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from mailpost.bus import Change, ChangeKind, LocalBus, Subscription
from mailpost.imap.handlers.connection import IdleWakeup
from tests.e2e.harness import ServerThread, make_config
from tests.imapserver.helpers import RawIMAP, deliver

MESSAGE = b"From: a@example.test\r\nSubject: hi\r\n\r\nbody\r\n"


def change(account: int = 1) -> Change:
    return Change(account, 10, 2, ChangeKind.MESSAGE_NEW)


def pending_read() -> asyncio.Future[bytes]:
    return asyncio.get_running_loop().create_future()


async def start_wait(wakeup: IdleWakeup, reader: asyncio.Future[bytes],
                     subscription: Subscription | None) -> asyncio.Task[bool]:
    waiting = asyncio.ensure_future(wakeup.input_or_change(reader, subscription))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not waiting.done(), "nothing has happened yet"
    return waiting


async def test_a_change_ends_the_wait_with_false() -> None:
    bus = LocalBus()
    with bus.subscribe(1) as subscription:
        wakeup, reader = IdleWakeup(), pending_read()
        reader.add_done_callback(wakeup.ring)
        waiting = await start_wait(wakeup, reader, subscription)
        bus.publish(change(2))  # another account: not this session's doorbell
        await asyncio.sleep(0)
        assert not waiting.done()
        bus.publish(change(1))
        assert await asyncio.wait_for(waiting, 1) is False
        assert subscription.take() == ([change(1)], False), "waiting takes nothing"


async def test_input_ends_the_wait_with_true() -> None:
    bus = LocalBus()
    with bus.subscribe(1) as subscription:
        wakeup, reader = IdleWakeup(), pending_read()
        reader.add_done_callback(wakeup.ring)
        waiting = await start_wait(wakeup, reader, subscription)
        reader.set_result(b"DONE\r\n")
        assert await asyncio.wait_for(waiting, 1) is True
        # The future the subscription handed out was answered by the input, so it is dropped
        # at the next wait instead of piling up.
        subscription.wait_ready().cancel()
        assert len(subscription._waiters) == 1


async def test_input_wins_when_both_are_ready() -> None:
    bus = LocalBus()
    with bus.subscribe(1) as subscription:
        wakeup, reader = IdleWakeup(), pending_read()
        reader.add_done_callback(wakeup.ring)
        bus.publish(change(1))
        reader.set_result(b"DONE\r\n")
        assert await wakeup.input_or_change(reader, subscription) is True
        assert subscription.ready, "the change is still there for the next catch-up"


async def test_queued_changes_end_the_wait_at_once() -> None:
    bus = LocalBus()
    with bus.subscribe(1) as subscription:
        wakeup, reader = IdleWakeup(), pending_read()
        bus.publish(change(1))
        assert await asyncio.wait_for(wakeup.input_or_change(reader, subscription), 1) is False


async def test_a_late_callback_of_an_earlier_read_does_not_wake_a_later_wait() -> None:
    bus = LocalBus()
    with bus.subscribe(1) as subscription:
        wakeup = IdleWakeup()
        earlier, later = pending_read(), pending_read()
        earlier.set_result(b"DO")
        waiting = await start_wait(wakeup, later, subscription)
        wakeup.ring(earlier)
        await asyncio.sleep(0)
        assert not waiting.done()
        wakeup.ring(later)  # as if ``later`` had finished
        assert await asyncio.wait_for(waiting, 1) is False  # woken, but no input yet


async def test_without_a_subscription_only_input_ends_the_wait() -> None:
    wakeup, reader = IdleWakeup(), pending_read()
    reader.add_done_callback(wakeup.ring)
    waiting = await start_wait(wakeup, reader, None)
    reader.set_result(b"DONE\r\n")
    assert await asyncio.wait_for(waiting, 1) is True


async def test_a_session_going_away_leaves_no_waiter_behind() -> None:
    bus = LocalBus()
    with bus.subscribe(1) as subscription:
        for _ in range(100):
            wakeup, reader = IdleWakeup(), pending_read()
            waiting = await start_wait(wakeup, reader, subscription)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            assert waiting.cancelled()
        last = subscription.wait_ready()
        assert subscription._waiters == [last]


# -- over the wire ----------------------------------------------------------------------------


def idling(server: ServerThread) -> RawIMAP:
    client = RawIMAP(server)
    client.login()
    client.ok("SELECT INBOX")
    client.send(b"i IDLE\r\n")
    assert client.read_response().startswith(b"+ ")
    return client


def test_done_split_around_pushes(server: ServerThread) -> None:
    client = idling(server)
    client.send(b"DO")
    deliver(server, "alice@example.test", MESSAGE)
    assert client.read_response() == b"* 1 EXISTS"
    deliver(server, "alice@example.test", MESSAGE)
    assert client.read_response() == b"* 2 EXISTS"
    client.send(b"NE\r\n")
    assert client.read_response() == b"i OK IDLE terminated"
    deliver(server, "alice@example.test", MESSAGE)
    untagged = client.ok("NOOP")
    assert untagged == [b"* 3 EXISTS"], "after IDLE, changes wait for the next command"


def test_input_other_than_done_ends_idle_with_bad(server: ServerThread) -> None:
    client = idling(server)
    client.send(b"NOOP\r\n")
    assert client.read_response().startswith(b"i BAD ")
    assert client.command("NOOP")[1].startswith(b"t3 OK")


def test_an_idle_past_its_deadline_is_closed(tmp_path: Path) -> None:
    config = make_config(tmp_path / "var")
    config = replace(config, imap=replace(config.imap, idle_timeout=0.5))
    with ServerThread(config) as server:
        server.add_user("alice@example.test")
        client = idling(server)
        started = time.monotonic()
        client.sock.settimeout(10)
        rest = b""
        try:
            while chunk := client.sock.recv(4096):
                rest += chunk
        except TimeoutError as exc:
            raise AssertionError("the server should have closed the connection") from exc
        assert 0.4 < time.monotonic() - started < 5
        assert all(line.startswith(b"* BYE") for line in rest.splitlines()), rest
