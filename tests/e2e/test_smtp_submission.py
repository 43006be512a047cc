"""Submission (587 STARTTLS, 465 implicit TLS): AUTH, sender ownership, relaying, queueing."""

from __future__ import annotations

import base64
import shutil
import smtplib
import subprocess

import pytest

from tests.e2e.harness import PASSWORD, RawSMTP, ServerThread, client_tls_context

MESSAGE = b"From: alice@example.test\r\nTo: dave@remote.test\r\nSubject: out\r\n\r\nhello\r\n"


def submission(server: ServerThread) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10)
    client.ehlo("laptop")
    return client


def test_no_auth_before_tls_and_mail_needs_auth(server: ServerThread) -> None:
    with submission(server) as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth"), "AUTH only after STARTTLS"
        code, text = client.docmd("AUTH", "PLAIN " + base64.b64encode(
            b"\0alice@example.test\0" + PASSWORD.encode()).decode())
        assert (code, text[:6]) == (538, b"5.7.11")
        code, text = client.mail("alice@example.test")
        assert (code, text[:5]) == (530, b"5.7.0")


def test_starttls_then_auth_plain_and_remote_mail_is_queued(server: ServerThread) -> None:
    with submission(server) as client:
        client.starttls(context=client_tls_context())
        client.ehlo("laptop")
        assert client.has_extn("auth")
        assert "PLAIN" in client.esmtp_features["auth"]
        assert not client.has_extn("starttls")
        client.login("alice@example.test", PASSWORD)
        refused = client.sendmail("alice@example.test", ["dave@remote.test",
                                                         "bob@example.test"], MESSAGE)
        assert refused == {}
    queue = server.call(server.store.list_queue())
    assert len(queue) == 1
    assert queue[0].sender == "alice@example.test"
    assert [r.address for r in queue[0].recipients] == ["dave@remote.test"]
    assert queue[0].submitter == "alice@example.test"
    [copy] = server.inbox("bob@example.test")
    assert b"with ESMTPSA" in copy and b"authenticated sender: alice@example.test" in copy


def test_implicit_tls_auth_login(server: ServerThread) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.port("submissions"), timeout=10,
                          context=client_tls_context()) as client:
        client.ehlo("phone")
        client.user, client.password = "bob@example.test", PASSWORD
        code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert code == 235
        assert client.sendmail("bob@example.test", ["alice@example.test"], MESSAGE) == {}
    assert len(server.inbox("alice@example.test")) == 1


def test_sender_must_be_owned(server: ServerThread) -> None:
    server.add_alias("sales@example.test", "alice@example.test")
    with smtplib.SMTP_SSL("127.0.0.1", server.port("submissions"), timeout=10,
                          context=client_tls_context()) as client:
        client.login("alice@example.test", PASSWORD)
        code, text = client.mail("bob@example.test")
        assert (code, text[:5]) == (553, b"5.7.1")
        assert client.mail("someone@remote.test")[0] == 553
        assert client.mail("sales@example.test")[0] == 250
        client.rset()
        assert client.mail("alice+news@example.test")[0] == 250


def test_wrong_password_and_throttling(server: ServerThread) -> None:
    raw = RawSMTP(server.port("submissions"), implicit_tls=True)
    raw.reply()
    raw.command("EHLO c.test")
    bad = base64.b64encode(b"\0alice@example.test\0wrong").decode()
    codes = [raw.command(f"AUTH PLAIN {bad}")[0] for _ in range(5)]
    assert codes[:4] == [535] * 4
    assert codes[4] == 421, "the connection is dropped after too many failures"
    assert raw.closed_by_server()
    again = RawSMTP(server.port("submissions"), implicit_tls=True)
    again.reply()
    again.command("EHLO c.test")
    assert again.command(f"AUTH PLAIN {bad}")[0] == 421, "the IP stays blocked"


def test_auth_state_errors(server: ServerThread) -> None:
    raw = RawSMTP(server.port("submissions"), implicit_tls=True)
    raw.reply()
    raw.command("EHLO c.test")
    assert raw.command("AUTH CRAM-MD5")[0] == 504
    assert raw.command("AUTH PLAIN")[0] == 334
    assert raw.command("*")[0] == 501
    assert raw.command("AUTH PLAIN !!notbase64!!")[0] == 501
    good = base64.b64encode(b"\0alice@example.test\0" + PASSWORD.encode()).decode()
    assert raw.command(f"AUTH PLAIN {good}")[0] == 235
    assert raw.command(f"AUTH PLAIN {good}")[0] == 503, "already authenticated"


def test_dsn_parameters_are_stored(server: ServerThread) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.port("submissions"), timeout=10,
                          context=client_tls_context()) as client:
        client.login("alice@example.test", PASSWORD)
        client.mail("alice@example.test", ["RET=HDRS", "ENVID=abc+2Bdef"])
        client.rcpt("dave@remote.test", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;dave@remote.test"])
        assert client.data(MESSAGE)[0] == 250
    [entry] = server.call(server.store.list_queue())
    assert entry.ret == "HDRS" and entry.envid == "abc+def"
    assert entry.recipients[0].notify == "SUCCESS,FAILURE"
    assert entry.recipients[0].orcpt == "rfc822;dave@remote.test"


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is installed by .ci/run")
@pytest.mark.parametrize("mode", ["--tls", "--tls-on-connect"])
def test_swaks_submission(server: ServerThread, mode: str) -> None:
    port = server.port("submission" if mode == "--tls" else "submissions")
    result = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{port}", mode, "--auth", "PLAIN",
         "--auth-user", "alice@example.test", "--auth-password", PASSWORD,
         "--from", "alice@example.test", "--to", "bob@example.test",
         "--header", "Subject: via swaks", "--body", "sent by swaks"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [stored] = server.inbox("bob@example.test")
    assert b"Subject: via swaks" in stored and b"sent by swaks" in stored


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is installed by .ci/run")
def test_swaks_mx_pipelining(server: ServerThread) -> None:
    result = subprocess.run(
        ["swaks", "--server", f"127.0.0.1:{server.port('smtp')}", "--pipeline",
         "--from", "carol@remote.test", "--to", "alice@example.test,bob@example.test"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(server.inbox("alice@example.test")) == 1
    assert len(server.inbox("bob@example.test")) == 1
