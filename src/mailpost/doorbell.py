"""The change bus across processes on one machine: a doorbell socket in the data directory.

Theory of operation
-------------------
The server's :class:`~mailpost.bus.LocalBus` wakes the sessions of an account when the store
commits a change in the server process. Other processes change the same store too: the
``mailpost`` command (``mailpost deliver`` puts a message in a mailbox, ``user remove`` drops
mailboxes) opens the SQLite database next to the running server. Their changes must reach the
server's IDLE and NOTIFY sessions just as fast, without anybody polling the database.

So the server listens on a Unix datagram socket, ``data_dir/bus.sock`` (:func:`listen`), and
a command-line process publishes through a :class:`RelayingBus`: every
:class:`~mailpost.bus.Change` it publishes after a commit is also sent to that socket as one
small JSON datagram, and the server publishes it on its own bus. The bus stays a doorbell
(see :mod:`mailpost.bus`): the datagram says *that* a mailbox changed, and a woken session
reads *what* changed from the store, so a datagram lost because the server was not running or
its socket buffer was full loses no information: the sessions learn it at their next catch-up.
For the same reason a forged datagram can only cause a needless re-read; and only processes
of the operator's account can reach the socket, which is owner-only like the data directory.

A Unix socket path is limited to about 100 octets. A data directory deeper than that is
reached through ``/proc/self/fd/N/``, a short path to the same directory (Linux).

PostgreSQL's ``LISTEN/NOTIFY`` will take this role when the store spans machines; the message
is the same small record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from mailpost.bus import Change, ChangeBus, ChangeKind, LocalBus

log = logging.getLogger(__name__)

SOCKET_NAME = "bus.sock"
MAX_DATAGRAM = 1024
_MAX_SOCKET_PATH = 100  # sun_path is 108 octets on Linux, with its terminating NUL
_KINDS = {kind.value: kind for kind in ChangeKind}


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


def encode(change: Change) -> bytes:
    """One datagram: a JSON array, short enough for any mailbox name we accept."""
    record = [change.account_id, change.mailbox_id, change.modseq, change.kind.value,
              change.mailbox_name]
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def decode(data: bytes) -> Change | None:
    """The change in a datagram, or None for anything that is not exactly one."""
    try:
        record = json.loads(data)
    except ValueError:
        return None
    if not isinstance(record, list) or len(record) != 5:
        return None
    account_id, mailbox_id, modseq, kind, name = record
    if not (_is_int(account_id) and (mailbox_id is None or _is_int(mailbox_id))
            and _is_int(modseq) and kind in _KINDS and (name is None or isinstance(name, str))):
        return None
    return Change(account_id, mailbox_id, modseq, _KINDS[kind], name)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    """``path`` as a string a Unix socket address can hold (see the module docstring)."""
    text = str(path)
    if len(text.encode()) <= _MAX_SOCKET_PATH:
        yield text
        return
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


class RelayingBus(LocalBus):
    """A :class:`~mailpost.bus.LocalBus` that also rings the server's doorbell socket.

    Sending never blocks and never fails the caller: the change is already committed.
    """

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self._path = socket_path(data_dir)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def publish(self, change: Change) -> None:
        super().publish(change)
        try:
            with _short_path(self._path) as address:
                self._socket.sendto(encode(change), address)
        except OSError as exc:
            # No server running (nothing to wake), or its queue is full (its sessions catch
            # up at their next command): either way nothing is lost.
            log.debug("change not relayed to the server: %s", exc)

    def close(self) -> None:
        self._socket.close()


class DoorbellListener:
    """The server side: publishes every change that arrives on the socket on ``bus``."""

    def __init__(self, sock: socket.socket, bus: ChangeBus) -> None:
        self._socket = sock
        self._bus = bus

    def on_readable(self) -> None:
        """Drain what has arrived (non-blocking), one change per datagram."""
        for _ in range(256):  # then give the loop back; it calls again while data waits
            try:
                data = self._socket.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("change doorbell: %s", exc)
                return
            change = decode(data)
            if change is None:
                log.debug("change doorbell: ignored a malformed datagram")
                continue
            self._bus.publish(change)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._socket.fileno())
        self._socket.close()


def listen(data_dir: Path, bus: ChangeBus) -> DoorbellListener:
    """Bind ``data_dir/bus.sock`` (replacing a stale one) and start relaying to ``bus``.

    Call it on the event loop; a second server on the same data directory is kept out
    earlier, by the store's ownership lock.
    """
    path = socket_path(data_dir)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left behind by a server that did not stop cleanly
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with _short_path(path) as address:
            sock.bind(address)
        # The data directory is owner-only already (the store creates it so); the socket
        # is made so too, for a directory an operator created with wider permissions.
        path.chmod(0o600)
    except BaseException:
        sock.close()
        raise
    listener = DoorbellListener(sock, bus)
    asyncio.get_running_loop().add_reader(sock.fileno(), listener.on_readable)
    return listener
