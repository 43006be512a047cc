"""Shared pieces of the NOTIFY tests: registering the command, reading unsolicited lines
with deadlines, and delivering straight through the store.

Unsolicited responses arrive with no command in flight, so the tests read lines with a
deadline (:func:`wait_for`) and check silence with a short one (:func:`assert_quiet`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from mailpost.imap import commands as cmd
from mailpost.store.types import DeliveryTarget
from tests.e2e.harness import ServerThread
from tests.imapserver.helpers import RawIMAP
from tests.imapserver.mailbox_support import account_id, message

ALICE = "alice@example.test"
BOB = "bob@example.test"


def register_notify(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put NOTIFY in the dispatch table and the CAPABILITY list for this test (a no-op
    once the handler package registers the module itself)."""
    from mailpost.imap import handlers
    from mailpost.imap.handlers import notify
    monkeypatch.setitem(handlers.HANDLERS, cmd.Notify, notify.notify)
    if "NOTIFY" not in handlers.POST_LOGIN_CAPABILITIES:
        monkeypatch.setattr(handlers, "POST_LOGIN_CAPABILITIES",
                            [*handlers.POST_LOGIN_CAPABILITIES, "NOTIFY"])


def logged_in(server: ServerThread, user: str = ALICE) -> RawIMAP:
    client = RawIMAP(server)
    client.login(user)
    return client


def read_line(client: RawIMAP, timeout: float) -> bytes:
    client.sock.settimeout(timeout)
    try:
        return client.read_response()
    finally:
        client.sock.settimeout(10)


def wait_for(client: RawIMAP, predicate: Callable[[bytes], bool],
             timeout: float = 5) -> list[bytes]:
    """Read unsolicited lines until one satisfies ``predicate``; returns all read."""
    deadline = time.monotonic() + timeout
    lines: list[bytes] = []
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no matching line within {timeout}s; got {lines!r}"
        lines.append(read_line(client, remaining))
        if predicate(lines[-1]):
            return lines


def assert_quiet(client: RawIMAP, seconds: float = 0.3) -> None:
    """Nothing arrives within ``seconds``."""
    try:
        line = read_line(client, seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected unsolicited line {line!r}")


def store_deliver(server: ServerThread, mailbox: str, count: int = 1,
                  subject: str = "hello", user: str = ALICE) -> None:
    """``count`` copies of one message into ``mailbox`` in one store transaction."""
    owner = account_id(server, user)

    async def run() -> None:
        writer = server.store.blobs.writer()
        writer.write(message(subject))
        blob = await writer.finish()
        await server.store.deliver(blob, [DeliveryTarget(owner, mailbox)] * count)

    server.call(run())


def status_line(lines: list[bytes], name: bytes) -> bytes:
    found = [line for line in lines if line.startswith(b"* STATUS " + name + b" ")]
    assert len(found) == 1, (name, lines)
    return found[0]
