"""Stopping the server ends the connections that are still open, not only the listeners."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.e2e.harness import ServerThread, make_config


def test_stop_closes_open_connections(tmp_path: Path) -> None:
    running = ServerThread(make_config(tmp_path / "var"))
    with running:
        clients = [socket.create_connection(("127.0.0.1", running.port(name)), timeout=10)
                   for name in ("imap", "pop3", "smtp")]
        for client in clients:
            assert client.recv(1024)  # the greeting: each session is running
        sessions = running.server._sessions
        assert len(sessions) == 3
    for client in clients:
        with client:
            assert client.recv(1024) == b""  # closed by the server, not left hanging
    assert not sessions
