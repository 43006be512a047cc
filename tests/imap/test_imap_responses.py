"""The response writer: status responses, quoting rules, mailbox names and untagged data."""

from __future__ import annotations

import pytest

from mailpost.imap import responses as r
from mailpost.imap.errors import LocalProtocolError
from mailpost.imap.seqset import IntervalSet, SequenceSet


def test_status_responses_with_codes() -> None:
    assert r.Tagged("A142", "OK", "SELECT completed", "READ-WRITE").to_bytes() == (
        b"A142 OK [READ-WRITE] SELECT completed\r\n"
    )
    assert r.Untagged("OK", "Limited", r.code_permanentflags(["\\Deleted", "\\Seen", "\\*"])) \
        .to_bytes() == b"* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n"
    assert r.Untagged("OK", "UIDs valid", "UIDVALIDITY 3857529045").to_bytes() == (
        b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
    )
    assert r.Bye("Autologout; idle for too long").to_bytes() == (
        b"* BYE Autologout; idle for too long\r\n"
    )
    assert r.Tagged("a", "NO").to_bytes() == b"a NO Completed\r\n"


def test_uid_codes_keep_the_pairing_order() -> None:
    # RFC 4315 §3 example: COPYUID 38505 304,319:320 3956:3958
    assert r.code_copyuid(38505, [304, 319, 320], [3956, 3957, 3958]) == (
        "COPYUID 38505 304,319:320 3956:3958"
    )
    assert r.code_copyuid(1, [9, 3], [10, 11]) == "COPYUID 1 9,3 10:11"
    assert r.code_appenduid(38505, [3955]) == "APPENDUID 38505 3955"
    assert r.code_capability(["IMAP4rev2", "AUTH=PLAIN"]) == "CAPABILITY IMAP4rev2 AUTH=PLAIN"


def test_text_cannot_break_the_framing() -> None:
    assert r.Tagged("a", "NO", "bad\r\n* OK injected").to_bytes() == b"a NO bad  * OK injected\r\n"
    assert r.Tagged("a", "NO", "[ALERT] fake").to_bytes() == b"a NO  [ALERT] fake\r\n"
    assert r.Tagged("a", "NO", "caf\u00e9").to_bytes() == b"a NO caf?\r\n"
    assert r.Tagged("a", "NO", "caf\u00e9").to_bytes(utf8=True) == "a NO café\r\n".encode()
    for code in ("A]B", "A\r\nB", ""):
        with pytest.raises(LocalProtocolError):
            r.Tagged("a", "NO", "x", code).to_bytes()


def test_continuations() -> None:
    assert r.Continuation("Ready").to_bytes() == b"+ Ready\r\n"
    assert r.Continuation(data=b"").to_bytes() == b"+ \r\n"
    assert r.Continuation(data=b"\x00ab").to_bytes() == b"+ AGFi\r\n"


def test_quoting_rules() -> None:
    assert r.string("hello") == b'"hello"'
    assert r.string('a"b\\c') == b'"a\\"b\\\\c"'
    assert r.string("a\r\nb") == b"{4}\r\na\r\nb"  # never {4+}: RFC 7888 §3
    assert r.string("caf\u00e9") == b"{5}\r\ncaf\xc3\xa9"
    assert r.string("caf\u00e9", utf8=True) == '"café"'.encode()
    assert r.string(b"\xff\xfe", utf8=True) == b"{2}\r\n\xff\xfe"  # not UTF-8: literal
    assert r.nstring(None) == b"NIL" and r.nstring("") == b'""'
    assert r.astring("INBOX.Sent") == b"INBOX.Sent"
    assert r.astring("NIL") == b'"NIL"' and r.astring("") == b'""'
    assert r.astring("a b") == b'"a b"'
    assert r.literal_header(5) == b"{5}\r\n" and r.literal_header(5, binary=True) == b"~{5}\r\n"


def test_mailbox_names_are_modified_utf7_until_utf8_is_enabled() -> None:
    assert r.mailbox_name("inbox") == b"INBOX"
    assert r.mailbox_name("台北") == b"&U,BTFw-"
    assert r.mailbox_name("a&b") == b"a&-b"
    assert r.mailbox_name("台北", utf8=True) == '"台北"'.encode()
    assert r.mailbox_name("Sent Mail") == b'"Sent Mail"'


def test_untagged_data_lines() -> None:
    assert r.exists(172) == b"* 172 EXISTS\r\n"
    assert r.expunge(22) == b"* 22 EXPUNGE\r\n"
    assert r.recent(0) == b"* 0 RECENT\r\n"
    assert r.flags(["\\Answered", "\\Seen"]) == b"* FLAGS (\\Answered \\Seen)\r\n"
    assert r.capability(["IMAP4rev2", "IDLE"]) == b"* CAPABILITY IMAP4rev2 IDLE\r\n"
    assert r.Enabled(("CONDSTORE",)).to_bytes() == b"* ENABLED CONDSTORE\r\n"
    assert r.search([2, 84, 882]) == b"* SEARCH 2 84 882\r\n"
    assert r.search([], modseq=None) == b"* SEARCH\r\n"
    assert r.search([2, 5], modseq=917162500) == b"* SEARCH 2 5 (MODSEQ 917162500)\r\n"
    assert r.sort([2, 84]) == b"* SORT 2 84\r\n"
    assert r.vanished(IntervalSet.from_numbers([41, 43, 44]), earlier=True) == (
        b"* VANISHED (EARLIER) 41,43:44\r\n"
    )
    assert r.esearch(tag="A282", minimum=2, count=3) == (
        b'* ESEARCH (TAG "A282") MIN 2 COUNT 3\r\n'
    )
    assert r.esearch(tag="A285", uid=True, minimum=7, maximum=3800) == (
        b'* ESEARCH (TAG "A285") UID MIN 7 MAX 3800\r\n'
    )
    assert r.esearch(all=SequenceSet.parse("2,10:11")) == b"* ESEARCH ALL 2,10:11\r\n"
    assert r.esearch(tag="a", all=IntervalSet()) == b'* ESEARCH (TAG "a")\r\n'


def test_list_status_namespace_quota_id() -> None:
    assert r.list_response([], "/", "INBOX") == b'* LIST () "/" INBOX\r\n'
    assert r.list_response(["\\Noselect"], ".", "#news.") == b'* LIST (\\Noselect) "." #news.\r\n'
    assert r.list_response([], None, "x") == b"* LIST () NIL x\r\n"
    assert r.list_response([], "/", "Foo", extended=[("CHILDINFO", b'("SUBSCRIBED")')]) == (
        b'* LIST () "/" Foo ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    )
    assert r.lsub_response([], "/", "a") == b'* LSUB () "/" a\r\n'
    assert r.status_response("blurdybloop", [("MESSAGES", 231), ("UIDNEXT", 44292)]) == (
        b"* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n"
    )
    assert r.status_response("foo", [("MAILBOXID", "F2212ea87"), ("APPENDLIMIT", None)]) == (
        b"* STATUS foo (MAILBOXID (F2212ea87) APPENDLIMIT NIL)\r\n"
    )
    assert r.namespace([("", "/")], [("~", "/")]) == b'* NAMESPACE (("" "/")) (("~" "/")) NIL\r\n'
    assert r.quota("", [("STORAGE", 10, 512)]) == b'* QUOTA "" (STORAGE 10 512)\r\n'
    assert r.quotaroot("INBOX", [""]) == b'* QUOTAROOT INBOX ""\r\n'
    assert r.id_response(None) == b"* ID NIL\r\n"
    assert r.id_response([("name", "mailpost"), ("os", None)]) == (
        b'* ID ("name" "mailpost" "os" NIL)\r\n'
    )


def test_thread_responses_follow_rfc_5256() -> None:
    node = r.ThreadNode
    threads = [
        node(2),
        node(3, (node(6, (node(4, (node(23),)), node(44, (node(7, (node(96),)),)))),)),
    ]
    assert r.thread(threads) == b"* THREAD (2)(3 6 (4 23)(44 7 96))\r\n"
    assert r.thread([node(0, (node(3), node(5)))]) == b"* THREAD ((3)(5))\r\n"
    assert r.thread([]) == b"* THREAD\r\n"
    deep = node(1)
    for number in range(2, 3000):  # iterative: any depth renders
        deep = node(number, (deep,))
    assert r.thread([deep]).startswith(b"* THREAD (2999 2998 ")


def test_fetch_lines_and_streamed_bodies() -> None:
    assert r.fetch(12, [("FLAGS", r.flag_list(["\\Seen"])), ("UID", b"4827313")]) == (
        b"* 12 FETCH (FLAGS (\\Seen) UID 4827313)\r\n"
    )
    streamed = r.fetch_start(1) + b"UID 5 BODY[] " + r.literal_header(3) + b"abc" + b")\r\n"
    assert streamed == b"* 1 FETCH (UID 5 BODY[] {3}\r\nabc)\r\n"
