"""A 250 means durable: kill -9 the real server right after the replies, restart, count."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

CONFIG = """\
hostname = "mail.example.test"
data_dir = "{data}"
[listen]
smtp = "127.0.0.1:0"
"""


def mailpost(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mailpost", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60, check=True)


def start(config: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen([sys.executable, "-m", "mailpost", "--config", str(config),
                                "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    port = None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        match = re.search(r"listening smtp 127\.0\.0\.1:(\d+)", line)
        if match:
            port = int(match.group(1))
        if "mailpost ready" in line and port:
            return process, port
    process.kill()
    raise AssertionError("server did not start")


def test_kill_9_after_250_loses_nothing(tmp_path: Path) -> None:
    config = tmp_path / "mailpost.toml"
    config.write_text(CONFIG.format(data=tmp_path / "var"))
    mailpost(config, "domain", "add", "example.test")
    mailpost(config, "user", "add", "alice@example.test", "--password", "pw-123456")
    process, port = start(config)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            for number in range(20):
                body = f"Subject: m{number}\r\n\r\nmessage {number}\r\n".encode()
                assert client.sendmail("c@remote.test", ["alice@example.test"], body) == {}
            # The last 250 has just been read: kill now, without any chance to clean up.
            os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(10)
        if process.stderr:
            process.stderr.close()
    listing = mailpost(config, "user", "list").stdout
    assert "alice@example.test" in listing
    process, port = start(config)
    try:
        import asyncio

        from mailpost.bus import LocalBus
        from mailpost.store import open_store

        async def count() -> list[int]:
            store = await open_store(tmp_path / "var", LocalBus())
            try:
                account = await store.get_account("alice@example.test")
                assert account is not None
                inbox = await store.get_mailbox(account.id, "INBOX")
                assert inbox is not None
                return [meta.uid for meta in await store.messages(inbox.id)]
            finally:
                await store.close()

        uids = asyncio.run(count())
        assert uids == list(range(1, 21))
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr:
            process.stderr.close()
