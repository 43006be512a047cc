"""The queue runner with a fake SMTP client, a fake resolver and a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import email
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from mailpost.bus import LocalBus
from mailpost.config import Config, from_mapping
from mailpost.delivery.mx import Destination, PermanentDNSError
from mailpost.delivery.outbound import Reply, SessionError, Transaction
from mailpost.delivery.queue import QueueRunner, backoff, group_by_domain, strip_return_path
from mailpost.store import open_store
from mailpost.store.interface import MailStore
from mailpost.store.types import Account, OutboundEnvelope, OutboundRecipient, QueueEntry
from tests.delivery.conftest import FakeClock

STORED = (b"Return-Path: <alice@example.org>\r\nReceived: from x\r\n\tby y\r\n"
          b"Subject: hello\r\n\r\nbody\r\n")


class FakeResolver:
    def __init__(self, mx: dict[str, list[tuple[int, str]] | None]) -> None:
        self.records = mx

    async def mx(self, domain: str) -> list[tuple[int, str]] | None:
        if domain not in self.records:
            raise PermanentDNSError(f"domain {domain} does not exist")
        return self.records[domain]

    async def addresses(self, host: str) -> list[str]:
        return [f"192.0.2.{len(host)}"]


class FakeSender:
    """Records each session; answers with ``script(destination, transaction)``."""

    def __init__(self, script: Callable[[Destination, Transaction], dict[str, Reply]]) -> None:
        self.script = script
        self.calls: list[tuple[Destination, Transaction]] = []

    async def __call__(self, destination: Destination, transaction: Transaction, helo: str,
                       **options: Any) -> dict[str, Reply]:
        self.calls.append((destination, transaction))
        return self.script(destination, transaction)


def ok(destination: Destination, transaction: Transaction) -> dict[str, Reply]:
    return {r.address: Reply(250, "2.0.0 ok") for r in transaction.recipients}


def temporary(destination: Destination, transaction: Transaction) -> dict[str, Reply]:
    return {r.address: Reply(451, "4.3.0 try again") for r in transaction.recipients}


def unreachable(destination: Destination, transaction: Transaction) -> dict[str, Reply]:
    raise SessionError(f"cannot connect to {destination.host}")


def make_config(tmp_path: Path, **delivery: Any) -> Config:
    return from_mapping({"hostname": "mail.example.org", "data_dir": str(tmp_path / "data"),
                         "delivery": delivery})


async def enqueue(store: MailStore, *recipients: OutboundRecipient,
                  sender: str = "alice@example.org", ret: str | None = None) -> QueueEntry:
    writer = store.blobs.writer()
    writer.write(STORED)
    blob = await writer.finish()
    outcome = await store.deliver(blob, [], OutboundEnvelope(sender, recipients, ret=ret))
    assert outcome.queued is not None
    return outcome.queued


def runner(store: MailStore, tmp_path: Path, clock: FakeClock, sender: FakeSender,
           resolver: FakeResolver | None = None, **delivery: Any) -> QueueRunner:
    default = FakeResolver({"remote.net": [(10, "mx1.remote.net"), (5, "mx0.remote.net")],
                            "other.net": None})
    return QueueRunner(store, make_config(tmp_path, **delivery), resolver=resolver or default,
                       clock=clock, send=sender, rand=lambda: 1.0, signer=None)


async def inbox(store: MailStore, account: Account) -> list[email.message.Message]:
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    return [email.message_from_bytes(await store.blobs.read(meta.blob_id))
            for meta in await store.messages(box.id)]


def subpart(message: email.message.Message, index: int) -> email.message.Message:
    parts = message.get_payload()
    assert isinstance(parts, list)
    part = parts[index]
    assert isinstance(part, email.message.Message)
    return part


def test_strip_return_path_only_the_first_field() -> None:
    assert strip_return_path(STORED).startswith(b"Received: from x\r\n\tby y\r\n")
    folded = b"Return-Path:\r\n <a@b>\r\nSubject: x\r\n\r\n"
    assert strip_return_path(folded) == b"Subject: x\r\n\r\n"
    assert strip_return_path(b"Subject: Return-Path:\r\n\r\n") == b"Subject: Return-Path:\r\n\r\n"


def test_backoff_grows_caps_and_jitters() -> None:
    assert backoff(0, 300, 3600, lambda: 1.0) == timedelta(seconds=300)
    assert backoff(2, 300, 3600, lambda: 1.0) == timedelta(seconds=1200)
    assert backoff(10, 300, 3600, lambda: 1.0) == timedelta(seconds=3600)
    assert backoff(2, 300, 3600, lambda: 0.0) == timedelta(seconds=600)


def test_group_by_domain_is_case_insensitive() -> None:
    groups = group_by_domain([OutboundRecipient("a@X.net"), OutboundRecipient("b@x.net"),
                              OutboundRecipient("c@y.net")])
    assert {d: [r.address for r in rs] for d, rs in groups.items()} == \
        {"x.net": ["a@X.net", "b@x.net"], "y.net": ["c@y.net"]}


async def test_one_session_per_domain_in_mx_order(store: MailStore, alice: Account,
                                                  tmp_path: Path, clock: FakeClock) -> None:
    await enqueue(store, OutboundRecipient("c@remote.net"), OutboundRecipient("d@remote.net"),
                  OutboundRecipient("e@other.net"))
    sender = FakeSender(ok)
    assert await runner(store, tmp_path, clock, sender).run_once() == 1
    by_domain = {t.recipients[0].address.split("@")[1]: (d, t) for d, t in sender.calls}
    assert len(sender.calls) == 2
    destination, transaction = by_domain["remote.net"]
    assert destination.tls_name == "mx0.remote.net"  # preference 5 before 10
    assert [r.address for r in transaction.recipients] == ["c@remote.net", "d@remote.net"]
    assert by_domain["other.net"][0].tls_name == "other.net"  # implicit MX
    assert not transaction.body.startswith(b"Return-Path")
    assert await store.list_queue() == []


async def test_next_mx_tried_after_connection_failure(store: MailStore, alice: Account,
                                                      tmp_path: Path, clock: FakeClock) -> None:
    await enqueue(store, OutboundRecipient("c@remote.net"))

    def first_down(destination: Destination, transaction: Transaction) -> dict[str, Reply]:
        if destination.tls_name == "mx0.remote.net":
            raise SessionError("refused")
        return ok(destination, transaction)

    sender = FakeSender(first_down)
    await runner(store, tmp_path, clock, sender).run_once()
    assert [d.tls_name for d, _ in sender.calls] == ["mx0.remote.net", "mx1.remote.net"]
    assert await store.list_queue() == []


async def test_temporary_failure_backs_off(store: MailStore, alice: Account, tmp_path: Path,
                                           clock: FakeClock) -> None:
    entry = await enqueue(store, OutboundRecipient("c@remote.net"))
    sender = FakeSender(temporary)
    run = runner(store, tmp_path, clock, sender, retry_base=60.0, retry_max=600.0)
    await run.run_once()
    stored = await store.get_queue_entry(entry.id)
    assert stored is not None and stored.attempts == 1
    assert stored.next_attempt == clock.now + timedelta(seconds=60)
    assert stored.last_error is not None and "451" in stored.last_error
    assert await run.run_once() == 0  # not due yet
    clock.advance(seconds=60)
    assert await run.run_once() == 1
    stored = await store.get_queue_entry(entry.id)
    assert stored is not None and stored.next_attempt == clock.now + timedelta(seconds=120)
    sender.script = ok
    clock.advance(seconds=120)
    await run.run_once()
    assert await store.list_queue() == []
    assert await inbox(store, alice) == []  # delivered in the end: no report


async def test_permanent_failure_bounces_to_local_sender(store: MailStore, alice: Account,
                                                         tmp_path: Path,
                                                         clock: FakeClock) -> None:
    def mixed(destination: Destination, transaction: Transaction) -> dict[str, Reply]:
        return {"c@remote.net": Reply(550, "5.1.1 no such user"),
                "d@remote.net": Reply(250, "2.0.0 ok")}

    await enqueue(store, OutboundRecipient("c@remote.net", orcpt="rfc822;c@remote.net"),
                  OutboundRecipient("d@remote.net"), ret="FULL")
    await runner(store, tmp_path, clock, FakeSender(mixed)).run_once()
    assert await store.list_queue() == []
    [bounce] = await inbox(store, alice)
    assert bounce.get_content_type() == "multipart/report"
    assert bounce.get_param("report-type") == "delivery-status"
    assert bounce["Return-Path"] == "<>"
    status_part, returned = subpart(bounce, 1), subpart(bounce, 2)
    recipient = subpart(status_part, 1)
    assert recipient["Final-Recipient"] == "rfc822; c@remote.net"
    assert recipient["Original-Recipient"] == "rfc822;c@remote.net"
    assert (recipient["Action"], recipient["Status"]) == ("failed", "5.1.1")
    assert "550 5.1.1 no such user" in recipient["Diagnostic-Code"]
    assert len(status_part.get_payload()) == 2  # the delivered recipient is not reported
    assert returned.get_content_type() == "message/rfc822"  # RET=FULL
    assert b"body" in returned.as_bytes()


async def test_null_mx_fails_permanently(store: MailStore, alice: Account, tmp_path: Path,
                                         clock: FakeClock) -> None:
    await enqueue(store, OutboundRecipient("c@nomail.net"))
    resolver = FakeResolver({"nomail.net": [(0, ".")]})
    sender = FakeSender(ok)
    await runner(store, tmp_path, clock, sender, resolver).run_once()
    assert sender.calls == []
    [bounce] = await inbox(store, alice)
    assert "Status: 5.1.10" in bounce.as_string()


async def test_notify_never_and_null_sender_get_no_bounce(store: MailStore, alice: Account,
                                                          tmp_path: Path,
                                                          clock: FakeClock) -> None:
    await enqueue(store, OutboundRecipient("c@remote.net", notify="NEVER"))
    await enqueue(store, OutboundRecipient("c@remote.net"), sender="")
    failing = FakeSender(lambda d, t: {r.address: Reply(554, "5.7.1 no")
                                       for r in t.recipients})
    await runner(store, tmp_path, clock, failing).run_once()
    assert len(failing.calls) == 2
    assert await store.list_queue() == []
    assert await inbox(store, alice) == []


async def test_expiry_bounces_with_4_4_7(store: MailStore, alice: Account, tmp_path: Path,
                                         clock: FakeClock) -> None:
    await enqueue(store, OutboundRecipient("c@remote.net"))
    run = runner(store, tmp_path, clock, FakeSender(unreachable), max_age=3600.0,
                 delay_warning=0.0)
    await run.run_once()
    assert len(await store.list_queue()) == 1
    clock.advance(hours=2)
    await run.run_once()
    assert await store.list_queue() == []
    [bounce] = await inbox(store, alice)
    text = bounce.as_string()
    assert "Action: failed" in text and "Status: 4.4.7" in text
    assert "cannot connect" in text


async def test_delay_warning_sent_once(store: MailStore, alice: Account, tmp_path: Path,
                                       clock: FakeClock) -> None:
    await enqueue(store, OutboundRecipient("c@remote.net"))
    run = runner(store, tmp_path, clock, FakeSender(temporary), delay_warning=3600.0,
                 retry_base=60.0, retry_max=60.0)
    await run.run_once()
    assert await inbox(store, alice) == []
    for _ in range(3):
        clock.advance(hours=1)
        await run.run_once()
    [warning] = await inbox(store, alice)
    text = warning.as_string()
    assert "Action: delayed" in text and "Will-Retry-Until:" in text
    assert len(await store.list_queue()) == 1


async def test_bounce_for_remote_sender_is_queued_with_null_sender(
        store: MailStore, alice: Account, tmp_path: Path, clock: FakeClock) -> None:
    await enqueue(store, OutboundRecipient("c@remote.net"), sender="someone@other.net")
    failing = FakeSender(lambda d, t: {r.address: Reply(550, "no") for r in t.recipients})
    await runner(store, tmp_path, clock, failing).run_once()
    [queued] = await store.list_queue()
    assert queued.sender == ""
    assert [r.address for r in queued.recipients] == ["someone@other.net"]


async def test_bounce_for_subaddress_goes_to_the_account(
        store: MailStore, alice: Account, tmp_path: Path, clock: FakeClock) -> None:
    await enqueue(store, OutboundRecipient("c@remote.net"), sender="alice+news@example.org")
    failing = FakeSender(lambda d, t: {r.address: Reply(550, "no") for r in t.recipients})
    await runner(store, tmp_path, clock, failing).run_once()
    assert await store.list_queue() == []
    [bounce] = await inbox(store, alice)
    assert bounce["To"] == "<alice+news@example.org>"


async def test_route_and_relay_take_precedence(store: MailStore, alice: Account,
                                               tmp_path: Path, clock: FakeClock) -> None:
    await enqueue(store, OutboundRecipient("c@remote.net"), OutboundRecipient("e@other.net"))
    sender = FakeSender(ok)
    await runner(store, tmp_path, clock, sender, routes={"remote.net": "127.0.0.1:2600"},
                 relay="smarthost.test:587").run_once()
    used = {t.recipients[0].address: (d.host, d.port) for d, t in sender.calls}
    assert used == {"c@remote.net": ("127.0.0.1", 2600), "e@other.net": ("smarthost.test", 587)}


async def test_signer_applied_to_outgoing_body(store: MailStore, alice: Account,
                                               tmp_path: Path, clock: FakeClock) -> None:
    await enqueue(store, OutboundRecipient("c@remote.net"))
    sender = FakeSender(ok)
    seen: list[str] = []

    def sign(message: bytes, domain: str, data_dir: Path) -> bytes:
        seen.append(domain)
        return b"DKIM-Signature: v=1\r\n" + message

    run = QueueRunner(store, make_config(tmp_path), resolver=FakeResolver({"remote.net": None}),
                      clock=clock, send=sender, signer=sign)
    await run.run_once()
    assert seen == ["example.org"]
    assert sender.calls[0][1].body.startswith(b"DKIM-Signature: v=1\r\nReceived: from x")


async def test_per_domain_concurrency_limit(store: MailStore, alice: Account, tmp_path: Path,
                                            clock: FakeClock) -> None:
    for _ in range(5):
        await enqueue(store, OutboundRecipient("c@remote.net"))
    await enqueue(store, OutboundRecipient("e@other.net"))
    active: dict[str, int] = {}
    peak: dict[str, int] = {}

    async def slow(destination: Destination, transaction: Transaction, helo: str,
                   **options: Any) -> dict[str, Reply]:
        domain = transaction.recipients[0].address.split("@")[1]
        active[domain] = active.get(domain, 0) + 1
        peak[domain] = max(peak.get(domain, 0), active[domain])
        await asyncio.sleep(0.01)
        active[domain] -= 1
        return ok(destination, transaction)

    run = QueueRunner(store, make_config(tmp_path, per_domain_concurrency=2),
                      resolver=FakeResolver({"remote.net": None, "other.net": None}),
                      clock=clock, send=slow, signer=None)
    assert await run.run_once() == 6
    assert peak == {"remote.net": 2, "other.net": 1}
    assert await store.list_queue() == []
    assert run._domain_limits == {}  # nothing kept for idle domains


async def test_entry_still_in_flight_is_not_started_twice(
        store: MailStore, alice: Account, tmp_path: Path, clock: FakeClock) -> None:
    await enqueue(store, OutboundRecipient("c@remote.net"))
    release = asyncio.Event()
    calls: list[str] = []

    async def stuck(destination: Destination, transaction: Transaction, helo: str,
                    **options: Any) -> dict[str, Reply]:
        calls.append(transaction.recipients[0].address)
        await release.wait()
        return ok(destination, transaction)

    run = QueueRunner(store, make_config(tmp_path), resolver=FakeResolver({"remote.net": None}),
                      clock=clock, send=stuck, signer=None)
    first = asyncio.create_task(run.run_once())
    while not calls:
        await asyncio.sleep(0.001)
    clock.advance(hours=1)  # the lease has run out while the session still hangs
    assert await run.run_once() == 0
    release.set()
    assert await first == 1
    assert calls == ["c@remote.net"]
    assert await store.list_queue() == []


async def test_a_slow_remote_does_not_hold_up_mail_queued_meanwhile(
        tmp_path: Path, clock: FakeClock) -> None:
    bus = LocalBus()
    store = await open_store(tmp_path / "own", bus)
    release = asyncio.Event()
    delivered: list[str] = []

    async def send(destination: Destination, transaction: Transaction, helo: str,
                   **options: Any) -> dict[str, Reply]:
        address = transaction.recipients[0].address
        if address.endswith("@remote.net"):
            await release.wait()  # a tarpit: this session takes its time
        delivered.append(address)
        return ok(destination, transaction)

    async def until(condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(5):
            while not condition():
                await asyncio.sleep(0.005)

    run = QueueRunner(store, make_config(tmp_path),
                      resolver=FakeResolver({"remote.net": None, "other.net": None}),
                      clock=clock, send=send, signer=None)
    running = asyncio.create_task(run.run(poll_interval=3600, bus=bus))
    try:
        await enqueue(store, OutboundRecipient("c@remote.net"))
        await until(lambda: bool(run._in_flight))  # started at once, and now hanging
        await enqueue(store, OutboundRecipient("e@other.net"))
        await until(lambda: delivered == ["e@other.net"])  # not after the slow one
        release.set()
        await until(lambda: delivered == ["e@other.net", "c@remote.net"])
        await until(lambda: not run._attempts)
        assert await store.list_queue() == []
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await store.close()


async def test_stopping_the_runner_cancels_attempts_in_flight(
        tmp_path: Path, clock: FakeClock) -> None:
    bus = LocalBus()
    store = await open_store(tmp_path / "own", bus)
    started = asyncio.Event()

    async def hang(destination: Destination, transaction: Transaction, helo: str,
                   **options: Any) -> dict[str, Reply]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    run = QueueRunner(store, make_config(tmp_path), resolver=FakeResolver({"remote.net": None}),
                      clock=clock, send=hang, signer=None)
    running = asyncio.create_task(run.run(poll_interval=3600, bus=bus))
    try:
        await enqueue(store, OutboundRecipient("c@remote.net"))
        await asyncio.wait_for(started.wait(), 5)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    assert not run._attempts and not run._in_flight
    [entry] = await store.list_queue()  # still queued: its lease brings it back later
    assert entry.recipients[0].address == "c@remote.net"
    await store.close()


async def test_a_refused_mail_from_reports_the_servers_own_status(
        store: MailStore, alice: Account, tmp_path: Path, clock: FakeClock) -> None:
    def refuse_sender(destination: Destination, transaction: Transaction) -> dict[str, Reply]:
        reply = Reply(550, "5.7.26 unauthenticated sender")
        raise SessionError(f"MAIL FROM: {reply}", reply.permanent, reply=reply)

    def no_utf8(destination: Destination, transaction: Transaction) -> dict[str, Reply]:
        raise SessionError("server does not support SMTPUTF8 addresses", permanent=True,
                           status="5.6.7")

    statuses = []
    for script in (refuse_sender, no_utf8):
        await enqueue(store, OutboundRecipient("c@remote.net"))
        await runner(store, tmp_path, clock, FakeSender(script)).run_once()
        bounce = (await inbox(store, alice))[-1]
        statuses.append(subpart(subpart(bounce, 1), 1)["Status"])
    # The server's own enhanced code (RFC 3463), not a generic 5.0.0; and one of ours.
    assert statuses == ["5.7.26", "5.6.7"]
