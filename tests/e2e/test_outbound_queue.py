"""Outbound delivery end to end: submission, the queue, and a fake remote MX on 127.0.0.1.

The route table points ``remote.test`` at the fake receiver. The server's own queue poll is
set to an hour so that each test drives the runner itself (``run_once``), deterministically.
"""

from __future__ import annotations

import email
import smtplib
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailpost import cli
from mailpost.admin import queue as queue_ops
from mailpost.config import DeliveryConfig, SubmissionConfig
from mailpost.delivery.queue import QueueRunner
from mailpost.store.types import OutboundEnvelope, OutboundRecipient
from tests.delivery.fakesmtp import FakeSMTP
from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context, make_config

MESSAGE = (b"From: alice@example.test\r\nTo: dave@remote.test\r\nSubject: out\r\n\r\n"
           b"hello\r\n.starts with a dot\r\n")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def server(tmp_path: Path, port: int) -> Iterator[ServerThread]:
    base = make_config(tmp_path / "var")
    delivery = DeliveryConfig(routes={"remote.test": f"127.0.0.1:{port}"}, retry_base=60.0)
    running = ServerThread(replace(base, delivery=delivery))
    running.server.queue_poll_interval = 3600.0
    with running:
        running.add_user("alice@example.test")
        yield running


@pytest.fixture
def receiver(server: ServerThread) -> Iterator[FakeSMTP]:
    fake = FakeSMTP()
    yield fake
    server.call(fake.stop())


def runner(server: ServerThread) -> QueueRunner:
    assert server.server.queue_runner is not None
    return server.server.queue_runner


def submit(server: ServerThread, recipients: list[str], message: bytes = MESSAGE) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as client:
        client.starttls(context=client_tls_context())
        client.login("alice@example.test", PASSWORD)
        assert client.sendmail("alice@example.test", recipients, message) == {}


def run_queue(server: ServerThread) -> int:
    return server.call(runner(server).run_once())


def test_delivered_without_return_path_and_stuffed(server: ServerThread, receiver: FakeSMTP,
                                                   port: int) -> None:
    server.call(receiver.start(port))
    submit(server, ["dave@remote.test", "erin@remote.test"])
    assert run_queue(server) == 1
    [got] = receiver.received
    assert got.sender == "alice@example.test"
    assert got.recipients == ["dave@remote.test", "erin@remote.test"]  # one transaction
    assert not got.message.startswith(b"Return-Path:")
    assert got.message.startswith(b"Received: from ")
    assert b"\r\n..starts with a dot\r\n" in got.wire
    assert got.message.endswith(b"hello\r\n.starts with a dot\r\n")
    assert server.call(server.store.list_queue()) == []


def test_temporary_failure_then_flush(server: ServerThread, receiver: FakeSMTP,
                                      port: int) -> None:
    receiver.rcpt_reply = lambda address: "451 4.7.1 greylisted"
    server.call(receiver.start(port))
    submit(server, ["dave@remote.test"])
    run_queue(server)
    [entry] = server.call(server.store.list_queue())
    assert entry.attempts == 1 and entry.last_error is not None and "451" in entry.last_error
    assert run_queue(server) == 0  # backing off
    receiver.rcpt_reply = lambda address: "250 ok"
    assert server.call(queue_ops.flush(server.store, entry.id)) == 1
    assert run_queue(server) == 1
    assert len(receiver.received) == 1
    assert server.call(server.store.list_queue()) == []
    assert server.inbox("alice@example.test") == []


def test_permanent_failure_bounces_to_sender(server: ServerThread, receiver: FakeSMTP,
                                             port: int) -> None:
    receiver.rcpt_reply = lambda address: "550 5.1.1 no such user"
    server.call(receiver.start(port))
    submit(server, ["dave@remote.test"])
    run_queue(server)
    assert server.call(server.store.list_queue()) == []
    [raw] = server.inbox("alice@example.test")
    bounce = email.message_from_bytes(raw)
    assert bounce.get_content_type() == "multipart/report"
    assert bounce["Return-Path"] == "<>"
    assert "Final-Recipient: rfc822; dave@remote.test" in bounce.as_string()
    assert "550 5.1.1 no such user" in bounce.as_string()


def test_unreachable_then_delivered_after_receiver_starts(server: ServerThread,
                                                          receiver: FakeSMTP,
                                                          port: int) -> None:
    submit(server, ["dave@remote.test"])
    run_queue(server)
    [entry] = server.call(server.store.list_queue())
    assert entry.attempts == 1 and entry.last_error is not None
    assert "cannot connect" in entry.last_error
    assert entry.next_attempt is not None
    assert entry.next_attempt > datetime.now(UTC) + timedelta(seconds=20)
    server.call(receiver.start(port))
    assert server.call(queue_ops.flush(server.store)) == 1
    assert run_queue(server) == 1
    assert len(receiver.received) == 1
    assert server.call(server.store.list_queue()) == []


def test_expired_entry_bounces(server: ServerThread, receiver: FakeSMTP) -> None:
    submit(server, ["dave@remote.test"])
    later = datetime.now(UTC) + timedelta(days=6)
    runner(server).clock = lambda: later
    run_queue(server)
    assert server.call(server.store.list_queue()) == []
    [raw] = server.inbox("alice@example.test")
    text = email.message_from_bytes(raw).as_string()
    assert "Action: failed" in text and "Status: 4.4.7" in text


def test_null_sender_never_bounced(server: ServerThread, receiver: FakeSMTP,
                                   port: int) -> None:
    receiver.rcpt_reply = lambda address: "550 5.1.1 no such user"
    server.call(receiver.start(port))

    async def enqueue_bounce() -> None:
        writer = server.store.blobs.writer()
        writer.write(b"Return-Path: <>\r\nSubject: a report\r\n\r\nx\r\n")
        blob = await writer.finish()
        await server.store.deliver(blob, [], OutboundEnvelope(
            "", (OutboundRecipient("dave@remote.test"),)))

    server.call(enqueue_bounce())
    run_queue(server)
    assert receiver.received == []
    assert [c for c in receiver.commands if c.startswith("MAIL")] == ["MAIL FROM:<> SIZE=27"]
    assert server.call(server.store.list_queue()) == []
    assert server.inbox("alice@example.test") == []


@pytest.mark.parametrize("save", [True, False])
def test_save_to_sent(tmp_path: Path, save: bool) -> None:
    base = make_config(tmp_path / "var")
    config = replace(base, submission=SubmissionConfig(save_to_sent=save))
    running = ServerThread(config)
    running.server.queue_poll_interval = 3600.0
    with running:
        running.add_user("alice@example.test")
        running.add_user("bob@example.test")
        submit(running, ["bob@example.test"])
        sent = running.inbox("alice@example.test", "Sent")
        assert len(running.inbox("bob@example.test")) == 1
        if save:
            [copy] = sent
            assert b"Subject: out\r\n" in copy
        else:
            assert sent == []


def wait_for(condition: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.02)
    return bool(condition())  # type: ignore[operator]


def test_queued_or_flushed_mail_leaves_at_once_without_a_poll(tmp_path: Path, port: int) -> None:
    data_dir = tmp_path / "var"
    delivery = DeliveryConfig(routes={"remote.test": f"127.0.0.1:{port}"}, retry_base=3600.0)
    running = ServerThread(replace(make_config(data_dir), delivery=delivery))
    running.server.queue_wake = True  # what `mailpost serve` does; the poll is an hour away
    fake = FakeSMTP()
    fake.rcpt_reply = lambda address: "451 4.7.1 greylisted"
    config = tmp_path / "mailpost.toml"
    config.write_text(f'hostname = "mail.example.test"\ndata_dir = "{data_dir}"\n'
                      f'[delivery.routes]\n"remote.test" = "127.0.0.1:{port}"\n',
                      encoding="utf-8")
    with running:
        running.add_user("alice@example.test")
        running.call(fake.start(port))
        try:
            submit(running, ["dave@remote.test"])
            assert wait_for(lambda: any(c.upper().startswith("RCPT") for c in fake.commands))
            assert wait_for(lambda: running.call(running.store.list_queue())[0].attempts == 1)
            fake.rcpt_reply = lambda address: "250 ok"
            # `mailpost queue flush` in this process: its store rings the server's doorbell.
            assert cli.main(["--config", str(config), "queue", "flush"]) == 0
            assert wait_for(lambda: len(fake.received) == 1)
            assert wait_for(lambda: running.call(running.store.list_queue()) == [])
        finally:
            running.call(fake.stop())
