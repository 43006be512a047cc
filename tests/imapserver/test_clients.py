"""Real IMAP clients against the real server: mbsync (Debian package isync) and offlineimap
(Debian package offlineimap3) synchronising a Maildir both ways.

Each test writes the client's configuration into its tmp_path, points it at the server's
implicit-TLS port with the server's own self-signed certificate as the only trusted one
(mbsync pins it with ``CertificateFile``; offlineimap checks it as a CA and matches the host
name ``localhost`` from its subjectAltName), runs the client as a user would, and checks the
result on both sides: message octets, flags, folders. Maildir stores messages with LF line
ends and mbsync adds an ``X-TUID`` header to the messages it transfers, so contents are
compared after undoing exactly those two things. Tests skip when the client is not installed.
"""

from __future__ import annotations

import imaplib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.harness import PASSWORD, ServerThread, client_tls_context
from tests.imapserver.helpers import deliver

USER = "alice@example.test"
MBSYNC = shutil.which("mbsync")
OFFLINEIMAP = shutil.which("offlineimap")
needs_mbsync = pytest.mark.skipif(MBSYNC is None,
                                  reason="mbsync not installed (Debian package isync)")
needs_offlineimap = pytest.mark.skipif(
    OFFLINEIMAP is None, reason="offlineimap not installed (Debian package offlineimap3)")

_FETCHED = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)")
_TUID = re.compile(rb"^X-TUID: [^\r\n]*\r?\n", re.MULTILINE)


def message(number: int, subject: str, body: str = "") -> bytes:
    """A message with CRLF line ends, as SMTP delivers it."""
    text = body or f"Message number {number}.\n"
    lines = [f"From: Sender {number} <sender{number}@remote.test>", f"To: {USER}",
             f"Subject: {subject}", f"Message-ID: <client-{number}@remote.test>",
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
             "Content-Transfer-Encoding: 8bit", "", text]
    return "\n".join(lines).replace("\n", "\r\n").encode()


def as_stored(local: bytes) -> bytes:
    """A Maildir file's octets as the server holds them: CRLF line ends, no X-TUID."""
    return _TUID.sub(b"", local.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), count=1)


# -- the server side, as a plain IMAP client sees it --------------------------------------------

@contextmanager
def imap(server: ServerThread) -> Iterator[imaplib.IMAP4_SSL]:
    client = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                               ssl_context=client_tls_context())
    client.login(USER, PASSWORD)
    try:
        yield client
    finally:
        client.logout()


def server_messages(server: ServerThread, mailbox: str) -> dict[int, tuple[set[str], bytes]]:
    """UID → (flags, octets) of every message in ``mailbox``."""
    with imap(server) as client:
        typ, _ = client.select(f'"{mailbox}"', readonly=True)
        assert typ == "OK", mailbox
        typ, data = client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
    assert typ == "OK"
    found: dict[int, tuple[set[str], bytes]] = {}
    for item in data:
        if isinstance(item, tuple):
            head = _FETCHED.search(item[0])
            assert head is not None, item[0]
            found[int(head.group(1))] = (set(head.group(2).decode().split()), item[1])
    return found


def server_folders(server: ServerThread) -> set[str]:
    with imap(server) as client:
        typ, data = client.list('""', "*")
    assert typ == "OK"
    return {line.decode().rsplit(' "/" ', 1)[1].strip('"') for line in data
            if isinstance(line, bytes)}


def mailbox_state(server: ServerThread, mailbox: str) -> bytes:
    with imap(server) as client:
        typ, data = client.status(f'"{mailbox}"', "(MESSAGES UIDNEXT HIGHESTMODSEQ)")
    assert typ == "OK"
    return data[0] if isinstance(data[0], bytes) else b""


def server_store(server: ServerThread, uid: int, change: str, flags: str) -> None:
    with imap(server) as client:
        client.select("INBOX")
        typ, _ = client.uid("STORE", str(uid), change, flags)
        assert typ == "OK"
        if "Deleted" in flags:
            assert client.expunge()[0] == "OK"


# -- the Maildir side -------------------------------------------------------------------------

def maildir_files(folder: Path) -> dict[str, bytes]:
    """File name → octets for every message of one Maildir folder (new/ and cur/)."""
    return {path.name: path.read_bytes() for sub in ("new", "cur")
            for path in sorted((folder / sub).glob("*"))}


def flags_of(name: str) -> str:
    """The Maildir flag letters of a file name (after ":2,")."""
    return name.rsplit(":2,", 1)[1] if ":2," in name else ""


def file_with_uid(folder: Path, uid: int) -> Path:
    """The file the client has recorded as server UID ``uid`` (",U=n" in its name)."""
    pattern = re.compile(rf",U={uid}(?:[:,]|$)")
    for sub in ("new", "cur"):
        for path in (folder / sub).iterdir():
            if pattern.search(path.name):
                return path
    raise AssertionError(f"no file for UID {uid} in {folder}")


def set_flags(path: Path, letters: str) -> Path:
    """Change a message's flags the way a Maildir mail reader does: rename into cur/."""
    base = path.name.split(":2,", 1)[0]
    target = path.parent.parent / "cur" / f"{base}:2,{''.join(sorted(letters))}"
    path.rename(target)
    return target


def add_local_message(folder: Path, name: str, content: bytes) -> None:
    for sub in ("cur", "new", "tmp"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "new" / name).write_bytes(content.replace(b"\r\n", b"\n"))


def settle(root: Path) -> None:
    """Date every directory two seconds back. mbsync waits a second when a Maildir directory
    changed within the current second (it could miss a file being renamed); the tests'
    own changes are complete, so the wait would only cost time."""
    past = time.time() - 2
    for directory in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        os.utime(directory, (past, past))


# -- mbsync -----------------------------------------------------------------------------------

class Mbsync:
    def __init__(self, server: ServerThread, root: Path) -> None:
        self.maildir = root / "mail"
        self.maildir.mkdir(parents=True)
        self.config = root / "mbsyncrc"
        self.config.write_text(f"""\
IMAPAccount server
Host 127.0.0.1
Port {server.port("imaps")}
User {USER}
Pass "{PASSWORD}"
SSLType IMAPS
CertificateFile {server.config.cert_path}
SystemCertificates no
AuthMechs PLAIN

IMAPStore far
Account server

MaildirStore near
Path {self.maildir}/
Inbox {self.maildir}/INBOX
SubFolders Verbatim

Channel everything
Far :far:
Near :near:
Patterns *
Create Both
Expunge Both
SyncState *
""")

    def sync(self, trace: bool = False) -> str:
        """Run one synchronisation; with ``trace``, the output has the IMAP commands sent
        (``-Dn``: network debugging)."""
        settle(self.maildir)
        assert MBSYNC is not None
        debug = ["-Dn"] if trace else []
        done = subprocess.run([MBSYNC, *debug, "-c", str(self.config), "-a"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def folder(self, name: str) -> Path:
        return self.maildir / name


@pytest.fixture
def mbsync(server: ServerThread, tmp_path: Path) -> Mbsync:
    if MBSYNC is None:
        pytest.skip("mbsync not installed (Debian package isync)")
    return Mbsync(server, tmp_path / "mbsync")


def create_folder_with(server: ServerThread, mailbox: str, content: bytes, flags: str) -> None:
    with imap(server) as client:
        assert client.create(f'"{mailbox}"')[0] == "OK"
        assert client.append(f'"{mailbox}"', flags, None, content)[0] == "OK"


UTF8_BODY = "Grüße aus Köln — 8bit body.\nSecond line.\n"
FOLDED = "A subject long enough to be folded\n onto a second header line"


@needs_mbsync
def test_mbsync_pulls_every_folder_byte_exact(server: ServerThread, mbsync: Mbsync) -> None:
    sent = [message(1, "plain"), message(2, "utf-8", UTF8_BODY), message(3, FOLDED)]
    for content in sent:
        deliver(server, USER, content)
    create_folder_with(server, "Lists/Python", message(4, "in a sub-folder"), r"(\Flagged)")
    mbsync.sync()

    inbox = maildir_files(mbsync.folder("INBOX"))
    stored = server_messages(server, "INBOX")
    assert sorted(as_stored(c) for c in inbox.values()) == sorted(b for _, b in stored.values())
    for content in sent:  # what was delivered is there, after the server's trace headers
        assert any(as_stored(c).endswith(content) for c in inbox.values())
    sub = maildir_files(mbsync.folder("Lists/Python"))
    [(name, content)] = sub.items()
    assert as_stored(content) == message(4, "in a sub-folder")
    assert flags_of(name) == "F"
    local = {str(p.parent.relative_to(mbsync.maildir)) for p in mbsync.maildir.rglob("cur")}
    assert local == server_folders(server)


@needs_mbsync
def test_mbsync_second_sync_changes_nothing(server: ServerThread, mbsync: Mbsync) -> None:
    for number in (1, 2):
        deliver(server, USER, message(number, f"message {number}"))
    server_store(server, 2, "+FLAGS", r"(\Answered)")
    mbsync.sync()
    folders = sorted(server_folders(server))
    before_local = {f: maildir_files(mbsync.folder(f)) for f in folders}
    before_server = [mailbox_state(server, f) for f in folders]
    trace = mbsync.sync(trace=True)
    assert ">>> 1 AUTHENTICATE PLAIN" in trace and "UID FETCH" in trace
    assert not re.search(r">>> \d+ (UID STORE|APPEND|CREATE|EXPUNGE|UID EXPUNGE)", trace)
    assert {f: maildir_files(mbsync.folder(f)) for f in folders} == before_local
    assert [mailbox_state(server, f) for f in folders] == before_server
    assert flags_of(file_with_uid(mbsync.folder("INBOX"), 2).name) == "R"


@needs_mbsync
def test_mbsync_pushes_flags_new_messages_and_folders(server: ServerThread,
                                                      mbsync: Mbsync) -> None:
    for number in (1, 2):
        deliver(server, USER, message(number, f"message {number}"))
    mbsync.sync()
    inbox = mbsync.folder("INBOX")
    set_flags(file_with_uid(inbox, 1), "S")
    set_flags(file_with_uid(inbox, 2), "FR")
    written = message(10, "written offline", UTF8_BODY)
    add_local_message(inbox, "1700000000.local1.client", written)
    filed = message(11, "filed in a new folder")
    add_local_message(mbsync.folder("Projects"), "1700000001.local2.client", filed)
    mbsync.sync()

    stored = server_messages(server, "INBOX")
    assert stored[1][0] == {"\\Seen"}
    assert stored[2][0] == {"\\Flagged", "\\Answered"}
    assert _TUID.sub(b"", stored[3][1], count=1) == written  # APPENDed with UID 3
    assert file_with_uid(inbox, 3).read_bytes() == written.replace(b"\r\n", b"\n")
    assert "Projects" in server_folders(server)
    [(_, (flags, content))] = server_messages(server, "Projects").items()
    assert flags == set() and _TUID.sub(b"", content, count=1) == filed


@needs_mbsync
def test_mbsync_propagates_server_side_changes(server: ServerThread, mbsync: Mbsync) -> None:
    for number in (1, 2, 3):
        deliver(server, USER, message(number, f"message {number}"))
    mbsync.sync()
    inbox = mbsync.folder("INBOX")
    server_store(server, 2, "+FLAGS", r"(\Deleted)")
    server_store(server, 3, "+FLAGS", r"(\Flagged \Seen)")
    late = message(4, "arrived later")
    deliver(server, USER, late)
    mbsync.sync()

    files = maildir_files(inbox)
    assert len(files) == 3
    with pytest.raises(AssertionError):
        file_with_uid(inbox, 2)
    assert flags_of(file_with_uid(inbox, 3).name) == "FS"
    assert as_stored(file_with_uid(inbox, 4).read_bytes()) == server_messages(server,
                                                                             "INBOX")[4][1]
    assert as_stored(file_with_uid(inbox, 4).read_bytes()).endswith(late)


@needs_mbsync
def test_mbsync_local_delete_expunges_on_server(server: ServerThread, mbsync: Mbsync) -> None:
    for number in (1, 2):
        deliver(server, USER, message(number, f"message {number}"))
    mbsync.sync()
    inbox = mbsync.folder("INBOX")
    set_flags(file_with_uid(inbox, 1), "ST")  # T: trashed, expunged on both sides
    mbsync.sync()
    assert list(server_messages(server, "INBOX")) == [2]
    assert len(maildir_files(inbox)) == 1 and file_with_uid(inbox, 2).exists()
    with imap(server) as client:
        typ, data = client.status("INBOX", "(UIDNEXT)")
    assert typ == "OK" and b"UIDNEXT 3" in data[0]  # the expunged UID is not given out again


# -- offlineimap ------------------------------------------------------------------------------

class OfflineIMAP:
    def __init__(self, server: ServerThread, root: Path) -> None:
        self.maildir = root / "mail"
        self.maildir.mkdir(parents=True)
        self.config = root / "offlineimaprc"
        self.config.write_text(f"""\
[general]
accounts = server
metadata = {root / "metadata"}

[Account server]
localrepository = near
remoterepository = far

[Repository near]
type = Maildir
localfolders = {self.maildir}

[Repository far]
type = IMAP
remotehost = localhost
remoteport = {server.port("imaps")}
remoteuser = {USER}
remotepass = {PASSWORD}
ssl = yes
sslcacertfile = {server.config.cert_path}
auth_mechanisms = PLAIN
""")

    def sync(self) -> str:
        assert OFFLINEIMAP is not None
        done = subprocess.run([OFFLINEIMAP, "-c", str(self.config), "-o", "-u", "quiet"],
                              capture_output=True, text=True, timeout=60, check=False)
        output = done.stdout + done.stderr
        assert done.returncode == 0 and "ERROR" not in output, output
        return output


@needs_offlineimap
def test_offlineimap_round_trip(server: ServerThread, tmp_path: Path) -> None:
    client = OfflineIMAP(server, tmp_path / "offlineimap")
    for number in (1, 2):
        deliver(server, USER, message(number, f"message {number}", UTF8_BODY))
    create_folder_with(server, "Receipts", message(3, "receipt"), r"(\Seen)")
    client.sync()

    inbox = client.maildir / "INBOX"
    pulled = maildir_files(inbox)
    stored = server_messages(server, "INBOX")
    assert sorted(as_stored(c) for c in pulled.values()) == sorted(b for _, b in stored.values())
    [(name, content)] = maildir_files(client.maildir / "Receipts").items()
    assert flags_of(name) == "S" and as_stored(content) == message(3, "receipt")

    # Back: a flag and a new message; then a deletion on the server comes down.
    set_flags(file_with_uid(inbox, 1), "F")
    written = message(10, "written offline")
    add_local_message(inbox, "1700000000.local.client", written)
    client.sync()
    stored = server_messages(server, "INBOX")
    assert stored[1][0] == {"\\Flagged"}
    assert [content for uid, (_, content) in stored.items() if uid > 2] == [written]
    server_store(server, 2, "+FLAGS", r"(\Deleted)")
    client.sync()
    assert sorted(server_messages(server, "INBOX")) == [1, 3]
    assert len(maildir_files(inbox)) == 2
    before = mailbox_state(server, "INBOX"), maildir_files(inbox)
    client.sync()
    assert (mailbox_state(server, "INBOX"), maildir_files(inbox)) == before
