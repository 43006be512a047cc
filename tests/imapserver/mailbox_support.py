"""Parsing LIST/LSUB/STATUS lines for the mailbox command tests."""

from __future__ import annotations

import re

from tests.e2e.harness import ServerThread

_LISTING = re.compile(
    rb'^\* (?P<kind>LIST|LSUB) \((?P<attrs>[^)]*)\) (?P<delim>"/"|NIL) '
    rb'(?P<name>"(?:[^"\\]|\\.)*"|\{\d+\}\r\n.*?|[^ ]+)(?: (?P<ext>\(.*\)))?$', re.DOTALL)
_STATUS = re.compile(rb'^\* STATUS (?P<name>"(?:[^"\\]|\\.)*"|[^ ]+) \((?P<items>.*)\)$')
_ITEM = re.compile(rb"([A-Z-]+) (\d+|NIL|\([^)]*\))")


def wire_name(raw: bytes) -> str:
    """An astring from the wire, quotes and literal framing removed, decoded as UTF-8."""
    if raw.startswith(b'"'):
        raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    elif raw.startswith(b"{"):
        raw = raw.split(b"\r\n", 1)[1]
    return raw.decode("utf-8")


def listing(lines: list[bytes], kind: bytes = b"LIST") -> dict[str, set[str]]:
    """name -> attributes of every LIST (or LSUB) line."""
    result: dict[str, set[str]] = {}
    for line in lines:
        match = _LISTING.match(line)
        if match and match["kind"] == kind:
            name = wire_name(match["name"])
            assert name not in result, f"{name} listed twice"
            result[name] = set(match["attrs"].decode().split())
    return result


def extended_items(lines: list[bytes]) -> dict[str, bytes]:
    """name -> the extended data of LIST lines that have some (CHILDINFO)."""
    result = {}
    for line in lines:
        match = _LISTING.match(line)
        if match and match["ext"]:
            result[wire_name(match["name"])] = match["ext"]
    return result


def statuses(lines: list[bytes]) -> dict[str, dict[str, str]]:
    """name -> {item: value} of every STATUS line."""
    result = {}
    for line in lines:
        match = _STATUS.match(line)
        if match:
            items = {key.decode(): value.decode() for key, value in _ITEM.findall(match["items"])}
            result[wire_name(match["name"])] = items
    return result


def account_id(server: ServerThread, address: str = "alice@example.test") -> int:
    account = server.call(server.store.get_account(address))
    assert account is not None
    return account.id


def mailbox_id(server: ServerThread, name: str, address: str = "alice@example.test") -> int:
    info = server.call(server.store.get_mailbox(account_id(server, address), name))
    assert info is not None, name
    return info.id


def message(subject: str = "hello", body: str = "Hello there.\r\n") -> bytes:
    return (f"From: c@remote.test\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@remote.test>\r\n\r\n{body}").encode()
