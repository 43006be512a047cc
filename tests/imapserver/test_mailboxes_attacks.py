"""Hostile mailbox names (security catalogue I7), hostile LIST patterns (I9), and mailboxes
changed under a session that has them selected."""

from __future__ import annotations

import time

from tests.e2e.harness import ServerThread
from tests.imapserver.helpers import RawIMAP, deliver
from tests.imapserver.mailbox_support import account_id, listing, message, statuses

DEFAULT_NAMES = {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
TRAVERSAL = ["../x", "/etc/passwd", "a/../../b", "INBOX/..", ".", "", "a//b", "x//", "/"]


def session(server: ServerThread) -> RawIMAP:
    client = RawIMAP(server)
    client.login()
    return client


def quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_traversal_and_empty_levels_are_refused(server: ServerThread) -> None:
    client = session(server)
    for name in TRAVERSAL:
        assert b"NO [CANNOT]" in client.command(f"CREATE {quoted(name)}")[1], name
        assert b"NO [CANNOT]" in client.command(f"RENAME Sent {quoted(name)}")[1], name
        assert b"NO [CANNOT]" in client.command(f"SUBSCRIBE {quoted(name)}")[1], name
        assert b"NO" in client.command(f"DELETE {quoted(name)}")[1], name
        assert b"NO [NONEXISTENT]" in client.command(f"STATUS {quoted(name)} (MESSAGES)")[1]
    assert set(listing(client.ok('LIST "" "*"'))) == DEFAULT_NAMES
    assert listing(client.ok('LSUB "" "*"'), b"LSUB").keys() == DEFAULT_NAMES


def test_rename_inbox_to_an_invalid_name_keeps_the_messages(server: ServerThread) -> None:
    deliver(server, "alice@example.test", message("keep"))
    client = session(server)
    assert b"NO [CANNOT]" in client.command('RENAME INBOX "../x"')[1]
    assert statuses(client.ok("STATUS INBOX (MESSAGES)"))["INBOX"]["MESSAGES"] == "1"


def test_control_characters_never_reach_the_store(server: ServerThread) -> None:
    client = session(server)
    for raw in (b"a\x00b", b"a\rb", b"a\nb", b"a\r\nb", b"\tx", b"a\x7fb"):
        _, tagged = client.command(b"CREATE {%d+}\r\n" % len(raw) + raw)
        assert b" BAD " in tagged, raw
    _, tagged = client.command(b'CREATE "a\x00b"')
    assert b" BAD " in tagged
    client.ok("NOOP")  # the session survived every one of them
    assert set(listing(client.ok('LIST "" "*"'))) == DEFAULT_NAMES


def test_oversized_name_is_refused(server: ServerThread) -> None:
    client = session(server)
    name = "x" * 10240
    _, tagged = client.command(f"CREATE {name}")
    assert b" NO [CANNOT]" in tagged
    _, tagged = client.command(f"CREATE a/{'y' * 10240}")
    assert b" NO [CANNOT]" in tagged
    assert set(listing(client.ok('LIST "" "*"'))) == DEFAULT_NAMES  # no superior left behind
    assert b"NO [NONEXISTENT]" in client.command(f"SELECT {name}")[1]


def test_inbox_is_case_insensitive(server: ServerThread) -> None:
    client = session(server)
    for name in ("inbox", "InBoX", "INBOX"):
        assert b"NO [ALREADYEXISTS]" in client.command(f"CREATE {name}")[1]
        client.ok(f"EXAMINE {name}")
    client.ok("CREATE inbox/Work")
    client.ok("CREATE InBoX/Play")
    assert {"INBOX/Work", "INBOX/Play"} <= set(listing(client.ok('LIST "" "inbox/*"')))
    assert listing(client.ok('LIST "" "InBoX"')) == {"INBOX": {"\\HasChildren"}}


def test_modified_utf7_abuse_is_rejected(server: ServerThread) -> None:
    """RFC 9051 Appendix A.1: only the canonical modified UTF-7 form is a name."""
    client = session(server)
    for wire in ("&", "&Jjo!", "&AGEAYgBj-", "&U,BTFw-&ZeVnLIqe-", "&ZeVnLIqe", "&@@@-"):
        assert b" BAD " in client.command(f"CREATE {quoted(wire)}")[1], wire
    client.ok('CREATE "&-"')  # the correct spelling of "&"
    client.ok('CREATE "a&-b"')
    assert {"&-", "a&-b"} <= set(listing(client.ok('LIST "" "*"')))
    utf8 = session(server)
    utf8.ok("ENABLE IMAP4rev2")
    assert {"&", "a&b"} <= set(listing(utf8.ok('LIST "" "*"')))


def test_pathological_pattern_against_many_mailboxes(server: ServerThread) -> None:
    """Catalogue I9: LIST "" "*%*%*%*%*%*%*%*%b" against 2,000 mailboxes, well under 1 s."""
    owner = account_id(server)

    async def populate() -> None:
        for number in range(2000):
            await server.store.create_mailbox(owner, f"folder{number % 50}/aaaaaaaa{number}")

    server.call(populate(), timeout=120)
    client = session(server)
    client.ok("NOOP")
    started = time.perf_counter()
    lines = client.ok('LIST "" "*%*%*%*%*%*%*%*%b"')
    elapsed = time.perf_counter() - started
    assert lines == []
    assert elapsed < 1.0, elapsed
    hostile = " ".join(['"*a%a*a%a*a%a*a%a*a%a*a%a*a%a*b"'] * 50 + ['"%/%a%a%a%a%a%a%a%a%1999"'])
    started = time.perf_counter()
    lines = client.ok(f'LIST "" ({hostile})')
    elapsed = time.perf_counter() - started
    assert set(listing(lines)) == {"folder49/aaaaaaaa1999"}
    assert elapsed < 1.0, elapsed
    assert len(listing(client.ok('LIST "" "*"'))) == 2000 + len(DEFAULT_NAMES)
    levels = listing(client.ok('LIST "" "%"'))
    assert len(levels) == 50 + len(DEFAULT_NAMES)
    assert levels["folder7"] == {"\\Noselect", "\\HasChildren"}


def test_selected_mailbox_renamed_by_another_session(server: ServerThread) -> None:
    watcher = session(server)
    other = session(server)
    other.ok("CREATE shared")
    watcher.ok("SELECT shared")
    other.ok("RENAME shared moved")
    watcher.ok("NOOP")
    deliver(server, "alice@example.test", message("x"))
    other.ok("RENAME INBOX shared/inbox-copy")
    watcher.ok("NOOP")
    assert "moved/inbox-copy" not in listing(watcher.ok('LIST "" "*"'))
    assert "shared/inbox-copy" in listing(watcher.ok('LIST "" "*"'))


def test_selected_mailbox_deleted_by_another_session(server: ServerThread) -> None:
    """The session whose mailbox vanished must get a clean answer: an untagged BYE (as
    Dovecot does), or a completed command; never a silently dropped connection."""
    watcher = session(server)
    other = session(server)
    other.ok("CREATE doomed")
    watcher.ok("SELECT doomed")
    other.ok("DELETE doomed")
    watcher.send(b"n NOOP\r\n")
    lines: list[bytes] = []
    try:
        while not lines or not lines[-1].startswith(b"n "):
            lines.append(watcher.read_response())
    except ConnectionError:
        pass
    assert lines and (lines[-1].startswith(b"n ") or lines[-1].startswith(b"* BYE"))
