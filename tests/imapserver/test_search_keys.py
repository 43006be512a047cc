"""SEARCH keys against a small hand-built mailbox (RFC 9051 §6.4.4, RFC 3501 §6.4.4).

One server per module: the mailbox below is built once and only read by the tests.
"""

from __future__ import annotations

import base64
import imaplib
from collections.abc import Iterator

import pytest

from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context
from tests.imapserver.helpers import RawIMAP
from tests.imapserver.search_support import (
    CORPUS,
    USER,
    client,
    mailbox_id,
    message,
    put,
    running_server,
    search,
    utc,
)

KOI8_BODY = base64.b64encode("привет мир".encode("koi8-r")).decode()
ATTACHMENT = base64.b64encode(b"needle-in-attachment").decode()

M1 = message(
    "From: Alice Example <alice@example.test>", "To: bob@example.test",
    "Cc: carol@example.test", "Subject: Quarterly report",
    "Date: Mon, 01 Jan 2024 09:00:00 +0000", "Message-ID: <m1@example.test>", "X-Priority: 1",
    body="The numbers look good.\r\n")
M2 = message(
    "From: Bob <bob@example.test>", "To: alice@example.test", "Subject: Re: Quarterly report",
    "Date: Tue, 02 Jan 2024 23:30:00 -0500", "Message-ID: <m2@example.test>",
    "In-Reply-To: <m1@example.test>", "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: quoted-printable",
    body="Un caf=C3=A9 au lait, s'il vous pla=C3=AEt.\r\n")
M3 = message(
    "From: =?utf-8?q?Ren=C3=A9e_Dupont?= <renee@example.test>", "To: alice@example.test",
    "Bcc: hidden@example.test", "Subject: =?iso-8859-1?q?=E9t=E9_plans?=",
    "Date: Fri, 05 Jan 2024 08:00:00 +0100", "Message-ID: <m3@example.test>",
    "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b1"',
    body=(f"--b1\r\nContent-Type: text/plain; charset=koi8-r\r\n"
          f"Content-Transfer-Encoding: base64\r\n\r\n{KOI8_BODY}\r\n"
          f"--b1\r\nContent-Type: application/octet-stream\r\n"
          f"Content-Transfer-Encoding: base64\r\n\r\n{ATTACHMENT}\r\n--b1--\r\n"))
M4 = message("From: robot@example.test", "Subject: Build log", "X-Custom: Alpha Beta",
             body="log line\r\n" * 1000)
M5 = message(
    "From: Dave <dave@example.test>", "To: alice@example.test", "Subject: Fwd: inner news",
    "Date: Sat, 06 Jan 2024 12:00:00 +0000", "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="b2"',
    body=("--b2\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n"
          "--b2\r\nContent-Type: message/rfc822\r\n\r\n"
          "From: Eve <eve@example.test>\r\nSubject: Encapsulated secret\r\n\r\n"
          "encapsulated words here\r\n--b2--\r\n"))
HTML = message(
    "From: web@example.test", "Subject: newsletter", "Content-Type: text/html; charset=utf-8",
    body='<p>Caf&eacute; <b>cr&egrave;me</b></p><a href="https://example.test/link">here</a>')

SPECS = [
    (M1, ("\\Seen", "\\Flagged"), utc(2024, 1, 1, 10)),
    (M2, ("\\Answered", "\\Seen"), utc(2024, 1, 3, 4, 31)),
    (M3, ("\\Draft", "$Important"), utc(2024, 1, 5, 23, 30, offset_hours=-8)),
    (M4, ("\\Deleted",), utc(2023, 12, 31, 23, 59)),
    (M5, (), utc(2024, 1, 6, 12)),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with running_server(tmp_path_factory.mktemp("search") / "var") as running:
        uids = put(running, SPECS)
        assert uids == [1, 2, 3, 4, 5]
        corpus = [(CORPUS / name).read_bytes() for name in (
            "mailcore2-6144-russian.eml", "mailcore2-2195-greek.eml",
            "mailcore2-4925-japanese.eml")]
        put(running, [(data, (), None) for data in [*corpus, HTML]], mailbox="Archive")
        yield running


@pytest.fixture(scope="module")
def imap(server: ServerThread) -> Iterator[RawIMAP]:
    connection = client(server)
    yield connection
    connection.close()


ALL = [1, 2, 3, 4, 5]


@pytest.mark.parametrize(("criteria", "expected"), [
    ("ALL", ALL),
    ("SEEN", [1, 2]), ("UNSEEN", [3, 4, 5]),
    ("FLAGGED", [1]), ("UNFLAGGED", [2, 3, 4, 5]),
    ("ANSWERED", [2]), ("UNANSWERED", [1, 3, 4, 5]),
    ("DELETED", [4]), ("UNDELETED", [1, 2, 3, 5]),
    ("DRAFT", [3]), ("UNDRAFT", [1, 2, 4, 5]),
    ("KEYWORD $Important", [3]), ("KEYWORD $IMPORTANT", [3]), ("KEYWORD $Junk", []),
    ("UNKEYWORD $Important", [1, 2, 4, 5]),
    # RFC 3501 \Recent: this session selected the mailbox first, so all five are recent here;
    # NEW is RECENT UNSEEN, OLD is NOT RECENT.
    ("RECENT", ALL), ("NEW", [3, 4, 5]), ("OLD", []),
])
def test_flag_keys(imap: RawIMAP, criteria: str, expected: list[int]) -> None:
    assert search(imap, criteria) == expected


@pytest.mark.parametrize(("criteria", "expected"), [
    ("FROM alice", [1]), ("FROM BOB@EXAMPLE", [2]), ("TO alice", [2, 3, 5]),
    ("CC carol", [1]), ("BCC hidden", [3]), ("CC nobody", []),
    ("SUBJECT quarterly", [1, 2]), ('SUBJECT "re: quarterly"', [2]),
    ("HEADER X-Custom alpha", [4]), ('HEADER x-custom ""', [4]), ('HEADER X-Priority ""', [1]),
    ('HEADER Message-ID "<m2@example.test>"', [2]), ('HEADER X-Missing ""', []),
    ('HEADER In-Reply-To m1', [2]),
])
def test_header_keys(imap: RawIMAP, criteria: str, expected: list[int]) -> None:
    assert search(imap, criteria) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Renée", [3]), ("RENÉE DUPONT", [3]), ("été", [3]), ("ÉTÉ PLANS", [3]),
])
def test_encoded_words_are_decoded_before_matching(imap: RawIMAP, text: str,
                                                   expected: list[int]) -> None:
    """RFC 9051 §6.4.4: RFC 2047 strings MUST be decoded before comparing text."""
    raw = text.encode()
    field = b"FROM" if text.lower().startswith("ren") else b"SUBJECT"
    criteria = b"CHARSET UTF-8 " + field + b" {%d+}\r\n" % len(raw) + raw
    assert search(imap, criteria) == expected


@pytest.mark.parametrize(("criteria", "expected"), [
    ('BODY "numbers look"', [1]),
    ('BODY "Quarterly"', []),          # BODY does not look at the header
    ('TEXT "Quarterly"', [1, 2]),      # TEXT does
    ('TEXT "hidden@example"', [3]),
    ("TEXT m3@example.test", [3]),
    ('BODY "needle-in-attachment"', []),  # binary attachments are not searched
    (f'BODY "{ATTACHMENT[:12]}"', []),   # ... nor their base64
    (f'BODY "{KOI8_BODY[:8]}"', []),     # text parts are searched decoded, not as base64
    ('BODY "encapsulated words"', [5]),
    ('BODY "Encapsulated SECRET"', [5]),  # an encapsulated message's header is body
    ('BODY "LOG LINE"', [4]),
    ('BODY ""', ALL),
])
def test_body_and_text(imap: RawIMAP, criteria: str, expected: list[int]) -> None:
    assert search(imap, criteria) == expected


@pytest.mark.parametrize(("word", "expected"), [("café au lait", [2]), ("ПРИВЕТ", [3])])
def test_body_decodes_transfer_encoding_and_charset(imap: RawIMAP, word: str,
                                                   expected: list[int]) -> None:
    raw = word.encode()
    assert search(imap, b"CHARSET UTF-8 BODY {%d+}\r\n" % len(raw) + raw) == expected


@pytest.mark.parametrize(("criteria", "expected"), [
    ("BEFORE 1-Jan-2024", [4]), ("ON 1-Jan-2024", [1]), ("SINCE 3-Jan-2024", [2, 3, 5]),
    # INTERNALDATE 5-Jan-2024 23:30 -0800 is 6-Jan in UTC: the date as recorded counts.
    ("ON 5-Jan-2024", [3]), ("ON 6-Jan-2024", [5]),
    ("SENTON 2-Jan-2024", [2]),        # "Tue, 02 Jan 2024 23:30 -0500": date as written
    ("SENTBEFORE 2-Jan-2024", [1]), ("SENTSINCE 5-Jan-2024", [3, 5]),
    ("SENTBEFORE 1-Jan-2030", [1, 2, 3, 5]),  # message 4 has no Date: header
    ("LARGER 5000", [4]), ("SMALLER 5000", [1, 2, 3, 5]),
])
def test_date_and_size_keys(imap: RawIMAP, criteria: str, expected: list[int]) -> None:
    assert search(imap, criteria) == expected


@pytest.mark.parametrize(("criteria", "expected"), [
    ("2:3", [2, 3]), ("3:2", [2, 3]), ("*", [5]), ("1,5", [1, 5]), ("UID 2:3", [2, 3]),
    ("UID 4:*", [4, 5]), ("UID 900:*", [5]), ("UID 900", []),
])
def test_sequence_and_uid_sets(imap: RawIMAP, criteria: str, expected: list[int]) -> None:
    assert search(imap, criteria) == expected


@pytest.mark.parametrize(("criteria", "expected"), [
    ("OR SEEN DELETED", [1, 2, 4]),
    ("NOT SEEN", [3, 4, 5]),
    ("NOT (SEEN FLAGGED)", [2, 3, 4, 5]),
    ("OR (FROM bob SEEN) (NOT UNDRAFT)", [2, 3]),
    ("NOT OR BODY numbers SUBJECT report", [3, 4, 5]),
    ("(OR SEEN DRAFT) BODY plans", []),
    ("OR SEEN DRAFT TEXT plans", [3]),
    ("UNSEEN BODY encapsulated", [5]),
    ("NOT NOT NOT SEEN", [3, 4, 5]),
    ("OR OR DELETED DRAFT OR FLAGGED ANSWERED", [1, 2, 3, 4]),
    ("SEEN 2:5 NOT FLAGGED", [2]),
    ("BODY the BODY numbers", [1]),
])
def test_combinations(imap: RawIMAP, criteria: str, expected: list[int]) -> None:
    assert search(imap, criteria) == expected


def test_uid_search_returns_uids(server: ServerThread) -> None:
    imap = client(server)
    imap.ok("SELECT Archive")
    untagged, tagged = imap.command("UID SEARCH ALL")
    assert b"OK" in tagged
    assert untagged == [b"* SEARCH 1 2 3 4"]
    imap.close()


def test_sequence_number_beyond_the_mailbox_is_bad(imap: RawIMAP) -> None:
    """RFC 9051 §9 seq-number: a number above EXISTS deserves BAD."""
    untagged, tagged = imap.command("SEARCH 6")
    assert tagged.startswith(b"t") and b" BAD " in tagged
    assert untagged == []


def test_charsets(imap: RawIMAP) -> None:
    assert search(imap, "CHARSET US-ASCII FROM bob") == [2]
    assert search(imap, 'CHARSET "utf-8" FROM bob') == [2]
    _, tagged = imap.command("SEARCH CHARSET KOI8-R FROM bob")
    assert b" NO [BADCHARSET" in tagged


@pytest.mark.parametrize(("criteria", "expected"), [
    ("SUBJECT Что лучше", [1]),             # koi8-r encoded word
    ("SUBJECT λογαριασμού", [2]),          # UTF-8 encoded word
    ("FROM ＥＴＣマイレージ", [3]),          # ISO-2022-JP encoded word
    ("BODY созерцание", [1]),               # koi8-r base64 body
    ("BODY システム一時停止", [3]),            # ISO-2022-JP body
    ("TEXT youtube.com", [1]),
    ("BODY café crème", [4]),               # HTML: the text as shown ...
    ("BODY example.test/link", [4]),        # ... and the source
])
def test_corpus_messages(server: ServerThread, criteria: str, expected: list[int]) -> None:
    imap = client(server, "Archive")
    key, _, value = criteria.partition(" ")
    raw = value.encode()
    assert search(imap, b"CHARSET UTF-8 " + key.encode() + b" {%d+}\r\n" % len(raw) + raw) \
        == expected
    imap.close()


def test_imaplib_search_and_uid_search(server: ServerThread) -> None:
    with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                           ssl_context=client_tls_context()) as conn:
        conn.login(USER, PASSWORD)
        conn.select("INBOX")
        status, data = conn.search(None, "OR", "FLAGGED", "DELETED")
        assert status == "OK" and data == [b"1 4"]
        status, data = conn.uid("SEARCH", "UNSEEN", "SINCE", "1-Jan-2024")
        assert status == "OK" and data == [b"3 5"]
        status, data = conn.search("UTF-8", "SUBJECT", '"report"')
        assert status == "OK" and data == [b"1 2"]


def test_deeply_nested_program_is_evaluated(imap: RawIMAP) -> None:
    """Nesting up to the parser's limit evaluates (the limit itself is the parser's: I4)."""
    assert search(imap, "NOT " * 98 + "SEEN") == [1, 2]
    assert search(imap, "(" * 60 + "OR SEEN DRAFT" + ")" * 60) == [1, 2, 3]


def test_emailid_and_threadid(server: ServerThread, imap: RawIMAP) -> None:
    """RFC 8474 §5: EMAILID matches the message's ObjectID; no THREADIDs are assigned."""
    metas = server.call(server.store.messages(mailbox_id(server)))
    email_id = metas[2].email_id
    assert email_id
    assert search(imap, f"EMAILID {email_id}") == [3]
    assert search(imap, "EMAILID Mnot-an-id") == []
    assert search(imap, "NOT THREADID T123") == ALL
