"""Helpers shared by the SEARCH/SORT/THREAD server tests: storing messages with chosen flags
and INTERNALDATEs straight into the store, and reading number lists out of responses."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mailpost.store.interface import MailStore
from mailpost.store.types import DeliveryTarget
from tests.e2e.harness import ServerThread, make_config
from tests.imapserver.helpers import RawIMAP

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "mime"
USER = "alice@example.test"

Spec = tuple[bytes, Sequence[str], dt.datetime | None]


@contextmanager
def running_server(data_dir: Path) -> Iterator[ServerThread]:
    with ServerThread(make_config(data_dir)) as server:
        server.add_user(USER)
        server.add_user("bob@example.test")
        yield server


async def _deliver(store: MailStore, address: str, specs: Sequence[Spec],
                   mailbox: str) -> list[int]:
    account = await store.get_account(address)
    assert account is not None
    uids = []
    for data, flags, when in specs:
        writer = store.blobs.writer()
        writer.write(data)
        ref = await writer.finish()
        outcome = await store.deliver(
            ref, [DeliveryTarget(account.id, mailbox, frozenset(flags))], internal_date=when)
        uids.append(outcome.local[0].uid)
    return uids


def put(server: ServerThread, specs: Sequence[Spec], address: str = USER,
        mailbox: str = "INBOX") -> list[int]:
    """Store each (message, flags, internal date) in order; returns the UIDs."""
    return server.call(_deliver(server.store, address, specs, mailbox))


def mailbox_id(server: ServerThread, name: str = "INBOX", address: str = USER) -> int:
    async def lookup() -> int:
        account = await server.store.get_account(address)
        assert account is not None
        info = await server.store.get_mailbox(account.id, name)
        assert info is not None
        return info.id
    return server.call(lookup())


def expunge(server: ServerThread, uids: list[int], mailbox: str = "INBOX") -> None:
    """Expunge as another device would (the store publishes the change)."""
    server.call(server.store.expunge(mailbox_id(server, mailbox), uids))


def utc(year: int, month: int, day: int, hour: int = 12, minute: int = 0,
        offset_hours: int = 0) -> dt.datetime:
    zone = dt.timezone(dt.timedelta(hours=offset_hours))
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone)


def message(*headers: str, body: str | bytes = "body\r\n") -> bytes:
    """A message from header lines (without CRLF) and a body."""
    raw_body = body.encode("utf-8") if isinstance(body, str) else body
    return ("\r\n".join(headers) + "\r\n\r\n").encode("utf-8") + raw_body


def client(server: ServerThread, mailbox: str = "INBOX") -> RawIMAP:
    imap = RawIMAP(server)
    imap.login()
    imap.ok(f"SELECT {mailbox}")
    return imap


def numbers(lines: list[bytes], name: bytes = b"SEARCH") -> list[int]:
    """The numbers of the single ``* SEARCH``/``* SORT`` line (without any MODSEQ part)."""
    found = [line for line in lines if line.startswith(b"* " + name)]
    assert len(found) == 1, lines
    text = found[0][len(b"* ") + len(name):]
    text = re.sub(rb"\(MODSEQ \d+\)", b"", text)
    return [int(token) for token in text.split()]


def search(imap: RawIMAP, criteria: str | bytes) -> list[int]:
    raw = criteria.encode() if isinstance(criteria, str) else criteria
    untagged, tagged = imap.command(b"SEARCH " + raw)
    assert b" OK " in tagged, (criteria, tagged)
    return numbers(untagged)


def esearch_line(lines: list[bytes]) -> bytes:
    found = [line for line in lines if line.startswith(b"* ESEARCH")]
    assert len(found) == 1, lines
    return found[0]


def _thread_message(day: int, subject: str, *extra: str, month: int = 1,
                    year: int = 2024) -> bytes:
    date = dt.datetime(year, month, day, 12, tzinfo=dt.UTC)
    return message(f"Subject: {subject}", "From: someone@example.test",
                   f"Date: {date.strftime('%a, %d %b %Y %H:%M:%S +0000')}", *extra)


# A worked THREAD example (RFC 5256 §3): replies, a missing parent, subject merging, a
# duplicate Message-ID, a reference loop, a chain of missing messages and quoted msg-ids.
THREAD_MESSAGES = [
    _thread_message(1, "Plan", "Message-ID: <a@x>"),
    _thread_message(2, "Re: Plan", "Message-ID: <b@x>", "References: <a@x>"),
    _thread_message(4, "Re: Plan", "Message-ID: <c@x>", "References: <a@x>\r\n <b@x>"),
    _thread_message(3, "Re: Plan", "Message-ID: <d@x>", "References: <a@x>"),
    _thread_message(5, "Lunch", "Message-ID: <e@x>", "References: <missing@x>"),
    _thread_message(6, "Re: Lunch", "Message-ID: <f@x>", "In-Reply-To: <missing@x>"),
    _thread_message(7, "Party", "Message-ID: <g@x>"),
    _thread_message(8, "Re: Party", "Message-ID: <h@x>"),
    _thread_message(9, "Dup", "Message-ID: <a@x>"),
    _thread_message(31, "Re: Party", "References: <g@x>", month=12, year=2023),
    _thread_message(10, "Loop", "Message-ID: <x1@x>", "References: <x2@x>"),
    _thread_message(11, "Re: Loop", "Message-ID: <x2@x>", "References: <x1@x>"),
    _thread_message(12, "Chain", "Message-ID: <n@x>", "References: <m1@x> <m2@x>"),
    _thread_message(13, "Quoted", 'Message-ID: <"01KF8JCEOCBS0045PS"@xxx.yyy.com>'),
    _thread_message(14, "Re: Quoted", "In-Reply-To: <01KF8JCEOCBS0045PS@xxx.yyy.com>"),
]
# Worked by hand from RFC 5256 §3 (see test_search_thread.py for the reasoning).
THREAD_REFERENCES = b"(1 (2 3)(4))((5)(6))(7 (10)(8))(9)(12 11)(13)(14 15)"
THREAD_ORDEREDSUBJECT = b"(10 (7)(8))(1 (2)(4)(3))(5 6)(9)(11 12)(13)(14 15)"
