"""Real POP3 clients against the real server: curl (STLS and pop3s) and Debian's fetchmail
(keep and no-keep modes, STLS and pop3s)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.harness import PASSWORD, ServerThread
from tests.pop3.clients import ALICE, inbox, put_message

FIRST = b"From: carol@remote.test\r\nSubject: first\r\n\r\n.dotted line\r\nbody one\r\n"
SECOND = b"From: dave@remote.test\r\nSubject: second\r\n\r\nbody two\r\n"

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
needs_fetchmail = pytest.mark.skipif(
    shutil.which("fetchmail") is None,
    reason="fetchmail is not installed (Debian package fetchmail: apt-get install -y fetchmail)")


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["curl", "-sS", "-k", "--max-time", "20", "-u", f"{ALICE}:{PASSWORD}",
                           *args], capture_output=True, timeout=30, check=False)


@needs_curl
def test_curl_over_stls_lists_and_retrieves(server: ServerThread) -> None:
    put_message(server, ALICE, FIRST)
    put_message(server, ALICE, SECOND)
    url = f"pop3://127.0.0.1:{server.port('pop3')}/"
    listing = curl("--ssl-reqd", url)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout == f"1 {len(FIRST)}\r\n2 {len(SECOND)}\r\n".encode()
    message = curl("--ssl-reqd", url + "1")
    assert message.returncode == 0, message.stderr
    assert message.stdout == FIRST


@needs_curl
def test_curl_over_implicit_tls(server: ServerThread) -> None:
    put_message(server, ALICE, SECOND)
    url = f"pop3s://127.0.0.1:{server.port('pop3s')}/"
    assert curl(url + "1").stdout == SECOND
    uidl = curl(url, "-X", "UIDL")
    assert uidl.returncode == 0, uidl.stderr
    [line] = uidl.stdout.splitlines()
    assert line.split()[0] == b"1" and line.split()[1].endswith(b".1")


@needs_curl
def test_curl_without_tls_cannot_log_in(server: ServerThread) -> None:
    put_message(server, ALICE, FIRST)
    result = curl(f"pop3://127.0.0.1:{server.port('pop3')}/1")
    assert result.returncode == 67  # CURLE_LOGIN_DENIED: credentials need TLS first
    assert result.stdout == b""


# --- fetchmail -------------------------------------------------------------------------------


def fetchmail(server: ServerThread, home: Path, *, keep: bool,
              implicit_tls: bool = False) -> tuple[int, bytes]:
    """Run one fetchmail poll; returns its exit status and what its MDA received."""
    home.mkdir(exist_ok=True)
    out = home / "delivered"
    port = server.port("pop3s" if implicit_tls else "pop3")
    security = "ssl" if implicit_tls else "sslproto tls1.2+"
    rc = home / "fetchmailrc"
    rc.write_text(
        f'poll 127.0.0.1 service {port} protocol pop3 timeout 20\n'
        f'  user "{ALICE}" there with password "{PASSWORD}" is "root" here\n'
        f'  {security} no sslcertck {"keep" if keep else "nokeep"}\n'
        f'  mda "cat >> {out}"\n')
    os.chmod(rc, 0o600)  # fetchmail refuses an rc file others can read
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))
    result = subprocess.run(["fetchmail", "--nosyslog", "--nodetach", "-f", str(rc)],
                            capture_output=True, timeout=60, env=env, check=False)
    return result.returncode, out.read_bytes() if out.exists() else b""


@needs_fetchmail
def test_fetchmail_keep_mode_downloads_each_message_once(server: ServerThread,
                                                         tmp_path: Path) -> None:
    put_message(server, ALICE, FIRST)
    put_message(server, ALICE, SECOND)
    home = tmp_path / "fetchmail"
    status, delivered = fetchmail(server, home, keep=True)
    assert status == 0  # mail was retrieved
    assert delivered.count(b"Subject: ") == 2
    assert b"\n.dotted line\n" in delivered  # the client unstuffed our dot-stuffing
    assert len(inbox(server)) == 2  # kept on the server
    status, delivered_again = fetchmail(server, home, keep=True)
    assert status == 1  # "no mail": UIDL told it both messages were seen
    assert delivered_again == delivered


@needs_fetchmail
def test_fetchmail_nokeep_over_implicit_tls_deletes_what_it_fetched(
        server: ServerThread, tmp_path: Path) -> None:
    put_message(server, ALICE, FIRST)
    put_message(server, ALICE, SECOND)
    status, delivered = fetchmail(server, tmp_path / "fetchmail", keep=False, implicit_tls=True)
    assert status == 0
    assert b"Subject: first" in delivered and b"Subject: second" in delivered
    assert inbox(server) == []
