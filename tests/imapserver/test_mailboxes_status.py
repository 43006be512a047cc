"""STATUS (RFC 9051 §6.3.11, RFC 7162, RFC 7889, RFC 8474, RFC 9208 §4.1.4), LIST-STATUS
(RFC 5819), QUOTA (RFC 9208) and the mailbox calls of Python's imaplib."""

from __future__ import annotations

import imaplib
import math
from typing import cast

from mailpost.admin import ops
from mailpost.store.types import FlagMode
from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context
from tests.imapserver.helpers import RawIMAP, deliver
from tests.imapserver.mailbox_support import (
    account_id,
    extended_items,
    listing,
    mailbox_id,
    message,
    statuses,
)

ALICE = "alice@example.test"
ALL_ITEMS = ("MESSAGES UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE RECENT HIGHESTMODSEQ "
             "APPENDLIMIT MAILBOXID DELETED-STORAGE")


def session(server: ServerThread) -> RawIMAP:
    client = RawIMAP(server)
    client.login()
    return client


def three_messages(server: ServerThread) -> list[int]:
    """Deliver three messages; mark the first \\Seen and the second \\Deleted; their sizes."""
    for subject in ("first", "second", "third"):
        deliver(server, ALICE, message(subject, "x" * 100 + "\r\n"))
    inbox = mailbox_id(server, "INBOX")
    server.call(server.store.store_flags(inbox, [1], FlagMode.ADD, frozenset({"\\Seen"})))
    server.call(server.store.store_flags(inbox, [2], FlagMode.ADD, frozenset({"\\Deleted"})))
    return [meta.size for meta in server.call(server.store.messages(inbox))]


def test_status_items(server: ServerThread) -> None:
    sizes = three_messages(server)
    info = server.call(server.store.get_mailbox(account_id(server), "INBOX"))
    assert info is not None
    client = session(server)
    result = statuses(client.ok(f"STATUS INBOX ({ALL_ITEMS})"))["INBOX"]
    assert result == {
        "MESSAGES": "3", "UIDNEXT": "4", "UIDVALIDITY": str(info.uidvalidity),
        # No session has selected INBOX since the three arrived: all three are recent.
        "UNSEEN": "2", "DELETED": "1", "SIZE": str(sum(sizes)), "RECENT": "3",
        "HIGHESTMODSEQ": str(info.highest_modseq),
        "APPENDLIMIT": str(server.config.append_limit),
        "MAILBOXID": f"(F{info.id})", "DELETED-STORAGE": str(sizes[1]),
    }


def test_status_example_and_item_order(server: ServerThread) -> None:
    """RFC 9051 §6.3.11 A042: the items asked for, in the order asked."""
    client = session(server)
    client.ok("CREATE blurdybloop")
    assert client.ok("STATUS blurdybloop (UIDNEXT MESSAGES)") == \
        [b"* STATUS blurdybloop (UIDNEXT 1 MESSAGES 0)"]
    assert b"NO [NONEXISTENT]" in client.command("STATUS nothing (MESSAGES)")[1]
    client.ok("ENABLE IMAP4rev2")
    assert b"BAD" in client.command("STATUS INBOX (RECENT)")[1]
    assert b"BAD" in client.command('LIST "" % RETURN (STATUS (RECENT))')[1]


def test_status_of_the_selected_mailbox_reflects_the_store(server: ServerThread) -> None:
    client = session(server)
    client.ok("SELECT INBOX")
    deliver(server, ALICE, message("late"))
    lines = client.ok("STATUS INBOX (MESSAGES UIDNEXT)")
    assert statuses(lines)["INBOX"] == {"MESSAGES": "1", "UIDNEXT": "2"}


def test_status_highestmodseq_enables_condstore(server: ServerThread) -> None:
    """RFC 7162 §3.1: the first CONDSTORE enabling command announces HIGHESTMODSEQ."""
    client = session(server)
    client.ok("SELECT INBOX")
    first = client.ok("STATUS Sent (HIGHESTMODSEQ)")
    assert any(line.startswith(b"* OK [HIGHESTMODSEQ ") for line in first)
    second = client.ok("STATUS Sent (HIGHESTMODSEQ)")
    assert not any(line.startswith(b"* OK [HIGHESTMODSEQ ") for line in second)


def test_list_status(server: ServerThread) -> None:
    """RFC 5819 §3, both examples: a STATUS right after each selectable listed mailbox."""
    deliver(server, ALICE, message("one"))
    client = session(server)
    client.ok("CREATE foo")
    client.ok("CREATE bar/x")
    client.ok("DELETE bar")
    lines = client.ok('LIST "" % RETURN (STATUS (MESSAGES UNSEEN))')
    index = lines.index(b'* LIST (\\HasNoChildren) "/" INBOX')
    assert lines[index + 1] == b"* STATUS INBOX (MESSAGES 1 UNSEEN 1)"
    index = lines.index(b'* LIST (\\HasNoChildren) "/" foo')
    assert lines[index + 1] == b"* STATUS foo (MESSAGES 0 UNSEEN 0)"
    assert listing(lines)["bar"] == {"\\NonExistent", "\\HasChildren"}
    assert "bar" not in statuses(lines)
    assert len(statuses(lines)) == len(listing(lines)) - 1

    client.ok("SUBSCRIBE foo/child")
    lines = client.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" % RETURN (STATUS (MESSAGES))')
    assert listing(lines)["foo"] == {"\\HasNoChildren"}
    assert extended_items(lines)["foo"] == b'("CHILDINFO" ("SUBSCRIBED"))'
    assert "foo" not in statuses(lines)
    assert statuses(lines)["INBOX"] == {"MESSAGES": "1"}


def test_list_status_appendlimit(server: ServerThread) -> None:
    """RFC 7889 §3.2."""
    client = session(server)
    lines = client.ok('LIST "" INBOX RETURN (STATUS (APPENDLIMIT))')
    assert lines == [b'* LIST (\\HasNoChildren) "/" INBOX',
                     f"* STATUS INBOX (APPENDLIMIT {server.config.append_limit})".encode()]


def test_quota_without_a_limit(server: ServerThread) -> None:
    """RFC 9208 §4.2.2: a mailbox with no quota root."""
    client = session(server)
    assert client.ok("GETQUOTAROOT INBOX") == [b"* QUOTAROOT INBOX"]
    assert b"NO [NONEXISTENT]" in client.command('GETQUOTA ""')[1]


def test_quota_with_limits(server: ServerThread) -> None:
    three_messages(server)
    server.call(ops.set_quota(server.store, ALICE, 10 * 1024 * 1024 + 1))
    client = session(server)
    used_bytes, used_messages = server.call(server.store.account_usage(account_id(server)))
    storage = f"STORAGE {math.ceil(used_bytes / 1024)} {10 * 1024 + 1}"
    assert client.ok("GETQUOTAROOT INBOX") == \
        [b'* QUOTAROOT INBOX ""', f'* QUOTA "" ({storage})'.encode()]
    server.call(server.store.set_quota(ALICE, 2048, 100))  # changed while logged in
    assert client.ok('GETQUOTA ""') == \
        [f'* QUOTA "" (STORAGE {math.ceil(used_bytes / 1024)} 2 MESSAGE {used_messages} 100)'
         .encode()]
    # The mailbox need not exist (§4.1.2), and names are sent as in LIST.
    lines = client.ok('GETQUOTAROOT "Entw&APw-rfe"')
    assert lines[0] == b'* QUOTAROOT Entw&APw-rfe ""'
    assert b"NO [NONEXISTENT]" in client.command('GETQUOTA "#user/alice"')[1]


def test_setquota_is_refused(server: ServerThread) -> None:
    server.call(ops.set_quota(server.store, ALICE, 4096))
    client = session(server)
    assert b"NO [NOPERM]" in client.command('SETQUOTA "" (STORAGE 99999999)')[1]
    assert client.ok('GETQUOTA ""')[0].endswith(b" 4)")


def test_imaplib_calls(server: ServerThread) -> None:
    """What a real client library sends and parses."""
    server.call(ops.set_quota(server.store, ALICE, 1024 * 1024))
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                           ssl_context=client_tls_context()) as client:
        client.login(ALICE, PASSWORD)
        assert client.create("Projects/2024")[0] == "OK"
        assert client.create("Projects/2024")[0] == "NO"
        typ, data = client.list()
        assert typ == "OK" and b'(\\HasChildren) "/" Projects' in data
        typ, data = client.list("Projects", "%")
        assert data == [b'(\\HasNoChildren) "/" Projects/2024']
        assert client.rename("Projects/2024", "Projects/Done")[0] == "OK"
        assert client.subscribe("Projects/Done")[0] == "OK"
        typ, data = client.lsub('""', "Projects/*")
        assert data == [b'() "/" Projects/Done']
        typ, data = client.status("Projects/Done", "(MESSAGES UIDNEXT)")
        assert data == [b"Projects/Done (MESSAGES 0 UIDNEXT 1)"]
        assert client.unsubscribe("Projects/Done")[0] == "OK"
        typ, quota_data = client.getquotaroot("INBOX")
        roots, quotas = cast(list[list[bytes]], quota_data)
        assert typ == "OK" and roots == [b'INBOX ""'] and quotas[0].startswith(b'"" (STORAGE')
        assert client.delete("Projects/Done")[0] == "OK"
        assert client.delete("Projects/Done")[0] == "NO"
        typ, data = client.list('""', "Projects*")
        assert data == [b'(\\HasNoChildren) "/" Projects']
