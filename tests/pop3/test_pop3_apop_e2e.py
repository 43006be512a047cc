"""APOP against the real server (RFC 1939 §7): poplib and fetchmail log in with the digest of
the greeting's timestamp; the same TLS rule, throttle, session limits and maildrop lock apply as
for USER/PASS; password changes replace or clear the secret; with APOP off nothing changes."""

from __future__ import annotations

import hashlib
import os
import poplib
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mailpost.admin import ops
from mailpost.auth.apop_key import APOPKey
from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context, make_config
from tests.pop3.clients import ALICE, BOB, RawPOP3, inbox, pop3s_client, put_message

MESSAGE = b"From: carol@remote.test\r\nSubject: apop\r\n\r\n.dotted\r\nbody\r\n"
TIMESTAMP = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@mail\.example\.test>")
WRONG_DIGEST = "0" * 32
NEW_PASSWORD = "a new passphrase"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    """APOP on; three failures drop a network. Alice has an APOP secret, Bob none."""
    base = make_config(tmp_path / "var", auth_max_failures=3)
    config = replace(base, pop3=replace(base.pop3, apop=True))
    with ServerThread(config) as running:
        running.call(ops.add_user(running.store, ALICE, PASSWORD, apop_key=key_of(running)))
        running.add_user(BOB)
        yield running


def key_of(server: ServerThread) -> APOPKey:
    """The key the running server uses: the data directory's, made when it started."""
    return APOPKey.for_data_dir(server.config.data_dir)


def timestamp_of(greeting: bytes) -> str:
    match = TIMESTAMP.search(greeting.decode())
    assert match is not None, greeting
    return match.group(0)


def digest(greeting: bytes, secret: str) -> str:
    return hashlib.md5((timestamp_of(greeting) + secret).encode()).hexdigest()


def apop_client(server: ServerThread, secret: str = PASSWORD,
                user: str = ALICE) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), timeout=10,
                             context=client_tls_context())
    client.apop(user, secret)
    return client


def apop_fails(server: ServerThread, secret: str, user: str = ALICE) -> bytes:
    """Try APOP over implicit TLS; return the -ERR line."""
    raw = RawPOP3(server)
    try:
        answer = raw.command(f"APOP {user} {digest(raw.greeting, secret)}")
        assert answer.startswith(b"-ERR"), answer
        return answer
    finally:
        raw.close()


# --- logging in --------------------------------------------------------------------------------


def test_poplib_apop_over_implicit_tls(server: ServerThread) -> None:
    put_message(server, ALICE, MESSAGE)
    client = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), timeout=10,
                             context=client_tls_context())
    assert client.getwelcome().startswith(b"+OK POP3 server ready <")
    assert client.apop(ALICE, PASSWORD) == b"+OK maildrop has 1 messages (%d octets)" % len(
        MESSAGE)
    assert client.stat() == (1, len(MESSAGE))
    assert b"\r\n".join(client.retr(1)[1]) + b"\r\n" == MESSAGE
    assert client.quit().startswith(b"+OK")


def test_poplib_apop_after_stls_uses_the_first_greeting(server: ServerThread) -> None:
    client = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    timestamp_of(client.getwelcome())
    client.stls(client_tls_context())
    assert client.apop(ALICE, PASSWORD).startswith(b"+OK maildrop has 0 messages")
    assert client.quit().startswith(b"+OK")


def test_the_server_makes_the_key_when_it_starts(tmp_path: Path) -> None:
    base = make_config(tmp_path / "var")
    with ServerThread(replace(base, pop3=replace(base.pop3, apop=True))) as server:
        key_file = server.config.data_dir / "apop.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert len(key_file.read_bytes()) == 32


def test_every_greeting_has_a_new_timestamp(server: ServerThread) -> None:
    stamps = []
    for implicit_tls in (True, False, True, False):
        raw = RawPOP3(server, implicit_tls=implicit_tls)
        stamps.append(timestamp_of(raw.greeting))
        raw.close()
    assert len(set(stamps)) == len(stamps)


def test_capa_does_not_list_apop(server: ServerThread) -> None:
    raw = RawPOP3(server)
    assert raw.command("CAPA").startswith(b"+OK")
    assert b"APOP" not in raw.multiline()
    raw.close()


# --- refusals ----------------------------------------------------------------------------------


def test_apop_without_tls_is_refused_like_user(server: ServerThread) -> None:
    raw = RawPOP3(server, implicit_tls=False)
    answer = raw.command(f"APOP {ALICE} {digest(raw.greeting, PASSWORD)}")
    assert answer.startswith(b"-ERR [SYS/PERM] authentication requires TLS")
    raw.close()


def test_wrong_digests_count_as_failed_logins_until_the_drop(server: ServerThread) -> None:
    raw = RawPOP3(server)
    answers = [raw.command(f"APOP {ALICE} {WRONG_DIGEST}"),
               raw.command(f"APOP {ALICE} {digest(raw.greeting, 'wrong')}"),
               raw.command(f"APOP nobody@example.test {digest(raw.greeting, PASSWORD)}")]
    assert answers[:2] == [b"-ERR [AUTH] invalid user name or password\r\n"] * 2
    assert answers[2] == b"-ERR [AUTH] too many failures, try again later\r\n"
    assert raw.closed_by_server()
    # The network stays blocked for USER/PASS too: one throttle for every way of logging in.
    again = RawPOP3(server)
    again.command(f"USER {ALICE}")
    assert again.command(f"PASS {PASSWORD}").startswith(b"-ERR [AUTH] too many failures")
    again.close()


def test_a_digest_for_another_greeting_is_refused(server: ServerThread) -> None:
    """Replay: a digest seen on one connection is worthless on the next (RFC 1939 §7)."""
    first = RawPOP3(server)
    replayed = digest(first.greeting, PASSWORD)
    first.close()
    second = RawPOP3(server)
    assert second.command(f"APOP {ALICE} {replayed}").startswith(b"-ERR [AUTH]")
    assert second.command(f"APOP {ALICE} {digest(second.greeting, PASSWORD)}").startswith(
        b"+OK")
    second.close()


def test_an_account_without_a_secret_cannot_use_apop(server: ServerThread) -> None:
    assert apop_fails(server, PASSWORD, BOB).startswith(b"-ERR [AUTH]")
    client = pop3s_client(server, user=BOB)  # USER/PASS is unaffected
    assert client.quit().startswith(b"+OK")


def test_apop_respects_the_maildrop_lock(server: ServerThread) -> None:
    first = pop3s_client(server)  # USER/PASS holds the lock
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        apop_client(server)
    first.quit()
    second = apop_client(server)  # APOP holds it now: USER/PASS must wait
    blocked = pop3s_client(server, user=None)
    blocked.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        blocked.pass_(PASSWORD)
    blocked.close()
    second.quit()


def test_apop_counts_against_the_account_session_limit(tmp_path: Path) -> None:
    base = make_config(tmp_path / "var", max_connections_per_user=1)
    with ServerThread(replace(base, pop3=replace(base.pop3, apop=True))) as server:
        server.call(ops.add_user(server.store, ALICE, PASSWORD, apop_key=key_of(server)))
        first = pop3s_client(server)
        with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\] too many sessions"):
            apop_client(server)
        first.quit()


# --- password changes --------------------------------------------------------------------------


def test_password_change_without_apop_clears_the_secret(server: ServerThread) -> None:
    server.call(ops.set_password(server.store, ALICE, NEW_PASSWORD))
    apop_fails(server, PASSWORD)
    apop_fails(server, NEW_PASSWORD)
    client = pop3s_client(server, user=None)  # the new password works with USER/PASS
    client.user(ALICE)
    assert client.pass_(NEW_PASSWORD).startswith(b"+OK")
    client.quit()


def test_password_change_with_apop_replaces_the_secret(server: ServerThread) -> None:
    server.call(ops.set_password(server.store, ALICE, NEW_PASSWORD, apop_key=key_of(server)))
    apop_client(server, NEW_PASSWORD).quit()
    apop_fails(server, PASSWORD)


# --- APOP off ----------------------------------------------------------------------------------


def test_apop_off_sends_no_timestamp_and_refuses_the_command(tmp_path: Path) -> None:
    with ServerThread(make_config(tmp_path / "var")) as server:
        server.call(ops.add_user(server.store, ALICE, PASSWORD))
        raw = RawPOP3(server)
        assert raw.greeting == b"+OK mail.example.test POP3 server ready\r\n"
        answer = raw.command(f"APOP {ALICE} {WRONG_DIGEST}")
        assert answer.startswith(b"-ERR [AUTH] APOP is not enabled")
        raw.close()
        assert not (server.config.data_dir / "apop.key").exists()


# --- fetchmail ---------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("fetchmail") is None, reason="fetchmail is not installed")
def test_fetchmail_with_protocol_apop(server: ServerThread, tmp_path: Path) -> None:
    put_message(server, ALICE, MESSAGE)
    home = tmp_path / "fetchmail"
    home.mkdir()
    out = home / "delivered"
    rc = home / "fetchmailrc"
    rc.write_text(
        f'poll 127.0.0.1 service {server.port("pop3s")} protocol APOP timeout 20\n'
        f'  user "{ALICE}" there with password "{PASSWORD}" is "root" here\n'
        f'  ssl no sslcertck nokeep\n'
        f'  mda "cat >> {out}"\n')
    os.chmod(rc, 0o600)  # fetchmail refuses an rc file others can read
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))
    result = subprocess.run(["fetchmail", "--nosyslog", "--nodetach", "-f", str(rc)],
                            capture_output=True, timeout=60, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert b"Subject: apop" in out.read_bytes()
    assert inbox(server) == []  # nokeep: deleted at QUIT
