"""CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB and NAMESPACE end to end, with
the examples of RFC 9051 §6.3.4-6.3.10, RFC 3501 §6.3.9 and RFC 6154 §5."""

from __future__ import annotations

from tests.e2e.harness import ServerThread
from tests.imapserver.helpers import RawIMAP, deliver
from tests.imapserver.mailbox_support import extended_items, listing, message, statuses

DEFAULTS = {"INBOX": set(), "Sent": {"\\Sent"}, "Drafts": {"\\Drafts"},
            "Trash": {"\\Trash"}, "Junk": {"\\Junk"}, "Archive": {"\\Archive"}}
CHILDREN_ATTRS = {"\\HasChildren", "\\HasNoChildren"}


def session(server: ServerThread) -> RawIMAP:
    client = RawIMAP(server)
    client.login()
    return client


def names(lines: list[bytes]) -> set[str]:
    return set(listing(lines))


def without_children(result: dict[str, set[str]]) -> dict[str, set[str]]:
    return {name: attrs - CHILDREN_ATTRS for name, attrs in result.items()}


def test_capabilities_are_advertised_after_login(server: ServerThread) -> None:
    client = session(server)
    capabilities = client.ok("CAPABILITY")[0].split()
    for name in (b"NAMESPACE", b"CHILDREN", b"LIST-EXTENDED", b"LIST-STATUS", b"SPECIAL-USE",
                 b"CREATE-SPECIAL-USE", b"STATUS=SIZE", b"QUOTA", b"QUOTA=RES-STORAGE",
                 b"QUOTA=RES-MESSAGE"):
        assert name in capabilities


def test_default_folders_carry_their_special_use(server: ServerThread) -> None:
    client = session(server)
    result = listing(client.ok('LIST "" "*"'))
    assert without_children(result) == DEFAULTS
    assert all("\\HasNoChildren" in attrs for attrs in result.values())
    lines = client.ok('LIST "" "*"')
    assert lines[0] == b'* LIST (\\HasNoChildren) "/" INBOX'  # INBOX first, always "INBOX"
    special = listing(client.ok('LIST (SPECIAL-USE) "" "*"'))
    assert set(special) == set(DEFAULTS) - {"INBOX"}
    returned = listing(client.ok('LIST "" "%" RETURN (SPECIAL-USE)'))
    assert returned["Sent"] >= {"\\Sent"}


def test_delimiter_discovery(server: ServerThread) -> None:
    """RFC 9051 §6.3.9.8, A101: LIST "" "" gives the delimiter and an empty root."""
    client = session(server)
    assert client.ok('LIST "" ""') == [b'* LIST (\\Noselect) "/" ""']
    assert client.ok('LIST "Fruit/Apple" ""') == [b'* LIST (\\Noselect) "/" ""']
    assert client.ok('LSUB "" ""') == [b'* LSUB (\\Noselect) "/" ""']
    # The extended form ignores empty patterns (§6.3.9).
    assert client.ok('LIST "" ("")') == []


def test_create_examples_and_superiors(server: ServerThread) -> None:
    """RFC 9051 §6.3.4 A003/A004: a trailing delimiter declares intent; superiors are made."""
    client = session(server)
    untagged, tagged = client.command("CREATE owatagusiam/")
    assert tagged.startswith(b"t2 OK [MAILBOXID (F") and untagged == []
    client.ok("CREATE owatagusiam/blurdybloop")
    client.ok("CREATE a/b/c")
    result = listing(client.ok('LIST "" "*"'))
    assert result["owatagusiam"] == {"\\HasChildren"}
    assert result["owatagusiam/blurdybloop"] == {"\\HasNoChildren"}
    assert {"a", "a/b", "a/b/c"} <= set(result) and "owatagusiam/" not in result
    assert result["a/b"] == {"\\HasChildren"}
    client.ok("SELECT a/b")  # the superior is a real mailbox


def test_create_refuses_inbox_and_existing_names(server: ServerThread) -> None:
    client = session(server)
    for name in ("INBOX", "inbox", "InBoX", "INBOX/"):
        assert b"NO [ALREADYEXISTS]" in client.command(f"CREATE {name}")[1]
    client.ok("CREATE Work")
    assert b"NO [ALREADYEXISTS]" in client.command("CREATE Work")[1]
    assert b"NO [ALREADYEXISTS]" in client.command("CREATE Work/")[1]


def test_create_special_use(server: ServerThread) -> None:
    """RFC 6154 §5.3: CREATE with USE; unsupported uses are NO [USEATTR]."""
    client = session(server)
    client.ok("CREATE MySpecial (USE (\\Drafts))")
    assert listing(client.ok('LIST "" MySpecial'))["MySpecial"] >= {"\\Drafts"}
    _, tagged = client.command("CREATE Everything (USE (\\All))")
    assert b"NO [USEATTR]" in tagged
    _, tagged = client.command("CREATE Both (USE (\\Drafts \\Sent))")
    assert b"NO [USEATTR]" in tagged
    assert names(client.ok('LIST "" "*"')).isdisjoint({"Everything", "Both"})


def test_delete_example_with_inferiors(server: ServerThread) -> None:
    """RFC 9051 §6.3.5, second example (with "/" for "."): DELETE keeps the inferiors."""
    client = session(server)
    for name in ("blurdybloop", "foo", "foo/bar"):
        client.ok(f"CREATE {name}")
    client.ok("DELETE blurdybloop")
    client.ok("DELETE foo")
    everything = listing(client.ok('LIST "" *'))
    assert "foo/bar" in everything and "foo" not in everything and "blurdybloop" not in everything
    assert listing(client.ok('LIST "" %'))["foo"] == {"\\Noselect", "\\HasChildren"}
    _, tagged = client.command("DELETE foo")  # a \Noselect level: error (§6.3.5, A684)
    assert b"NO [NONEXISTENT]" in tagged
    client.ok("DELETE foo/bar")
    assert not {"foo", "foo/bar"} & names(client.ok('LIST "" *'))


def test_missing_levels_are_nonexistent_for_imap4rev2_clients(server: ServerThread) -> None:
    """RFC 9051 §7.3.1 makes \\NonExistent a base attribute; IMAP4rev1 basic LIST keeps the
    RFC 3501 \\Noselect."""
    client = session(server)
    client.ok("CREATE level/leaf")
    client.ok("DELETE level")
    assert listing(client.ok('LIST "" "%"'))["level"] == {"\\Noselect", "\\HasChildren"}
    assert listing(client.ok('LIST () "" "%"'))["level"] == {"\\NonExistent", "\\HasChildren"}
    client.ok("ENABLE IMAP4rev2")
    assert listing(client.ok('LIST "" "%"'))["level"] == {"\\NonExistent", "\\HasChildren"}
    assert b"NO [NONEXISTENT]" in client.command("SELECT level")[1]


def test_delete_errors(server: ServerThread) -> None:
    client = session(server)
    assert b"NO [CANNOT]" in client.command("DELETE INBOX")[1]
    assert b"NO [CANNOT]" in client.command("DELETE inbox")[1]
    assert b"NO [NONEXISTENT]" in client.command("DELETE nothing-here")[1]


def test_delete_the_selected_mailbox(server: ServerThread) -> None:
    client = session(server)
    client.ok("CREATE doomed")
    client.ok("SELECT doomed")
    assert client.ok("DELETE doomed") == [b"* OK [CLOSED] The selected mailbox was deleted"]
    _, tagged = client.command("FETCH 1 FLAGS")
    assert b"BAD" in tagged  # back in the authenticated state
    client.ok("NOOP")
    client.ok("SELECT INBOX")


def test_rename_examples(server: ServerThread) -> None:
    """RFC 9051 §6.3.6, first example: children move with their parent, even when the
    parent is a \\Noselect level."""
    client = session(server)
    for name in ("blurdybloop", "foo/bar"):
        client.ok(f"CREATE {name}")
    client.ok("DELETE foo")
    client.ok("RENAME blurdybloop sarasoop")
    client.ok("RENAME foo zowie")
    result = listing(client.ok('LIST "" *'))
    assert {"sarasoop", "zowie/bar"} <= set(result)
    assert not {"blurdybloop", "foo", "foo/bar"} & set(result)
    assert listing(client.ok('LIST "" %'))["zowie"] == {"\\Noselect", "\\HasChildren"}


def test_rename_moves_the_subtree_and_makes_superiors(server: ServerThread) -> None:
    client = session(server)
    client.ok("CREATE a/b/c")
    client.ok("SUBSCRIBE a/b")
    status_before = statuses(client.ok("STATUS a/b (UIDVALIDITY MAILBOXID)"))["a/b"]
    client.ok("RENAME a/b x/y/z")
    result = names(client.ok('LIST "" *'))
    assert {"a", "x", "x/y", "x/y/z", "x/y/z/c"} <= result
    assert not {"a/b", "a/b/c"} & result
    after = statuses(client.ok("STATUS x/y/z (UIDVALIDITY MAILBOXID)"))["x/y/z"]
    assert after == status_before  # RFC 8474 §4: same MAILBOXID, UIDVALIDITY kept
    assert "x/y/z" in listing(client.ok('LSUB "" *'), b"LSUB")


def test_rename_errors(server: ServerThread) -> None:
    client = session(server)
    client.ok("CREATE one")
    client.ok("CREATE two")
    assert b"NO [NONEXISTENT]" in client.command("RENAME nothing x")[1]
    assert b"NO [ALREADYEXISTS]" in client.command("RENAME one two")[1]
    assert b"NO [ALREADYEXISTS]" in client.command("RENAME one INBOX")[1]
    assert b"NO [CANNOT]" in client.command("RENAME one one/inside")[1]
    assert {"one", "two"} <= names(client.ok('LIST "" *'))


def test_rename_inbox_moves_its_messages(server: ServerThread) -> None:
    """RFC 9051 §6.3.6, Z432-Z434: INBOX stays (empty), its inferiors stay."""
    for number in range(3):
        deliver(server, "alice@example.test", message(f"m{number}"))
    client = session(server)
    client.ok("CREATE INBOX/bar")
    client.ok("RENAME INBOX old-mail")
    assert {"INBOX", "INBOX/bar", "old-mail"} <= names(client.ok('LIST "" *'))
    result = statuses(client.ok("STATUS INBOX (MESSAGES)") + client.ok("STATUS old-mail (MESSAGES)"))
    assert result == {"INBOX": {"MESSAGES": "0"}, "old-mail": {"MESSAGES": "3"}}
    deliver(server, "alice@example.test", message("after"))
    assert statuses(client.ok("STATUS INBOX (MESSAGES)"))["INBOX"]["MESSAGES"] == "1"
    assert b"NO [ALREADYEXISTS]" in client.command("RENAME INBOX old-mail")[1]


def test_rename_inbox_while_selected_expunges_in_view(server: ServerThread) -> None:
    deliver(server, "alice@example.test", message("one"))
    client = session(server)
    client.ok("SELECT INBOX")
    lines = client.ok("RENAME INBOX kept")
    assert b"* 1 EXPUNGE" in lines
    assert statuses(client.ok("STATUS kept (MESSAGES)"))["kept"]["MESSAGES"] == "1"


def test_subscribe_and_lsub(server: ServerThread) -> None:
    """RFC 9051 §6.3.7/8 and RFC 3501 §6.3.9 (with "/" for the examples' ".")."""
    client = session(server)
    client.ok("SUBSCRIBE #news.comp.mail.mime")  # a name that does not exist is fine
    client.ok("SUBSCRIBE news/comp/mail/mime")
    client.ok("SUBSCRIBE news/comp/mail/misc")
    client.ok("SUBSCRIBE news/comp/mail/misc")  # already subscribed: still OK
    lsub = listing(client.ok('LSUB "news/" "comp/mail/*"'), b"LSUB")
    assert lsub == {"news/comp/mail/mime": set(), "news/comp/mail/misc": set()}
    assert listing(client.ok('LSUB "news/" "comp/%"'), b"LSUB") == \
        {"news/comp/mail": {"\\Noselect"}}
    subscribed = listing(client.ok('LIST (SUBSCRIBED) "" "*"'))
    assert subscribed["#news.comp.mail.mime"] >= {"\\Subscribed", "\\NonExistent"}
    assert subscribed["INBOX"] >= {"\\Subscribed"}
    client.ok("UNSUBSCRIBE #news.comp.mail.mime")
    client.ok("UNSUBSCRIBE #news.comp.mail.mime")  # not subscribed: still OK
    assert "#news.comp.mail.mime" not in names(client.ok('LIST (SUBSCRIBED) "" "*"'))


def test_list_selection_and_return_options(server: ServerThread) -> None:
    """RFC 9051 §6.3.9.8 example 7 on a live server."""
    client = session(server)
    for name in ("Foo/Bar", "Foo/Baz", "Moo"):
        client.ok(f"CREATE {name}")
    client.ok("SUBSCRIBE Foo/Baz")
    client.ok("UNSUBSCRIBE INBOX")
    assert names(client.ok('LIST (SUBSCRIBED) "" "*"')) == {"Foo/Baz"} | set(DEFAULTS) - {"INBOX"}
    assert "Foo" not in names(client.ok('LIST (SUBSCRIBED) "" "%"'))
    lines = client.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert listing(lines)["Foo"] == {"\\HasChildren"}
    assert extended_items(lines) == {"Foo": b'("CHILDINFO" ("SUBSCRIBED"))'}
    children = listing(client.ok('LIST () "" "%" RETURN (CHILDREN)'))
    assert children["Foo"] == {"\\HasChildren"} and children["Moo"] == {"\\HasNoChildren"}
    with_subs = listing(client.ok('LIST "" "*" RETURN (SUBSCRIBED)'))
    assert with_subs["Foo/Baz"] == {"\\Subscribed", "\\HasNoChildren"}
    assert with_subs["INBOX"] == {"\\HasNoChildren"}
    assert names(client.ok('LIST (REMOTE) "" "%"')) == names(client.ok('LIST "" "%"'))


def test_list_multiple_patterns_and_reference(server: ServerThread) -> None:
    client = session(server)
    for name in ("archive/2023", "archive/2024/q1", "music/rock"):
        client.ok(f"CREATE {name}")
    client.ok("DELETE music")
    assert names(client.ok('LIST "" (INBOX "archive/%")')) == \
        {"INBOX", "archive/2023", "archive/2024"}
    assert names(client.ok('LIST "archive/" "%"')) == {"archive/2023", "archive/2024"}
    assert names(client.ok('LIST "archive/" "*"')) == \
        {"archive/2023", "archive/2024", "archive/2024/q1"}
    assert names(client.ok('LIST "" "inbox"')) == {"INBOX"}
    assert listing(client.ok('LIST () "" "%"'))["music"] == {"\\NonExistent", "\\HasChildren"}
    assert names(client.ok('LIST "" (% music/rock)')) >= {"music/rock"}
    assert "music" not in names(client.ok('LIST "" (% music/rock)'))
    assert client.ok('LIST "" "nothing*"') == []


def test_list_patterns_percent_and_star(server: ServerThread) -> None:
    client = session(server)
    client.ok("CREATE a/b/c")
    client.ok("CREATE ab")
    assert names(client.ok('LIST "" "a%"')) == {"a", "ab"}
    assert names(client.ok('LIST "" "a/%"')) == {"a/b"}
    assert names(client.ok('LIST "" "a/*"')) == {"a/b", "a/b/c"}
    assert names(client.ok('LIST "" "a*"')) == {"a", "a/b", "a/b/c", "ab"}
    assert names(client.ok('LIST "" "%/%/%"')) == {"a/b/c"}
    assert names(client.ok('LIST "" "*c"')) == {"a/b/c"}


def test_namespace(server: ServerThread) -> None:
    """RFC 9051 §6.3.10 example 1 / RFC 2342 §5."""
    client = session(server)
    assert client.ok("NAMESPACE") == [b'* NAMESPACE (("" "/")) NIL NIL']


def test_modified_utf7_and_utf8_names(server: ServerThread) -> None:
    """RFC 9051 §5.1.3 / Appendix A.1: the same mailbox in mUTF-7 (IMAP4rev1) and in UTF-8
    (after ENABLE IMAP4rev2)."""
    old = session(server)
    old.ok('CREATE "~peter/mail/&U,BTFw-/&ZeVnLIqe-"')
    assert {"~peter", "~peter/mail", "~peter/mail/&U,BTFw-", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"} \
        == names(old.ok('LIST "" "~peter*"'))
    new = session(server)
    assert new.ok("ENABLE IMAP4rev2") == [b"* ENABLED IMAP4REV2"]
    assert "~peter/mail/台北/日本語" in names(new.ok('LIST "" "~peter/*"'))
    assert old.ok('LIST "" "~peter/mail/%/%"') == \
        [b'* LIST (\\HasNoChildren) "/" ~peter/mail/&U,BTFw-/&ZeVnLIqe-']
    new.ok('CREATE "Entwürfe"'.encode())
    new.ok('CREATE "Ma\u0308rz"'.encode())  # not NFC: stored as NFC (RFC 9051 §5.1)
    new.ok('SELECT "März"'.encode())
    utf8 = names(new.ok('LIST "" "*"'))
    assert {"Entwürfe", "März"} <= utf8
    assert statuses(new.ok('STATUS "Entwürfe" (MESSAGES)'.encode())) == \
        {"Entwürfe": {"MESSAGES": "0"}}
    assert {"Entw&APw-rfe", "M&AOQ-rz"} <= names(old.ok('LIST "" "*"'))
    assert statuses(old.ok("STATUS Entw&APw-rfe (MESSAGES)")) == \
        {"Entw&APw-rfe": {"MESSAGES": "0"}}
    assert listing(new.ok(b'LSUB "" "*"'), b"LSUB") == {
        name: set() for name in DEFAULTS}
    new.ok('SUBSCRIBE "日本語"'.encode())
    assert "日本語" in listing(new.ok('LSUB "" "*"'), b"LSUB")
    assert "&ZeVnLIqe-" in listing(old.ok('LSUB "" "*"'), b"LSUB")
