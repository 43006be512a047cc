"""Every command form, mostly taken from the examples of RFC 9051 §6 and the extension RFCs.

Each case feeds one command to a fresh, authenticated protocol machine (literals accepted)
and compares the single event it produces with the expected typed command.
"""

from __future__ import annotations

import datetime as dt

import pytest

from mailpost.imap import commands as c
from mailpost.imap import events as ev
from mailpost.imap.fetchatt import (
    BinarySection,
    BinarySize,
    BodySection,
    FetchItem,
    Partial,
    Section,
)
from mailpost.imap.search import (
    AllKey,
    AndKey,
    DateKey,
    FlagKey,
    HeaderKey,
    ModSeqKey,
    NotKey,
    OrKey,
    SequenceKey,
    SizeKey,
    TextKey,
)
from mailpost.imap.seqset import SequenceSet
from mailpost.store.types import FlagMode

from .imap_helpers import one


def S(text: str) -> SequenceSet:
    return SequenceSet.parse(text)


FLAGS, INTERNALDATE, SIZE, ENVELOPE = (
    FetchItem("FLAGS"), FetchItem("INTERNALDATE"), FetchItem("RFC822.SIZE"), FetchItem("ENVELOPE")
)

CASES: list[tuple[bytes, object]] = [
    # --- any state (RFC 9051 §6.1, RFC 2971, RFC 5161) ---
    (b"abcd CAPABILITY", c.Capability("abcd")),
    (b"a002 NOOP", c.Noop("a002")),
    (b"A023 LOGOUT", c.Logout("A023")),
    (b"a006 logout", c.Logout("a006")),
    (
        b'a023 ID ("name" "sodr" "version" "19.34" "vendor" "Pink Floyd Music Limited")',
        c.Id("a023", (("name", "sodr"), ("version", "19.34"),
                      ("vendor", "Pink Floyd Music Limited"))),
    ),
    (b"a042 ID NIL", c.Id("a042", None)),
    (b'a043 ID ("os" NIL)', c.Id("a043", (("os", None),))),
    (b"t2 ENABLE CONDSTORE X-GOOD-IDEA", c.Enable("t2", ("CONDSTORE", "X-GOOD-IDEA"))),
    (b"babc ENABLE IMAP4rev2", c.Enable("babc", ("IMAP4REV2",))),
    # --- not authenticated (RFC 9051 §6.2) ---
    (b"a002 STARTTLS", c.StartTLS("a002")),
    (b"A001 AUTHENTICATE GSSAPI", c.Authenticate("A001", "GSSAPI", None)),
    (
        b"A03 AUTHENTICATE PLAIN dGVzdAB0ZXN0AHRlc3Q=",
        c.Authenticate("A03", "PLAIN", b"test\x00test\x00test"),
    ),
    (b"A01 AUTHENTICATE EXTERNAL =", c.Authenticate("A01", "EXTERNAL", b"")),
    (b"a001 LOGIN SMITH SESAME", c.Login("a001", "SMITH", "SESAME")),
    (b'b LOGIN "fred" "foo"', c.Login("b", "fred", "foo")),
    (b'a LOGIN "f\\"r\\\\ed" ""', c.Login("a", 'f"r\\ed', "")),
    (b"A001 LOGIN {11}\r\nFRED FOOBAR {7}\r\nfat man", c.Login("A001", "FRED FOOBAR", "fat man")),
    (b"A001 LOGIN {11+}\r\nFRED FOOBAR {7+}\r\nfat man", c.Login("A001", "FRED FOOBAR", "fat man")),
    # --- authenticated (RFC 9051 §6.3) ---
    (b"A142 SELECT INBOX", c.Select("A142", "INBOX")),
    (b"d select inbox", c.Select("d", "INBOX")),
    (b'f select "/archive/projects/experiment-iv"',
     c.Select("f", "/archive/projects/experiment-iv")),
    (b"A142 SELECT INBOX (CONDSTORE)", c.Select("A142", "INBOX", condstore=True)),
    (
        b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        c.Select("A02", "INBOX", qresync=c.QResync(67890007, 20050715194045000,
                                                   S("41,43:211,214:541"))),
    ),
    (
        (b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,"
        b"9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,"
        b"29997)))"),
        c.Select("B04", "INBOX", qresync=c.QResync(
            67890007, 90060115194045000, S("1:29997"), S("5000,7500,9000,9990:9999"),
            S("15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997"),
        )),
    ),
    (b"A932 EXAMINE blurdybloop", c.Examine("A932", "blurdybloop")),
    (b"A003 CREATE owatagusiam/", c.Create("A003", "owatagusiam/")),
    (b'A004 CREATE "Sent Mail"', c.Create("A004", "Sent Mail")),
    (b"t2 CREATE MySpecial (USE (\\Drafts \\Sent))",
     c.Create("t2", "MySpecial", ("\\Drafts", "\\Sent"))),
    (b"t3 CREATE Everything (USE (\\all))", c.Create("t3", "Everything", ("\\All",))),
    (b"A683 DELETE blurdybloop", c.Delete("A683", "blurdybloop")),
    (b"A683 RENAME blurdybloop sarasoop", c.Rename("A683", "blurdybloop", "sarasoop")),
    (b"Z433 RENAME inbox old-mail", c.Rename("Z433", "INBOX", "old-mail")),
    (b"A002 SUBSCRIBE #news.comp.mail.mime", c.Subscribe("A002", "#news.comp.mail.mime")),
    (b"A002 UNSUBSCRIBE #news.comp.mail.mime", c.Unsubscribe("A002", "#news.comp.mail.mime")),
    (b'A101 LIST "" ""', c.List("A101", "", ("",))),
    (b'A102 LIST #news.comp.mail.misc ""', c.List("A102", "#news.comp.mail.misc", ("",))),
    (b"A202 LIST ~/Mail/ %", c.List("A202", "~/Mail/", ("%",))),
    (b'A682 LIST "" *', c.List("A682", "", ("*",))),
    (b'A02 LIST (SUBSCRIBED) "" "*"',
     c.List("A02", "", ("*",), c.ListSelection(subscribed=True), extended=True)),
    (b'A03 LIST () "" "%" RETURN (CHILDREN)',
     c.List("A03", "", ("%",), returns=c.ListReturn(children=True), extended=True)),
    (b'A04 LIST (REMOTE) "" "%" RETURN (CHILDREN)',
     c.List("A04", "", ("%",), c.ListSelection(remote=True), c.ListReturn(children=True),
            extended=True)),
    (b'C04 LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"',
     c.List("C04", "", ("%",), c.ListSelection(subscribed=True, recursive_match=True),
            extended=True)),
    (b'a3.1 LIST "" (% music/rock)', c.List("a3.1", "", ("%", "music/rock"), extended=True)),
    (b'A01 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))',
     c.List("A01", "", ("%",), returns=c.ListReturn(status=("MESSAGES", "UNSEEN")),
            extended=True)),
    (b't3 LIST (SPECIAL-USE) "" "*"',
     c.List("t3", "", ("*",), c.ListSelection(special_use=True), extended=True)),
    (b'11 list "" "*" return (status (mailboxid))',
     c.List("11", "", ("*",), returns=c.ListReturn(status=("MAILBOXID",)), extended=True)),
    (b'A002 LSUB "#news." "comp.mail.*"', c.Lsub("A002", "#news.", "comp.mail.*")),
    (b"A042 STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ)",
     c.Status("A042", "blurdybloop", ("UIDNEXT", "MESSAGES", "HIGHESTMODSEQ"))),
    (b"S0003 STATUS INBOX (MESSAGES DELETED DELETED-STORAGE)",
     c.Status("S0003", "INBOX", ("MESSAGES", "DELETED", "DELETED-STORAGE"))),
    (b"6 status foo (mailboxid size appendlimit)",
     c.Status("6", "foo", ("MAILBOXID", "SIZE", "APPENDLIMIT"))),
    (b"A001 NAMESPACE", c.Namespace("A001")),
    (b"A002 IDLE", c.Idle("A002")),
    (b"c compress deflate", c.Compress("c", "DEFLATE")),
    (b'G0001 GETQUOTA "!partition/sda4"', c.GetQuota("G0001", "!partition/sda4")),
    (b"G0002 GETQUOTAROOT INBOX", c.GetQuotaRoot("G0002", "INBOX")),
    (b'S0001 SETQUOTA "#user/alice" (STORAGE 510)',
     c.SetQuota("S0001", "#user/alice", (("STORAGE", 510),))),
    (b"S0002 SETQUOTA x ()", c.SetQuota("S0002", "x", ())),
    (b"a notify set (mailboxes INBOX (Messagenew messageExpunge))",
     c.Notify("a", (c.NotifyGroup("MAILBOXES", ("INBOX",), (
         c.NotifyEvent("MessageNew"), c.NotifyEvent("MessageExpunge"))),))),
    (
        (b"b notify set status (selected (MessageNew (uid body.peek[header.fields (from to "
        b"subject)]) MessageExpunge)) (subtree Lists (MessageNew))"),
        c.Notify("b", (
            c.NotifyGroup("SELECTED", (), (
                c.NotifyEvent("MessageNew", (
                    FetchItem("UID"),
                    BodySection(Section((), "HEADER.FIELDS", ("from", "to", "subject")),
                                peek=True),
                )),
                c.NotifyEvent("MessageExpunge"),
            )),
            c.NotifyGroup("SUBTREE", ("Lists",), (c.NotifyEvent("MessageNew"),)),
        ), status=True),
    ),
    (b"c notify set (personal NONE) (mailboxes (a b) (MailboxName))",
     c.Notify("c", (c.NotifyGroup("PERSONAL", (), None),
                    c.NotifyGroup("MAILBOXES", ("a", "b"), (c.NotifyEvent("MailboxName"),))))),
    (b"d NOTIFY NONE", c.Notify("d", None)),
    # --- selected (RFC 9051 §6.4) ---
    (b"A341 CLOSE", c.Close("A341")),
    (b"A342 UNSELECT", c.Unselect("A342")),
    (b"A202 EXPUNGE", c.Expunge("A202")),
    (b"A201 CHECK", c.Check("A201")),
    (b"A003 UID EXPUNGE 3000:3002", c.UidExpunge("A003", S("3000:3002"))),
    (b'A284 SEARCH TEXT "string not in mailbox"',
     c.Search("A284", TextKey("TEXT", "string not in mailbox"))),
    (
        b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"',
        c.Search("A282", AndKey((FlagKey("\\Flagged"),
                                 DateKey("INTERNAL", "SINCE", dt.date(1994, 2, 1)),
                                 NotKey(HeaderKey("FROM", "Smith")))),
                 return_options=("MIN", "COUNT")),
    ),
    (b"A283 SEARCH RETURN () FLAGGED",
     c.Search("A283", FlagKey("\\Flagged"), return_options=("ALL",))),
    (b"C283 SEARCH RETURN (ALL SAVE) SINCE 12-Feb-2006",
     c.Search("C283", DateKey("INTERNAL", "SINCE", dt.date(2006, 2, 12)),
              return_options=("ALL", "SAVE"))),
    (
        "A285 SEARCH CHARSET UTF-8 TEXT {12}\r\nотпуск".encode(),
        c.Search("A285", TextKey("TEXT", "отпуск"), charset="UTF-8"),
    ),
    (
        "P283 SEARCH CHARSET UTF-8 (OR $ 1,3000:3021) TEXT {8+}\r\nмать".encode(),
        c.Search("P283", AndKey((OrKey(SequenceKey(SequenceSet((), saved=True)),
                                       SequenceKey(S("1,3000:3021"))),
                                 TextKey("TEXT", "мать"))), charset="UTF-8"),
    ),
    (b"A301 UID SEARCH UID $ SMALLER 4096",
     c.Search("A301", AndKey((SequenceKey(S("$"), uid=True), SizeKey("SMALLER", 4096))),
              uid=True)),
    (b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338',
     c.Search("a", ModSeqKey(620162338, "\\draft", "all"))),
    (b"t SEARCH OR NOT MODSEQ 720162338 LARGER 50000",
     c.Search("t", OrKey(NotKey(ModSeqKey(720162338)), SizeKey("LARGER", 50000)))),
    (b"h search from maria@example.com", c.Search("h", HeaderKey("FROM", "maria@example.com"))),
    (b"s SEARCH NEW OLD UNKEYWORD $Junk",
     c.Search("s", AndKey((AndKey((FlagKey("\\Recent"), FlagKey("\\Seen", False))),
                           FlagKey("\\Recent", False), FlagKey("$Junk", False))))),
    (b'x SEARCH HEADER X-Spam "" (ALL)', c.Search("x", AndKey((HeaderKey("X-SPAM", ""),
                                                               AllKey())))),
    (b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])",
     c.Fetch("A654", S("2:4"), (FLAGS, BodySection(Section((), "HEADER.FIELDS",
                                                           ("DATE", "FROM"))))),
     ),
    (b"a003 fetch 12 full",
     c.Fetch("a003", S("12"), (FLAGS, INTERNALDATE, SIZE, ENVELOPE, FetchItem("BODY")))),
    (b"A003 FETCH 4 ALL", c.Fetch("A003", S("4"), (FLAGS, INTERNALDATE, SIZE, ENVELOPE))),
    (b"a004 fetch 12 body[header]",
     c.Fetch("a004", S("12"), (BodySection(Section((), "HEADER")),))),
    (b"A999 UID FETCH 4827313:4828442 FLAGS",
     c.Fetch("A999", S("4827313:4828442"), (FLAGS,), uid=True)),
    (b"A283 FETCH $ (UID INTERNALDATE FLAGS BODY.PEEK[HEADER])",
     c.Fetch("A283", S("$"), (FetchItem("UID"), INTERNALDATE, FLAGS,
                              BodySection(Section((), "HEADER"), peek=True)))),
    (b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
     c.Fetch("s100", S("1:*"), (FLAGS,), uid=True, changed_since=12345)),
    (b"s100 UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
     c.Fetch("s100", S("300:500"), (FLAGS,), uid=True, changed_since=12345, vanished=True)),
    (b"a FETCH 1:3 (MODSEQ)", c.Fetch("a", S("1:3"), (FetchItem("MODSEQ"),))),
    (b"22 fetch 1:* (emailid threadid)",
     c.Fetch("22", S("1:*"), (FetchItem("EMAILID"), FetchItem("THREADID")))),
    (b"t FETCH 1 (BINARY.PEEK[1.2]<0.100> BINARY.SIZE[1] BINARY[])",
     c.Fetch("t", S("1"), (BinarySection((1, 2), Partial(0, 100), peek=True),
                           BinarySize((1,)), BinarySection(())))),
    (b"u FETCH 1 (RFC822 RFC822.HEADER RFC822.TEXT BODYSTRUCTURE BODY[1.2.MIME] BODY[]<5.10>)",
     c.Fetch("u", S("1"), (FetchItem("RFC822"), FetchItem("RFC822.HEADER"),
                           FetchItem("RFC822.TEXT"), FetchItem("BODYSTRUCTURE"),
                           BodySection(Section((1, 2), "MIME")),
                           BodySection(Section(), Partial(5, 10))))),
    (b"v FETCH 1 BODY[3.HEADER.FIELDS.NOT (Received)]",
     c.Fetch("v", S("1"), (BodySection(Section((3,), "HEADER.FIELDS.NOT", ("Received",))),))),
    (b"A003 STORE 2:4 +FLAGS (\\Deleted)",
     c.Store("A003", S("2:4"), FlagMode.ADD, False, ("\\Deleted",))),
    (b"a005 store 12 +flags \\deleted", c.Store("a005", S("12"), FlagMode.ADD, False,
                                                ("\\Deleted",))),
    (b"F284 STORE $ +FLAGS.Silent (\\Deleted)",
     c.Store("F284", S("$"), FlagMode.ADD, True, ("\\Deleted",))),
    (b"a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)",
     c.Store("a103", S("6,4,8"), FlagMode.ADD, True, ("\\Deleted",), uid=True,
             unchanged_since=12121230045)),
    (b"A150 STORE 1:2 (UNCHANGEDSINCE 96) +FLAGS.SILENT \\Seen",
     c.Store("A150", S("1:2"), FlagMode.ADD, True, ("\\Seen",), unchanged_since=96)),
    (b"a102 STORE 12 (UNCHANGEDSINCE 0) -FLAGS ($NoJunk)",
     c.Store("a102", S("12"), FlagMode.REMOVE, False, ("$NoJunk",), unchanged_since=0)),
    (b"m STORE 42 FLAGS f1 f2 f3", c.Store("m", S("42"), FlagMode.REPLACE, False,
                                          ("f1", "f2", "f3"))),
    (b"n STORE 1 FLAGS ()", c.Store("n", S("1"), FlagMode.REPLACE, False, ())),
    (b"A003 COPY 2:4 MEETING", c.Copy("A003", S("2:4"), "MEETING")),
    (b"A005 UID COPY 305:310 meeting", c.Copy("A005", S("305:310"), "meeting", uid=True)),
    (b'E283 COPY $ "Other Messages"', c.Copy("E283", S("$"), "Other Messages")),
    (b"a UID MOVE 42:69 foo", c.Move("a", S("42:69"), "foo", uid=True)),
    (b"b MOVE 1 INBOX", c.Move("b", S("1"), "INBOX")),
    (b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994",
     c.Sort("A282", (c.SortCriterion("SUBJECT"),), "UTF-8",
            DateKey("INTERNAL", "SINCE", dt.date(1994, 2, 1)))),
    (b"A283 SORT (SUBJECT REVERSE DATE) UTF-8 ALL",
     c.Sort("A283", (c.SortCriterion("SUBJECT"), c.SortCriterion("DATE", reverse=True)),
            "UTF-8", AllKey())),
    (b'A284 SORT (SUBJECT) US-ASCII TEXT "not in mailbox"',
     c.Sort("A284", (c.SortCriterion("SUBJECT"),), "US-ASCII",
            TextKey("TEXT", "not in mailbox"))),
    (b"a SORT RETURN (ALL) (DATE) UTF-8 MODSEQ 1234",
     c.Sort("a", (c.SortCriterion("DATE"),), "UTF-8", ModSeqKey(1234),
            return_options=("ALL",))),
    (b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000",
     c.Thread("A283", "ORDEREDSUBJECT", "UTF-8",
              DateKey("INTERNAL", "SINCE", dt.date(2000, 3, 5)))),
    (b"A285 UID THREAD REFERENCES US-ASCII ALL",
     c.Thread("A285", "REFERENCES", "US-ASCII", AllKey(), uid=True)),
]


@pytest.mark.parametrize(("line", "expected"), CASES, ids=lambda v: repr(v)[:50])
def test_command_parses_to_its_typed_form(line: bytes, expected: object) -> None:
    assert one(line + b"\r\n") == expected


BAD: list[bytes] = [
    b"A442 XPIG-LATIN",  # RFC 9051 §7.1.3 example
    b"a NOOP extra",
    b"a  NOOP",  # SP is exactly one space (RFC 9051 §9 note 2)
    b"a\tNOOP",
    b"a NOOP ",
    b"a LOGIN fred",
    b"a LOGIN fred pass extra",
    b"a FETCH 0 FLAGS",
    b"a FETCH 4294967296 FLAGS",
    b"a FETCH 1 FLAGS ()",
    b"a FETCH 1 ()",
    b"a FETCH 1 (FLAGS BODY[HEADER.FIELDS ()])",
    b"a FETCH 1 BODY[MIME]",  # MIME needs a part number
    b"a FETCH 1 BODY[0]",
    b"a FETCH 1 BODY[1.]",
    b"a FETCH 1 BODY[]<1.0>",
    b"a FETCH 1 BODY[]<1>",
    b"a FETCH 1 ENVELOPE[]",
    b"a FETCH 1 (FLAGS) (VANISHED)",  # RFC 7162 §3.2.6: UID FETCH only
    b"a UID FETCH 1 (FLAGS) (VANISHED)",  # ... and only with CHANGEDSINCE
    b"a UID FETCH 1 (FLAGS) (CHANGEDSINCE 0)",
    b"a UID FETCH 1 (FLAGS) (FOO)",
    b'a LIST (RECURSIVEMATCH) "" "*"',  # RFC 9051 §9 list-select-opts
    b'a LIST (REMOTE RECURSIVEMATCH) "" "*"',
    b'a LIST (FOO) "" "*"',  # RFC 9051 §6.3.9: unknown options are BAD
    b'a LIST "" "*" RETURN (FOO)',
    b'a LIST "" "*" FOO (CHILDREN)',
    b"a STATUS INBOX (FOO)",
    b"a STATUS INBOX ()",
    b"a STATUS INBOX",
    b"a SELECT INBOX (FOO)",
    b"a SELECT INBOX (QRESYNC (0 1))",
    b"a SELECT INBOX (QRESYNC (1 1 1:*))",  # RFC 7162 §7: no "*" in known-uids
    b"a CREATE x (USE (Drafts))",
    b"a STORE 1 +FLAGS (\\*)",
    b"a STORE 1 FLAGS",
    b"a STORE 1 *FLAGS (\\Seen)",
    b"a STORE 1 (UNCHANGEDSINCE x) FLAGS (\\Seen)",
    b"a ENABLE",
    b"a AUTHENTICATE PLAIN =AAA",  # RFC 9051 §6.2.2: "=" only at the end
    b"a AUTHENTICATE PLAIN AAA=BBB",
    b"a AUTHENTICATE PLAIN AAAA!",
    b"a SEARCH",
    b"a SEARCH ()",
    b"a SEARCH FOO",
    b"a SEARCH SINCE 31-Feb-2020",
    b"a SEARCH SINCE 1-Foo-2020",
    b"a SEARCH KEYWORD \\Seen",
    b"a SEARCH RETURN (FOO) ALL",
    b"a SEARCH OR ALL",
    b"a SEARCH (ALL",
    b"a SEARCH ALL)",
    b"a SEARCH 0",
    b"a SORT (FOO) UTF-8 ALL",
    b"a SORT () UTF-8 ALL",
    b"a UID FOO 1",
    b"a UID",
    b'a ID ("a" "b"',
    b"a GETQUOTA",
    b"a SETQUOTA r (STORAGE)",
    b"a NOTIFY SET (selected (MessageNew) (uid))",
    b"a NOTIFY SET (selected (MessageNew)) (selected-delayed (MessageNew))",
    b"a NOTIFY SET (everything (MessageNew))",
    b"a NOTIFY MAYBE",
    b"a COMPRESS",
    b"a APPEND INBOX",
    b'a APPEND INBOX "bad-date" {3}',
]


@pytest.mark.parametrize("line", BAD, ids=lambda v: v.decode(errors="replace")[:50])
def test_invalid_command_is_a_tagged_bad(line: bytes) -> None:
    event = one(line + b"\r\n")
    assert isinstance(event, ev.BadCommand)
    assert event.tag == "a" or event.tag == line.split(b" ")[0].decode()
    assert event.response.to_bytes().startswith(event.tag.encode() + b" BAD ")


@pytest.mark.parametrize("line", [b"* NOOP", b"+ NOOP", b"", b" NOOP", b"(a) NOOP"])
def test_a_line_without_a_valid_tag_gets_an_untagged_bad(line: bytes) -> None:
    event = one(line + b"\r\n")
    assert isinstance(event, ev.BadCommand) and event.tag is None
    assert event.response.to_bytes().startswith(b"* BAD ")


def test_unsupported_search_charset_is_no_badcharset() -> None:
    # RFC 9051 §6.4.4; the strings after it are never looked at.
    event = one(b"B283 SEARCH RETURN (SAVE) CHARSET KOI8-R TEXT \"x\"\r\n")
    assert isinstance(event, ev.BadCommand)
    assert event.response.to_bytes() == (
        b"B283 NO [BADCHARSET (US-ASCII UTF-8)] Unsupported charset KOI8-R\r\n"
    )


def test_quoted_charset_and_case_are_accepted() -> None:
    event = one(b'a SEARCH CHARSET "utf-8" ALL\r\n')
    assert event == c.Search("a", AllKey(), charset="UTF-8")


def test_id_limits_from_rfc_2971() -> None:
    too_many = b" ".join(b'"k%d" "v"' % i for i in range(31))
    assert isinstance(one(b"a ID (" + too_many + b")\r\n"), ev.BadCommand)
    long_field = b'"' + b"f" * 31 + b'"'
    assert isinstance(one(b"a ID (" + long_field + b' "v")\r\n'), ev.BadCommand)
    assert isinstance(one(b'a ID ("f" "' + b"v" * 1025 + b'")\r\n'), ev.BadCommand)
    assert isinstance(one(b'a ID ("f" "' + b"v" * 1024 + b'")\r\n'), c.Id)


def test_command_names_and_keywords_are_case_insensitive() -> None:
    assert one(b"a fetch 1 body.peek[header.fields (from)]<0.10>\r\n") == c.Fetch(
        "a", S("1"),
        (BodySection(Section((), "HEADER.FIELDS", ("from",)), Partial(0, 10), peek=True),),
    )
    assert one(b"a uid search unseen\r\n") == c.Search("a", FlagKey("\\Seen", False), uid=True)


def test_names_report_uid_variants() -> None:
    assert one(b"a UID COPY 1 x\r\n").name == "UID COPY"
    assert one(b"a COPY 1 x\r\n").name == "COPY"
    assert one(b"a EXAMINE x\r\n").read_only is True  # type: ignore[union-attr]
    assert c.Examine in c.AUTHENTICATED and c.Fetch in c.SELECTED


def test_literal_in_header_list_and_mailbox_positions() -> None:
    event = one(b"a FETCH 1 BODY[HEADER.FIELDS ({4}\r\nDate Subject)]\r\n")
    assert event == c.Fetch(
        "a", S("1"), (BodySection(Section((), "HEADER.FIELDS", ("Date", "Subject"))),)
    )
    assert one(b"a RENAME {3+}\r\nold {3}\r\nnew\r\n") == c.Rename("a", "old", "new")
