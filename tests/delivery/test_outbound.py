"""The SMTP client session against a scripted receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailpost.delivery.mx import Destination
from mailpost.delivery.outbound import (
    Credentials,
    SessionError,
    TLSPolicy,
    Transaction,
    canonical_crlf,
    dot_stuff,
    send,
    xtext,
)
from mailpost.store.types import OutboundRecipient
from tests.delivery.fakesmtp import FakeSMTP


@pytest.fixture
async def receiver() -> AsyncIterator[FakeSMTP]:
    fake = FakeSMTP()
    yield fake
    await fake.stop()


def transaction(body: bytes = b"Subject: x\r\n\r\nhi\r\n", *recipients: str,
                ret: str | None = None, envid: str | None = None) -> Transaction:
    rcpts = tuple(OutboundRecipient(r) for r in recipients or ("c@remote.net",))
    return Transaction("alice@example.org", rcpts, body, ret, envid)


async def deliver(receiver: FakeSMTP, tx: Transaction, **options: object) -> dict[str, str]:
    port = await receiver.start()
    replies = await send(Destination("127.0.0.1", port, "fake.test"), tx, "mail.example.org",
                         timeout=5, **options)  # type: ignore[arg-type]
    return {address: str(reply) for address, reply in replies.items()}


def test_canonical_crlf_turns_bare_cr_and_lf_into_crlf() -> None:
    assert canonical_crlf(b"a\nb\rc\r\nd") == b"a\r\nb\r\nc\r\nd\r\n"
    assert canonical_crlf(b"") == b""


def test_dot_stuffing() -> None:
    assert dot_stuff(b".a\r\nb\r\n..c\r\n") == b"..a\r\nb\r\n...c\r\n.\r\n"


def test_xtext_encodes_plus_equals_and_controls() -> None:
    assert xtext("a+b=c d") == "a+2Bb+3Dc+20d"


async def test_delivers_with_canonical_endings_and_stuffing(receiver: FakeSMTP) -> None:
    body = b"Subject: x\n\n.hidden\nline\r.\nend"
    replies = await deliver(receiver, transaction(body))
    assert replies == {"c@remote.net": "250 2.0.0 queued"}
    [got] = receiver.received
    # Bare LF and bare CR became CRLF, and the lone "." line was stuffed: the data did not
    # end early (catalogue S2).
    assert got.wire == b"Subject: x\r\n\r\n..hidden\r\nline\r\n..\r\nend\r\n.\r\n"
    assert got.message == b"Subject: x\r\n\r\n.hidden\r\nline\r\n.\r\nend\r\n"
    assert got.sender == "alice@example.org"
    assert "SIZE=" in got.mail_line


async def test_eight_bit_body_and_utf8_addresses(receiver: FakeSMTP) -> None:
    await deliver(receiver, transaction("Subject: café\r\n\r\nx\r\n".encode()))
    assert "BODY=8BITMIME" in receiver.received[0].mail_line
    with pytest.raises(SessionError, match="SMTPUTF8") as caught:
        await send(Destination("127.0.0.1", receiver_port(receiver), "fake.test"),
                   transaction(b"x\r\n", "jörg@remote.net"), "h", timeout=5)
    assert caught.value.permanent
    receiver.extensions = (*receiver.extensions, "SMTPUTF8")
    await send(Destination("127.0.0.1", receiver_port(receiver), "fake.test"),
               transaction(b"x\r\n", "jörg@remote.net"), "h", timeout=5)
    assert receiver.received[1].mail_line.endswith(" SMTPUTF8")
    assert receiver.received[1].recipients == ["jörg@remote.net"]


def receiver_port(receiver: FakeSMTP) -> int:
    assert receiver.server is not None
    return int(receiver.server.sockets[0].getsockname()[1])


async def test_per_recipient_results(receiver: FakeSMTP) -> None:
    receiver.rcpt_reply = lambda a: "550 5.1.1 unknown" if a.startswith("x") else "250 ok"
    replies = await deliver(receiver, transaction(b"hi\r\n", "x@remote.net", "y@remote.net"))
    assert replies == {"x@remote.net": "550 5.1.1 unknown", "y@remote.net": "250 2.0.0 queued"}
    assert receiver.received[0].recipients == ["y@remote.net"]


async def test_no_data_when_every_recipient_refused(receiver: FakeSMTP) -> None:
    receiver.rcpt_reply = lambda a: "451 4.3.0 later"
    replies = await deliver(receiver, transaction())
    assert replies == {"c@remote.net": "451 4.3.0 later"}
    assert "DATA" not in receiver.commands


async def test_dsn_parameters_passed_on(receiver: FakeSMTP) -> None:
    tx = Transaction("alice@example.org",
                     (OutboundRecipient("c@remote.net", "SUCCESS,FAILURE", "rfc822;c@remote.net"),),
                     b"hi\r\n", "HDRS", "id+1")
    await deliver(receiver, tx)
    [got] = receiver.received
    assert "RET=HDRS" in got.mail_line and "ENVID=id+2B1" in got.mail_line
    expected = "RCPT TO:<c@remote.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c@remote.net"
    assert got.rcpt_lines == [expected]


async def test_opportunistic_starttls(receiver: FakeSMTP, tmp_path: Path) -> None:
    receiver.tls_dir = tmp_path
    await deliver(receiver, transaction())
    assert receiver.tls_used == [True]
    assert receiver.commands.count("EHLO mail.example.org") == 2  # again after TLS


async def test_plaintext_injected_after_starttls_is_refused(receiver: FakeSMTP,
                                                            tmp_path: Path) -> None:
    receiver.tls_dir = tmp_path
    receiver.after_starttls = b"250-injected\r\n250 OK\r\n"
    with pytest.raises(SessionError, match="after its STARTTLS"):
        await deliver(receiver, transaction())
    assert receiver.received == []


async def test_required_tls_without_starttls_fails(receiver: FakeSMTP) -> None:
    with pytest.raises(SessionError, match="STARTTLS"):
        await deliver(receiver, transaction(), policy=TLSPolicy(required=True))
    assert not any(c.startswith("MAIL") for c in receiver.commands)


async def test_auth_only_over_tls(receiver: FakeSMTP, tmp_path: Path) -> None:
    receiver.auth = ("relayuser", "secret")
    with pytest.raises(SessionError, match="without TLS"):
        await deliver(receiver, transaction(), credentials=Credentials("relayuser", "secret"))
    await receiver.stop()
    secured = FakeSMTP(tls_dir=tmp_path, auth=("relayuser", "secret"))
    try:
        replies = await deliver(secured, transaction(),
                                credentials=Credentials("relayuser", "secret"))
    finally:
        await secured.stop()
    assert replies == {"c@remote.net": "250 2.0.0 queued"}


async def test_bad_greeting_and_refused_connection(receiver: FakeSMTP) -> None:
    receiver.greeting = "554 5.3.2 go away"
    with pytest.raises(SessionError, match="greeting"):
        await deliver(receiver, transaction())
    with pytest.raises(SessionError, match="cannot connect"):  # nothing listens on port 1
        await send(Destination("127.0.0.1", 1, "x"), transaction(), "h", timeout=5)
