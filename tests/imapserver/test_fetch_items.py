"""FETCH data items end to end (RFC 9051 §6.4.5, §7.5.2; RFC 3516; RFC 8474 §5.3):
messages delivered over SMTP, fetched over IMAPS, compared byte for byte with the stored
body and with the RFC's rules."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailpost.imap.handlers.fetch_common import date_time
from mailpost.mime import (
    UnknownTransferEncoding,
    binary,
    body_structure,
    envelope,
    find_part,
    parse_message,
    section,
)
from tests.e2e.harness import ServerThread
from tests.imapserver.fetch_support import (
    ALICE,
    CORPUS,
    fetch_items,
    fetches,
    selected,
    simple_message,
    stored,
    tagged_status,
)
from tests.imapserver.helpers import RawIMAP, deliver

MULTIPART = (
    b"From: Carol <carol@remote.test>\r\n"
    b"To: alice@example.test, Bob <bob@example.test>\r\n"
    b"Subject: report\r\n"
    b"Date: Tue, 1 Mar 2022 10:00:00 +0100\r\n"
    b"Message-ID: <multi@remote.test>\r\n"
    b"In-Reply-To: <parent@remote.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"caf=C3=A9 =3D ok\r\n"
    b"--outer\r\n"
    b'Content-Type: application/octet-stream; name="zeros.bin"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwA=\r\n"
    b"--outer\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"From: Dave <dave@remote.test>\r\n"
    b"Subject: inner\r\n"
    b"\r\n"
    b"inner body\r\n"
    b"--outer--\r\n"
)
DATE_TIME = re.compile(rb'"[ 1-3][0-9]-[A-Z][a-z]{2}-[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} '
                       rb'[+-][0-9]{4}"')


@pytest.fixture
def two_messages(server: ServerThread) -> ServerThread:
    deliver(server, ALICE, simple_message())
    deliver(server, ALICE, MULTIPART)
    return server


def metas(server: ServerThread) -> list:  # type: ignore[type-arg]
    async def load() -> list:  # type: ignore[type-arg]
        account = await server.store.get_account(ALICE)
        assert account is not None
        info = await server.store.get_mailbox(account.id, "INBOX")
        assert info is not None
        return await server.store.messages(info.id)
    return server.call(load())


def test_metadata_items(two_messages: ServerThread) -> None:
    client = selected(two_messages)
    lines, tagged = client.command(
        "FETCH 1:2 (FLAGS INTERNALDATE RFC822.SIZE UID MODSEQ EMAILID THREADID)")
    assert tagged_status(tagged) == b"OK"
    got = fetches(lines)
    bodies, known = stored(two_messages), metas(two_messages)
    for msn in (1, 2):
        items, meta = got[msn], known[msn - 1]
        assert items["FLAGS"] == b"()"
        quoted_date = b'"' + items["INTERNALDATE"] + b'"'
        assert DATE_TIME.fullmatch(quoted_date)
        assert quoted_date == date_time(meta.internal_date)
        assert items["RFC822.SIZE"] == str(len(bodies[msn - 1])).encode()
        assert items["UID"] == str(meta.uid).encode()
        assert items["MODSEQ"] == f"({meta.modseq})".encode()
        assert re.fullmatch(rb"\([A-Za-z0-9_-]{1,255}\)", items["EMAILID"])
        # RFC 8474 §5.2: a server that does not compute threads MUST return NIL.
        assert items["THREADID"] == b"NIL"
    assert got[1]["EMAILID"] != got[2]["EMAILID"]
    # MODSEQ made the session CONDSTORE-aware: RFC 7162 §3.1 requires HIGHESTMODSEQ once.
    assert any(line.startswith(b"* OK [HIGHESTMODSEQ ") for line in lines)


def test_envelope_and_structures(two_messages: ServerThread) -> None:
    client = selected(two_messages)
    got = fetches(client.ok("FETCH 1:2 (ENVELOPE BODY BODYSTRUCTURE)"))
    assert got[1]["ENVELOPE"] == (
        b'("Mon, 7 Feb 1994 21:52:25 -0800" "hello" (("Carol" NIL "carol" "remote.test"))'
        b' (("Carol" NIL "carol" "remote.test")) (("Carol" NIL "carol" "remote.test"))'
        b' ((NIL NIL "alice" "example.test")) NIL NIL NIL "<hello@remote.test>")')
    assert got[1]["BODY"] == b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 15 1)'
    assert got[1]["BODYSTRUCTURE"] == (
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 15 1 NIL NIL NIL NIL)')
    tree = parse_message(stored(two_messages)[1])
    assert got[2]["ENVELOPE"] == envelope(tree)
    assert got[2]["BODYSTRUCTURE"] == body_structure(tree, True, message_global=False)
    assert got[2]["BODY"] == body_structure(tree, False, message_global=False)
    assert got[2]["BODYSTRUCTURE"].endswith(b' "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)')
    assert b'"MESSAGE" "RFC822"' in got[2]["BODY"]
    # A repeat is answered identically (from the parsed-message cache).
    assert fetches(client.ok("FETCH 2 (BODYSTRUCTURE)"))[2]["BODYSTRUCTURE"] == \
        got[2]["BODYSTRUCTURE"]


def test_macros_expand(two_messages: ServerThread) -> None:
    client = selected(two_messages)
    assert set(fetches(client.ok("FETCH 1 FAST"))[1]) == {"FLAGS", "INTERNALDATE",
                                                          "RFC822.SIZE"}
    assert set(fetches(client.ok("FETCH 1 ALL"))[1]) == {"FLAGS", "INTERNALDATE",
                                                         "RFC822.SIZE", "ENVELOPE"}
    assert set(fetches(client.ok("FETCH 1 FULL"))[1]) == {"FLAGS", "INTERNALDATE",
                                                          "RFC822.SIZE", "ENVELOPE", "BODY"}


def test_sections_of_a_multipart(two_messages: ServerThread) -> None:
    client = selected(two_messages)
    data = stored(two_messages)[1]
    lines = client.ok(
        "FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[3.HEADER] "
        "BODY.PEEK[3.TEXT] BODY.PEEK[3.1] BODY.PEEK[4] BODY.PEEK[1.HEADER] "
        "BODY.PEEK[HEADER.FIELDS (SUBJECT from)] BODY.PEEK[HEADER.FIELDS.NOT (Received "
        "Return-Path)] BODY.PEEK[TEXT] BODY.PEEK[HEADER] BODY.PEEK[])")
    items = fetches(lines)[2]
    assert items["BODY[1]"] == b"caf=C3=A9 =3D ok"
    assert items["BODY[1.MIME]"] == (b"Content-Type: text/plain; charset=utf-8\r\n"
                                     b"Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    assert items["BODY[2]"] == b"AAECAwA="
    assert items["BODY[3.HEADER]"] == b"From: Dave <dave@remote.test>\r\nSubject: inner\r\n\r\n"
    assert items["BODY[3.TEXT]"] == b"inner body"
    assert items["BODY[3.1]"] == b"inner body"
    assert items["BODY[4]"] == b""  # no such part
    assert items["BODY[1.HEADER]"] == b""  # HEADER needs a MESSAGE/RFC822 part
    # Fields in message order, header-list echoed as sent, blank line kept (§6.4.5.1).
    assert items["BODY[HEADER.FIELDS (SUBJECT from)]"] == (
        b"From: Carol <carol@remote.test>\r\nSubject: report\r\n\r\n")
    not_trace = items["BODY[HEADER.FIELDS.NOT (Received Return-Path)]"]
    assert not_trace.startswith(b"From: Carol") and b"Received" not in not_trace
    assert items["BODY[]"] == data
    header_end = data.index(b"\r\n\r\n") + 4
    assert items["BODY[HEADER]"] == data[:header_end]
    assert items["BODY[TEXT]"] == data[header_end:]


def test_rfc822_items(two_messages: ServerThread) -> None:
    client = selected(two_messages)
    data = stored(two_messages)[0]
    items = fetches(client.ok("FETCH 1 (RFC822.HEADER RFC822.SIZE)"))[1]
    header_end = data.index(b"\r\n\r\n") + 4
    assert items["RFC822.HEADER"] == data[:header_end]
    items = fetches(client.ok("FETCH 1 (RFC822 RFC822.TEXT)"))[1]
    assert items["RFC822"] == data
    assert items["RFC822.TEXT"] == data[header_end:]


def test_partials(two_messages: ServerThread) -> None:
    client = selected(two_messages)
    data = stored(two_messages)[1]
    lines = client.ok("FETCH 2 (BODY.PEEK[]<0.2048> BODY.PEEK[]<5.10> BODY.PEEK[]<100000.5> "
                      "BODY.PEEK[HEADER.FIELDS (Subject)]<2.5> BODY.PEEK[3.TEXT]<6.100>)")
    (line,) = lines
    # The origin is echoed, the length is not; "BODY[]<0.2048> of a 1500-octet message
    # will return BODY[]<0> with a literal of size 1500" (RFC 9051 §6.4.5).
    assert b"BODY[]<0> {%d}\r\n" % len(data) in line
    items = fetch_items(line)[1]
    assert items["BODY[]<0>"] == data
    assert items["BODY[]<5>"] == data[5:15]
    assert items["BODY[]<100000>"] == b""  # origin beyond the end: empty string
    # "A substring fetch of a HEADER.FIELDS ... is calculated after subsetting the header."
    assert items["BODY[HEADER.FIELDS (Subject)]<2>"] == b"bject"
    assert items["BODY[3.TEXT]<6>"] == b"body"


def test_binary_decodes_and_uses_literal8_only_for_nul(two_messages: ServerThread) -> None:
    client = selected(two_messages)
    lines = client.ok("FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.PEEK[2] BINARY.SIZE[2] "
                      "BINARY.PEEK[2]<1.2> BINARY.PEEK[4] BINARY.SIZE[4] BINARY.SIZE[])")
    (line,) = lines
    items = fetch_items(line)[1]
    assert items["BINARY[1]"] == "café = ok".encode()
    assert items["BINARY.SIZE[1]"] == str(len("café = ok".encode())).encode()
    assert b"BINARY[1] {" in line  # no NUL: an ordinary literal (RFC 3516 §4.3 SHOULD)
    assert items["BINARY[2]"] == b"\x00\x01\x02\x03\x00"
    assert b"BINARY[2] ~{5}\r\n" in line  # NUL: literal8
    assert items["BINARY.SIZE[2]"] == b"5"
    assert items["BINARY[2]<1>"] == b"\x01\x02"  # partial of the decoded data
    assert items["BINARY[4]"] == b"NIL"
    assert items["BINARY.SIZE[4]"] == b"0"
    assert items["BINARY.SIZE[]"] == str(len(stored(two_messages)[1])).encode()


def test_unknown_transfer_encoding_is_no_unknown_cte(server: ServerThread) -> None:
    deliver(server, ALICE, simple_message())
    raw = (CORPUS / "mikel-mail-error_emails_content_transfer_encoding_x_uuencode.eml")
    deliver(server, ALICE, raw.read_bytes())
    data = stored(server)[1]
    tree = parse_message(data)
    bad = next(n for n in range(1, 6) if _undecodable(data, tree, (n,)))
    client = selected(server)
    lines, tagged = client.command(f"FETCH 1:2 (UID BINARY.PEEK[{bad}])")
    assert tagged_status(tagged) == b"NO" and b"[UNKNOWN-CTE]" in tagged
    assert list(fetches(lines)) == [1]  # the other message's data is still sent
    _, tagged = client.command(f"FETCH 2 BINARY.SIZE[{bad}]")
    assert b"NO [UNKNOWN-CTE]" in tagged


def _undecodable(data: bytes, tree: object, path: tuple[int, ...]) -> bool:
    part = find_part(tree, path)  # type: ignore[arg-type]
    if part is None:
        return False
    try:
        binary(data, part)
    except UnknownTransferEncoding:
        return True
    return False


CORPUS_FILES = (
    "mimekit-simple-multipart.eml",
    "mikel-mail-attachment_emails_attachment_message_rfc822.eml",
    "nodemailer-mailparser-nested.eml",
    "postal-mime-mimetorture.eml",
)
PATHS = [(n,) for n in range(1, 6)] + list(itertools.product(range(1, 4), range(1, 4)))


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_corpus_sections_match_the_mime_layer(server: ServerThread, name: str) -> None:
    deliver(server, ALICE, (CORPUS / name).read_bytes())
    data = stored(server)[0]
    tree = parse_message(data)
    specs = [".".join(map(str, path)) + suffix for path in PATHS for suffix in ("", ".MIME")]
    specs += ["HEADER", "TEXT", "", "2.HEADER", "3.TEXT"]
    client = selected(server)
    request = " ".join(f"BODY.PEEK[{spec}]" for spec in specs)
    items = fetches(client.ok(f"FETCH 1 ({request} BODYSTRUCTURE ENVELOPE)"))[1]
    for spec in specs:
        assert items[f"BODY[{spec}]"] == section(data, tree, spec), spec
    assert items["BODYSTRUCTURE"] == body_structure(tree, True, message_global=False)
    assert items["ENVELOPE"] == envelope(tree)
    for path in PATHS:
        part = find_part(tree, path)
        if part is None or _undecodable(data, tree, path):
            continue
        spec = ".".join(map(str, path))
        got = fetches(client.ok(f"FETCH 1 (BINARY.PEEK[{spec}] BINARY.SIZE[{spec}])"))[1]
        assert got[f"BINARY[{spec}]"] == binary(data, part), spec
        assert got[f"BINARY.SIZE[{spec}]"] == str(len(binary(data, part))).encode()


def test_imaplib_fetch_and_uid(two_messages: ServerThread) -> None:
    import imaplib

    from tests.e2e.harness import PASSWORD, client_tls_context
    client = imaplib.IMAP4_SSL("127.0.0.1", two_messages.port("imaps"),
                               ssl_context=client_tls_context())
    try:
        client.login(ALICE, PASSWORD)
        client.select("INBOX")
        status, data = client.fetch("1", "(BODY.PEEK[])")
        assert status == "OK"
        assert data[0][1] == stored(two_messages)[0]  # type: ignore[index]
        status, data = client.uid("FETCH", "1:*", "(FLAGS)")
        assert status == "OK" and len(data) == 2
        assert all(b"UID" in item for item in data)  # type: ignore[operator]
        status, data = client.fetch("2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert data[0][1] == b"Subject: report\r\n\r\n"  # type: ignore[index]
    finally:
        client.logout()


def test_date_time_format() -> None:
    zone = timezone(timedelta(hours=-8))
    assert date_time(datetime(1994, 2, 7, 21, 52, 25, tzinfo=zone)) == \
        b'" 7-Feb-1994 21:52:25 -0800"'
    assert date_time(datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC)) == \
        b'"31-Dec-2024 23:59:59 +0000"'
    half = timezone(timedelta(hours=5, minutes=30))
    assert date_time(datetime(2020, 1, 1, 0, 0, 0, tzinfo=half)).endswith(b' +0530"')
    assert date_time(datetime(2020, 1, 1)) == b'" 1-Jan-2020 00:00:00 +0000"'


def test_emailid_survives_copy(two_messages: ServerThread) -> None:
    client = selected(two_messages)
    original = fetches(client.ok("FETCH 2 EMAILID"))[2]["EMAILID"]
    client.ok("COPY 2 Archive")
    client.ok("SELECT Archive")
    # RFC 8474 §5.1: the copy has the same EMAILID as its source.
    assert fetches(client.ok("FETCH 1 (EMAILID THREADID)"))[1] == {
        "EMAILID": original, "THREADID": b"NIL"}


def test_capabilities_are_advertised(server: ServerThread) -> None:
    client = RawIMAP(server)
    client.login()
    (line,) = client.ok("CAPABILITY")
    for name in (b"BINARY", b"CONDSTORE", b"QRESYNC", b"OBJECTID"):
        assert b" " + name in line.split(b"\r\n")[0]


def test_utf8_mode_changes_how_8bit_header_text_is_sent(server: ServerThread) -> None:
    deliver(server, ALICE, (CORPUS / "mikel-mail-rfc6532_utf8_headers.eml").read_bytes())
    subject = "Säying Hello".encode()
    plain = selected(server)
    (line,) = plain.ok("FETCH 1 ENVELOPE")
    # Before UTF-8 mode, 8-bit text goes in literals (RFC 9051 Appendix A), never quoted.
    assert b"{%d}\r\n" % len(subject) + subject in line
    utf8 = selected(server, "INBOX", "ENABLE IMAP4rev2")
    (line,) = utf8.ok("FETCH 1 ENVELOPE")
    assert b'"' + subject + b'"' in line
