"""Views of one mailbox share their state and their store queries (imap.selected), and still
announce exactly what RFC 9051 §7.4-§7.5 and RFC 7162 §3.2 ask of each session."""

from __future__ import annotations

import asyncio
import datetime as dt
import imaplib

import pytest

from mailpost.bus import Change, ChangeKind, LocalBus, published
from mailpost.imap.selected import SelectedMailbox, SyncOptions
from mailpost.store.types import MailboxChanges, MailboxInfo, MessageMeta
from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context
from tests.imapserver.helpers import deliver

WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PLAIN, CONDSTORE, QRESYNC = SyncOptions(), SyncOptions(condstore=True), \
    SyncOptions(condstore=True, qresync=True)


class FakeMailbox:
    """One mailbox's rows and change log, with the two reads a view makes, counted; reads
    wait for ``gate`` when it is set."""

    def __init__(self, messages: int) -> None:
        self.rows: dict[int, MessageMeta] = {}
        self.expunged: dict[int, int] = {}  # uid -> modseq of the expunge
        self.modseq, self.uidnext = 1, 1
        self.listings = self.queries = 0
        self.gate: asyncio.Event | None = None
        for _ in range(messages):
            self.add()

    def info(self) -> MailboxInfo:
        return MailboxInfo(7, 1, "INBOX", None, 42, self.uidnext, self.modseq, True)

    def _meta(self, uid: int, flags: frozenset[str]) -> MessageMeta:
        return MessageMeta(7, uid, self.modseq, flags, WHEN, 100, f"blob{uid}")

    def add(self, *flags: str) -> int:
        self.modseq += 1
        uid, self.uidnext = self.uidnext, self.uidnext + 1
        self.rows[uid] = self._meta(uid, frozenset(flags))
        return uid

    def set_flags(self, uid: int, *flags: str) -> MessageMeta:
        self.modseq += 1
        self.rows[uid] = self._meta(uid, frozenset(flags))
        return self.rows[uid]

    def expunge(self, uid: int) -> None:
        self.modseq += 1
        del self.rows[uid]
        self.expunged[uid] = self.modseq

    async def messages(self, mailbox_id: int) -> list[MessageMeta]:
        self.listings += 1
        return [self.rows[uid] for uid in sorted(self.rows)]

    async def changes_since(self, mailbox_id: int, modseq: int) -> MailboxChanges:
        self.queries += 1
        # The answer is the state when the read began, as a read transaction would see it.
        answer = MailboxChanges(
            self.modseq, self.uidnext,
            tuple(self.rows[u] for u in sorted(self.rows) if self.rows[u].modseq > modseq),
            tuple(sorted(u for u, m in self.expunged.items() if m > modseq)))
        if self.gate is not None:
            await self.gate.wait()
        return answer


async def open_views(box: FakeMailbox, count: int) -> list[SelectedMailbox]:
    return [await SelectedMailbox.open(box, box.info(), False)  # type: ignore[arg-type]
            for _ in range(count)]


async def sync(view: SelectedMailbox, box: FakeMailbox, options: SyncOptions = PLAIN,
               allow_expunge: bool = True) -> list[bytes]:
    return await view.sync(box, allow_expunge=allow_expunge,  # type: ignore[arg-type]
                           options=options)


async def test_views_of_one_mailbox_share_one_state_and_one_listing() -> None:
    box = FakeMailbox(1000)
    first, second, third = await open_views(box, 3)
    assert first.exists == second.exists == third.exists == 1000
    assert first.uids is second.uids is third.uids
    assert first.messages is second.messages is third.messages
    assert box.listings == 1  # later SELECTs only ask what changed since the shared state


async def test_new_message_is_announced_to_every_view_which_still_share() -> None:
    box = FakeMailbox(3)
    views = await open_views(box, 3)
    box.add()
    assert [await sync(view, box) for view in views] == [[b"* 4 EXISTS\r\n"]] * 3
    assert views[0].uids == [1, 2, 3, 4]
    assert views[0].uids is views[1].uids is views[2].uids
    assert all(view.modseq == box.modseq for view in views)


async def test_flag_change_elsewhere_follows_each_views_options() -> None:
    box = FakeMailbox(3)
    plain, condstore = await open_views(box, 2)
    box.set_flags(2, "\\Seen")
    assert await sync(plain, box) == [b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n"]
    assert await sync(condstore, box, CONDSTORE) == [
        f"* 2 FETCH (UID 2 FLAGS (\\Seen) MODSEQ ({box.modseq}))\r\n".encode()]
    assert plain.messages is condstore.messages


async def test_own_store_is_not_echoed_and_the_view_shares_again_after_sync() -> None:
    box = FakeMailbox(3)
    mine, other = await open_views(box, 2)
    changed = box.set_flags(1, "\\Flagged")
    mine.apply_own_update([changed])
    assert mine.messages is not other.messages
    assert other.meta(1).flags == frozenset()  # the other session has not been told yet
    assert await sync(mine, box) == []
    assert await sync(other, box) == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n"]
    assert mine.messages is other.messages and mine.uids is other.uids


async def test_expunge_waits_as_a_ghost_in_one_view_only() -> None:
    """RFC 9051 §7.5.1: no EXPUNGE during FETCH, STORE or SEARCH (allow_expunge=False)."""
    box = FakeMailbox(3)
    fetching, idling = await open_views(box, 2)
    box.expunge(2)
    assert await sync(fetching, box, allow_expunge=False) == []
    assert fetching.is_ghost(2) and fetching.exists == 3
    assert await sync(idling, box) == [b"* 2 EXPUNGE\r\n"]
    assert idling.uids == [1, 3] and fetching.uids == [1, 2, 3]
    assert await sync(fetching, box) == [b"* 2 EXPUNGE\r\n"]
    assert fetching.uids is idling.uids and not fetching.ghosts


@pytest.mark.parametrize("options", [PLAIN, CONDSTORE, QRESYNC], ids=["plain", "condstore",
                                                                      "qresync"])
async def test_shared_and_private_views_announce_the_same_lines(options: SyncOptions) -> None:
    box = FakeMailbox(6)
    shared, = await open_views(box, 1)
    private = SelectedMailbox(box.info(), False, list(shared.uids), dict(shared.messages),
                              shared.modseq, shared.uidnext)
    box.expunge(2)
    box.expunge(5)
    box.set_flags(4, "\\Answered", "$Label")
    box.add()
    box.add("\\Seen")
    lines = await sync(shared, box, options)
    assert lines == await sync(private, box, options)
    assert shared.uids == private.uids == [1, 3, 4, 6, 7, 8]
    assert lines[-1] == b"* 6 EXISTS\r\n"


async def test_sessions_waking_together_share_one_query() -> None:
    box = FakeMailbox(3)
    views = await open_views(box, 5)
    box.add()
    before, box.gate = box.queries, asyncio.Event()
    syncs = [asyncio.create_task(sync(view, box)) for view in views]
    await asyncio.sleep(0.01)
    box.gate.set()
    assert [await task for task in syncs] == [[b"* 4 EXISTS\r\n"]] * 5
    assert box.queries - before == 1


async def test_a_change_announced_after_the_shared_query_began_gets_a_fresh_query() -> None:
    """A woken session must never join a query that may have missed what woke it."""
    box = FakeMailbox(3)
    early, late = await open_views(box, 2)
    box.add()
    before, box.gate = box.queries, asyncio.Event()
    first = asyncio.create_task(sync(early, box))
    await asyncio.sleep(0.01)  # its query has read the mailbox and waits at the gate
    box.add()
    serial = published()
    LocalBus().publish(Change(1, 7, box.modseq, ChangeKind.MESSAGE_NEW))
    assert published() != serial
    second = asyncio.create_task(sync(late, box))
    await asyncio.sleep(0.01)
    box.gate.set()
    assert await first == [b"* 4 EXISTS\r\n"]
    assert await second == [b"* 5 EXISTS\r\n"]  # saw both messages: its own query
    assert box.queries - before == 2


async def test_a_session_going_away_does_not_cancel_the_shared_query() -> None:
    box = FakeMailbox(3)
    leaving, staying = await open_views(box, 2)
    box.add()
    box.gate = asyncio.Event()
    gone = asyncio.create_task(sync(leaving, box))
    kept = asyncio.create_task(sync(staying, box))
    await asyncio.sleep(0.01)
    gone.cancel()
    box.gate.set()
    assert await kept == [b"* 4 EXISTS\r\n"]
    with pytest.raises(asyncio.CancelledError):
        await gone


def test_many_idlers_on_one_mailbox_all_hear_the_delivery(server: ServerThread) -> None:
    """End to end: every IDLE session of the mailbox gets its EXISTS (RFC 2177)."""
    message = b"From: carol@remote.test\r\nSubject: hi\r\n\r\nHi.\r\n"
    deliver(server, "alice@example.test", message)
    idlers = []
    for _ in range(4):
        client = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                                   ssl_context=client_tls_context())
        client.login("alice@example.test", PASSWORD)
        client.select("INBOX")
        tag = client._new_tag().decode()
        client.send(f"{tag} IDLE\r\n".encode())
        assert client.readline().startswith(b"+")
        idlers.append((client, tag))
    deliver(server, "alice@example.test", message)
    recent_counts = []
    for client, tag in idlers:
        assert client.readline() == b"* 2 EXISTS\r\n"
        client.send(b"DONE\r\n")
        line = client.readline()
        if line.endswith(b" RECENT\r\n"):  # RFC 3501: the session that heard of it first
            recent_counts.append(line)
            line = client.readline()
        assert line.startswith(f"{tag} OK".encode())
        client.logout()
    # The new message is \Recent for exactly one of the idlers (RFC 3501 §2.3.2).
    assert len(recent_counts) == 1
