"""The MX listener, driven by Python's smtplib and a byte-exact client."""

from __future__ import annotations

import email
import smtplib

from tests.e2e.harness import RawSMTP, ServerThread

MESSAGE = (
    "From: Carol <carol@remote.test>\r\n"
    "To: Alice <alice@example.test>\r\n"
    "Subject: hello\r\n"
    "Message-ID: <1@remote.test>\r\n"
    "\r\n"
    "Hi Alice.\r\n"
    ".leading dot line\r\n"
)


def mx(server: ServerThread) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10)
    client.ehlo("client.remote.test")
    return client


def test_delivers_to_local_user_with_trace_headers(server: ServerThread) -> None:
    with mx(server) as client:
        refused = client.sendmail("carol@remote.test", ["alice@example.test"], MESSAGE)
        assert refused == {}
    [stored] = server.inbox("alice@example.test")
    parsed = email.message_from_bytes(stored)
    assert parsed["Return-Path"] == "<carol@remote.test>"
    received = parsed["Received"]
    assert "from client.remote.test ([127.0.0.1])" in received
    assert "by mail.example.test" in received and "with ESMTP" in received
    assert "for <alice@example.test>" in received
    # The body arrives byte-exact, the leading dot unstuffed by the server.
    assert stored.endswith(MESSAGE.encode().split(b"\r\n\r\n", 1)[1])
    assert server.inbox("bob@example.test") == []


def test_ehlo_advertises_extensions_but_never_auth(server: ServerThread) -> None:
    with mx(server) as client:
        for extension in ("pipelining", "size", "8bitmime", "smtputf8", "enhancedstatuscodes",
                          "chunking", "dsn", "starttls"):
            assert client.has_extn(extension), extension
        assert client.esmtp_features["size"] == str(26214400)
        assert not client.has_extn("auth")
        client.starttls()
        client.ehlo()
        assert not client.has_extn("auth"), "AUTH is never offered on port 25"


def test_unknown_local_user_is_refused_at_rcpt(server: ServerThread) -> None:
    with mx(server) as client:
        client.mail("carol@remote.test")
        code, text = client.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")


def test_null_sender_and_bare_postmaster_are_accepted(server: ServerThread) -> None:
    server.add_alias("postmaster@example.test", "bob@example.test")
    with mx(server) as client:
        assert client.mail("<>")[0] == 250
        assert client.rcpt("alice@example.test")[0] == 250
        assert client.rcpt("<postmaster>")[0] == 250
        assert client.data(b"Subject: bounce\r\n\r\nreport\r\n")[0] == 250
    assert len(server.inbox("alice@example.test")) == 1
    assert len(server.inbox("bob@example.test")) == 1


def test_aliases_catch_all_and_subaddress(server: ServerThread) -> None:
    server.add_alias("team@example.test", "alice@example.test")
    server.add_alias("team@example.test", "bob@example.test")
    server.add_domain("other.test")
    server.add_alias("@other.test", "bob@example.test")
    with mx(server) as client:
        client.sendmail("c@remote.test", ["team@example.test"], b"Subject: 1\r\n\r\nx\r\n")
        client.sendmail("c@remote.test", ["anything@other.test"], b"Subject: 2\r\n\r\nx\r\n")
        client.sendmail("c@remote.test", ["alice+lists@example.test"], b"Subject: 3\r\n\r\nx\r\n")
    assert len(server.inbox("alice@example.test")) == 2
    assert len(server.inbox("bob@example.test")) == 2


def test_duplicate_recipients_get_one_copy(server: ServerThread) -> None:
    server.add_alias("me@example.test", "alice@example.test")
    with mx(server) as client:
        client.sendmail("c@remote.test", ["alice@example.test", "me@example.test",
                                          "ALICE@EXAMPLE.TEST"], b"Subject: d\r\n\r\nx\r\n")
    assert len(server.inbox("alice@example.test")) == 1


def test_size_limit_at_mail_and_after_data(tmp_path: object) -> None:
    from pathlib import Path

    from tests.e2e.harness import make_config
    config = make_config(Path(str(tmp_path)) / "var", max_message_size=2000)
    with ServerThread(config) as server:
        server.add_user("alice@example.test")
        raw = RawSMTP(server.port("smtp"))
        assert raw.reply()[0] == 220
        assert raw.command("EHLO c.test")[0] == 250
        code, text = raw.command("MAIL FROM:<c@remote.test> SIZE=5000")
        assert (code, text[:5]) == (552, "5.3.4")
        assert raw.command("MAIL FROM:<c@remote.test>")[0] == 250
        assert raw.command("RCPT TO:<alice@example.test>")[0] == 250
        assert raw.command("DATA")[0] == 354
        raw.send(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 5 + b".\r\n")
        code, text = raw.reply()
        assert (code, text[:5]) == (552, "5.3.4")
        assert raw.command("NOOP")[0] == 250, "the session goes on"
        raw.close()
        assert server.inbox("alice@example.test") == []


def test_mail_loop_is_refused(server: ServerThread) -> None:
    hops = "".join(f"Received: from h{i}.test by h{i + 1}.test; Mon, 1 Jan 2024 00:00:00 +0000"
                   "\r\n" for i in range(60))
    with mx(server) as client:
        client.mail("c@remote.test")
        client.rcpt("alice@example.test")
        code, text = client.data((hops + "Subject: loop\r\n\r\nx\r\n").encode())
        assert (code, text[:5]) == (554, b"5.4.6")
    assert server.inbox("alice@example.test") == []


def test_recipient_limit(tmp_path: object) -> None:
    from pathlib import Path

    from tests.e2e.harness import make_config
    with ServerThread(make_config(Path(str(tmp_path)) / "v", max_recipients=3)) as server:
        server.add_user("alice@example.test")
        with mx(server) as client:
            client.mail("c@remote.test")
            for _ in range(3):
                assert client.rcpt("alice@example.test")[0] == 250
            code, text = client.rcpt("alice@example.test")
            assert (code, text[:5]) == (452, b"4.5.3")


def test_quota_full_mailbox_is_refused_temporarily(server: ServerThread) -> None:
    server.add_user("carol@example.test", quota=400)
    with mx(server) as client:
        client.mail("c@remote.test", ["SIZE=401"])
        code, text = client.rcpt("carol@example.test")
        assert (code, text[:5]) == (552, b"5.2.2"), "declared size over the quota"
        client.rset()
        fill = b"Subject: q\r\n\r\n" + b"x" * 300 + b"\r\n"
        assert client.sendmail("c@remote.test", ["carol@example.test"], fill) == {}
        client.mail("c@remote.test")
        code, text = client.rcpt("carol@example.test")
        assert (code, text[:5]) == (452, b"4.2.2"), "the mailbox is now full"


def test_pipelined_transaction_in_one_write(server: ServerThread) -> None:
    raw = RawSMTP(server.port("smtp"))
    assert raw.reply()[0] == 220
    assert raw.command("EHLO c.test")[0] == 250
    raw.send(b"MAIL FROM:<c@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
             b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
    assert [raw.reply()[0] for _ in range(5)] == [250, 250, 550, 250, 354]
    raw.send(b"Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert raw.reply()[0] == 250
    assert raw.reply()[0] == 221
    assert len(server.inbox("alice@example.test")) == 1
    assert len(server.inbox("bob@example.test")) == 1


def test_bdat_chunking(server: ServerThread) -> None:
    raw = RawSMTP(server.port("smtp"))
    raw.reply()
    raw.command("EHLO c.test")
    raw.command("MAIL FROM:<c@remote.test> BODY=8BITMIME")
    raw.command("RCPT TO:<alice@example.test>")
    first = "Subject: chunks\r\n\r\nhéllo ".encode()
    second = b"world\r\n.not stuffed\r\n"
    raw.send(b"BDAT %d\r\n" % len(first) + first)
    assert raw.reply()[0] == 250
    raw.send(b"BDAT %d LAST\r\n" % len(second) + second)
    assert raw.reply()[0] == 250
    [stored] = server.inbox("alice@example.test")
    assert stored.endswith(first.split(b"\r\n\r\n", 1)[1] + second)


def test_smtputf8_address(server: ServerThread) -> None:
    raw = RawSMTP(server.port("smtp"))
    raw.reply()
    raw.command("EHLO c.test")
    assert raw.command("MAIL FROM:<zoë@remote.test>")[0] == 550, "RFC 6531 §3.5"
    assert raw.command("MAIL FROM:<zoë@remote.test> SMTPUTF8")[0] == 250
    assert raw.command("RCPT TO:<alice@example.test>")[0] == 250
    assert raw.command("DATA")[0] == 354
    raw.send("Subject: ünïcode\r\n\r\nx\r\n.\r\n".encode())
    assert raw.reply()[0] == 250
    assert len(server.inbox("alice@example.test")) == 1
