"""Shared pieces of the FETCH/STORE server tests: a FETCH response parser and messages.

:func:`fetch_items` splits one ``* n FETCH (...)`` response (literals inlined, as
:class:`~tests.imapserver.helpers.RawIMAP` returns them) into ``{name: value}``: literal and
quoted-string values are returned as their content, lists and atoms as written.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.harness import ServerThread
from tests.imapserver.helpers import RawIMAP, deliver

# The shared corpus lives next to the repository (never a hard-coded absolute path).
CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "mime"
ALICE = "alice@example.test"

_START = re.compile(rb"\* (\d+) FETCH \(")
_LITERAL = re.compile(rb"~?\{(\d+)\}\r\n")


def fetch_items(line: bytes) -> tuple[int, dict[str, bytes]]:
    """``(msn, {item name: value})`` of one FETCH response."""
    match = _START.match(line)
    assert match is not None, line[:80]
    pos, items = match.end(), {}
    while line[pos:pos + 1] != b")":
        name, pos = _name(line, pos)
        assert line[pos:pos + 1] == b" ", (name, line[pos:pos + 20])
        value, pos = _value(line, pos + 1)
        assert name not in items, f"{name} sent twice"
        items[name] = value
        if line[pos:pos + 1] == b" ":
            pos += 1
    assert pos == len(line) - 1, line[pos:]
    return int(match.group(1)), items


def fetches(lines: list[bytes]) -> dict[int, dict[str, bytes]]:
    """Every FETCH response among ``lines``, by message number."""
    found: dict[int, dict[str, bytes]] = {}
    for line in lines:
        if _START.match(line):
            msn, items = fetch_items(line)
            assert msn not in found, f"two FETCH responses for {msn}"
            found[msn] = items
    return found


def _name(line: bytes, pos: int) -> tuple[str, int]:
    start = pos
    while line[pos:pos + 1] not in (b" ", b"[", b""):
        pos += 1
    if line[pos:pos + 1] == b"[":
        pos = line.index(b"]", pos) + 1
        if line[pos:pos + 1] == b"<":
            pos = line.index(b">", pos) + 1
    return line[start:pos].decode(), pos


def _value(line: bytes, pos: int) -> tuple[bytes, int]:
    literal = _LITERAL.match(line, pos)
    if literal is not None:
        end = literal.end() + int(literal.group(1))
        return line[literal.end():end], end
    if line[pos:pos + 1] == b'"':
        return _quoted(line, pos)
    if line[pos:pos + 1] == b"(":
        end = _list_end(line, pos)
        return line[pos:end], end
    end = pos
    while line[end:end + 1] not in (b" ", b")", b""):
        end += 1
    return line[pos:end], end


def _quoted(line: bytes, pos: int) -> tuple[bytes, int]:
    out, pos = bytearray(), pos + 1
    while line[pos:pos + 1] != b'"':
        if line[pos:pos + 1] == b"\\":
            pos += 1
        out += line[pos:pos + 1]
        pos += 1
    return bytes(out), pos + 1


def _list_end(line: bytes, pos: int) -> int:
    depth = 0
    while True:
        literal = _LITERAL.match(line, pos)
        if literal is not None:
            pos = literal.end() + int(literal.group(1))
            continue
        char = line[pos:pos + 1]
        if char == b'"':
            pos = _quoted(line, pos)[1]
            continue
        depth += {b"(": 1, b")": -1}.get(char, 0)
        pos += 1
        if depth == 0:
            return pos


def tagged_status(tagged: bytes) -> bytes:
    """``OK``/``NO``/``BAD`` of a tagged line."""
    return tagged.split(b" ")[1]


def simple_message(subject: str = "hello", body: bytes = b"Hello, world.\r\n") -> bytes:
    return (b"From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <" + subject.encode()
            + b"@remote.test>\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n" + body)


def deliver_many(server: ServerThread, count: int, rcpt: str = ALICE) -> None:
    for index in range(count):
        deliver(server, rcpt, simple_message(f"m{index + 1}"))


def stored(server: ServerThread, rcpt: str = ALICE) -> list[bytes]:
    """The stored bodies (as delivery wrote them, trace fields added), oldest first."""
    return server.inbox(rcpt)


def selected(server: ServerThread, mailbox: str = "INBOX", *setup: str) -> RawIMAP:
    """A logged-in client with ``mailbox`` selected, after the ``setup`` commands."""
    client = RawIMAP(server)
    client.login()
    for command in setup:
        client.ok(command)
    client.ok(f"SELECT {mailbox}")
    return client


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
