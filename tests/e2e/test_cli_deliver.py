"""``mailpost deliver`` in its own process next to a running server: the message is stored and
the server's IDLE clients hear of it at once (the change doorbell)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ServerThread, make_config
from tests.imapserver.helpers import RawIMAP

MESSAGE = b"From: someone@remote.test\nSubject: from a pipe\n\nhello\n"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path / "var")) as running:
        running.add_user("alice@example.test")
        yield running


def run_deliver(server: ServerThread, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    config = tmp_path / "mailpost.toml"
    config.write_text(f'hostname = "mail.example.test"\ndata_dir = "{server.config.data_dir}"\n',
                      encoding="utf-8")
    command = [sys.executable, "-m", "mailpost", "--config", str(config), "deliver", *args]
    return subprocess.run(command, input=MESSAGE, capture_output=True, timeout=60, check=False)


def test_idle_sees_a_message_delivered_by_the_command(server: ServerThread,
                                                      tmp_path: Path) -> None:
    watcher = RawIMAP(server)
    watcher.login()
    watcher.ok("SELECT INBOX")
    watcher.send(b"i1 IDLE\r\n")
    assert watcher.read_response().startswith(b"+ ")
    result = run_deliver(server, tmp_path, "-f", "someone@remote.test", "alice@example.test")
    delivered = time.monotonic()
    assert result.returncode == 0, result.stderr
    assert watcher.read_response() == b"* 1 EXISTS"
    # The process start dominates; the push itself is immediate (well under a second).
    assert time.monotonic() - delivered < 1.0
    watcher.send(b"DONE\r\n")
    assert watcher.read_response().startswith(b"i1 OK")
    [stored] = server.inbox("alice@example.test")
    assert stored.startswith(b"Return-Path: <someone@remote.test>\r\n")
    assert stored.endswith(b"Subject: from a pipe\r\n\r\nhello\r\n")
    watcher.close()


def test_an_unknown_recipient_exits_67_and_stores_nothing(server: ServerThread,
                                                          tmp_path: Path) -> None:
    result = run_deliver(server, tmp_path, "nobody@example.test")
    assert result.returncode == 67
    assert b"nobody@example.test: unknown" in result.stderr
    assert server.inbox("alice@example.test") == []
