"""A private Postfix instance on loopback, delivering one virtual domain into Maildirs.

Theory of operation
-------------------
The system's Postfix configuration in /etc/postfix is never read or changed. The instance has
its own ``config_directory`` (``postfix -c DIR``), ``queue_directory`` and ``data_directory``
inside a scratch directory, so several instances, and a system Postfix, can coexist. Its
``master.cf`` is written from scratch: one ``smtpd`` on ``127.0.0.1:PORT``, the internal services
a delivery needs, no chroot (the scratch queue has no chroot environment), and ``postlogd`` so
that the instance logs to a file (``maillog_file``, Postfix 3.4+) without syslog.

Mail for ``bench.test`` is delivered by the ``virtual(8)`` agent into
``<scratch>/vmail/bench.test/<user>/`` (a trailing slash in ``virtual_mailbox_maps`` means
Maildir), as the unprivileged user ``nobody``. The map is a ``texthash:`` table, so no
``postmap`` step is needed.

Durability is left at Postfix's defaults: ``cleanup(8)`` fsyncs the queue file before ``smtpd``
answers 250 to the end of DATA, and ``virtual(8)`` fsyncs each Maildir file before renaming it
into ``new/``. The rate limits that would throttle a single busy client (anvil's connection and
message rates) are switched off, and ``default_process_limit`` allows one smtpd per connection.
Postfix's own back-pressure (``in_flow_delay``) stays at its default: it is part of how Postfix
behaves under load.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import time
from pathlib import Path

from common import CLEANUP, BenchError, run_command, tail

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
DELIVERY_USER = "nobody"
MAIL_OWNER = "postfix"

# The Debian package of Postfix, configured by the script itself: no debconf questions.
_DEBCONF = "postfix postfix/main_mailer_type select No configuration\n"

# service type private unpriv chroot wakeup maxproc command: master(5).
_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def ensure_installed() -> None:
    """Install Debian's postfix package if it is missing (needs root)."""
    if os.path.exists(POSTFIX):
        return
    if os.geteuid() != 0:
        raise BenchError("postfix is not installed and installing it needs root "
                         "(or run with --only mailpost)")
    print("installing Debian's postfix package ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_command(["debconf-set-selections"], "debconf-set-selections", stdin=_DEBCONF)
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postfix"]
    try:
        run_command(install, "apt-get install postfix", env=env, timeout=600)
    except BenchError:
        # A fresh machine may not have package lists yet.
        run_command(["apt-get", "update", "-q"], "apt-get update", env=env, timeout=600)
        run_command(install, "apt-get install postfix", env=env, timeout=600)


def postfix_version() -> str:
    return run_command([POSTCONF, "-dh", "mail_version"], "postconf").strip()


class PostfixInstance:
    """One private Postfix: :meth:`start`, send mail to :attr:`port`, :meth:`stop`."""

    def __init__(self, workdir: Path, port: int, domain: str, users: list[str]) -> None:
        self.workdir = workdir
        self.port = port
        self.domain = domain
        self.config_dir = workdir / "etc"
        self.queue_dir = workdir / "queue"
        self.data_dir = workdir / "data"
        self.mail_base = workdir / "vmail"
        self.log_path = workdir / "maillog"
        self.users = users
        self._running = False

    def maildir(self, user: str) -> Path:
        return self.mail_base / self.domain / user

    # -- configuration ------------------------------------------------------------------------

    def configure(self) -> None:
        """Write main.cf, master.cf and the mailbox map; create the Maildir base; check."""
        account = pwd.getpwnam(DELIVERY_USER)
        for directory in (self.config_dir, self.queue_dir, self.data_dir):
            directory.mkdir(mode=0o755)
        self.mail_base.mkdir(mode=0o755)
        os.chown(self.mail_base, account.pw_uid, account.pw_gid)
        # master.lock and the tls caches live there: Postfix wants its mail_owner to own it.
        owner = pwd.getpwnam(MAIL_OWNER)
        os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
        mailbox_map = self.config_dir / "vmailbox"
        mailbox_map.write_text("".join(f"{user}@{self.domain} {self.domain}/{user}/\n"
                                       for user in self.users), encoding="ascii")
        self._write(self.config_dir / "main.cf", self._main_cf(account, mailbox_map))
        service = f"127.0.0.1:{self.port} inet n       -       n       -       -       smtpd\n"
        self._write(self.config_dir / "master.cf", service + _SERVICES)
        self.postfix("check")

    def _main_cf(self, account: pwd.struct_passwd, mailbox_map: Path) -> str:
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "maillog_file": self.log_path,
            "maillog_file_prefixes": self.workdir,
            "myhostname": "postfix.bench.invalid",
            "mydomain": "bench.invalid",
            "myorigin": "$myhostname",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "",
            "smtpd_recipient_restrictions": "permit_mynetworks, reject_unauth_destination",
            "virtual_mailbox_domains": self.domain,
            "virtual_mailbox_base": self.mail_base,
            "virtual_mailbox_maps": f"texthash:{mailbox_map}",
            "virtual_uid_maps": f"static:{account.pw_uid}",
            "virtual_gid_maps": f"static:{account.pw_gid}",
            # One smtpd per benchmark connection, and no per-client throttling by anvil.
            "default_process_limit": 200,
            "smtpd_client_connection_count_limit": 0,
            "smtpd_client_connection_rate_limit": 0,
            "smtpd_client_message_rate_limit": 0,
            "smtpd_client_recipient_rate_limit": 0,
            "smtpd_client_new_tls_session_rate_limit": 0,
            "smtpd_tls_security_level": "none",
            "smtp_tls_security_level": "none",
            "biff": "no",
            "append_dot_mydomain": "no",
            "readme_directory": "no",
        }
        return "".join(f"{key} = {value}\n" for key, value in settings.items())

    @staticmethod
    def _write(path: Path, text: str) -> None:
        path.write_text(text, encoding="ascii")
        path.chmod(0o644)

    def postfix(self, command: str) -> str:
        return run_command([POSTFIX, "-c", str(self.config_dir), command], f"postfix {command}")

    # -- running ------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """``postfix -c DIR start``, then wait until the SMTP listener greets."""
        CLEANUP.push("postfix instance", self.stop)
        self._running = True
        self.postfix("start")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._greets():
                return
            time.sleep(0.2)
        raise BenchError(f"postfix not answering on port {self.port}:\n{tail(self.log_path)}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                greeting = sock.recv(512)
                sock.sendall(b"QUIT\r\n")
                return greeting.startswith(b"220")
        except OSError:
            return False

    def master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout: float = 20.0) -> None:
        """``postfix stop``; wait for the master to exit, and kill it if it will not."""
        if not self._running:
            return
        self._running = False
        pid = self.master_pid()
        if pid is None or not _alive(pid):
            return
        try:
            self.postfix("stop")
        except BenchError as exc:
            print(f"warning: {exc}", flush=True)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    # -- delivery progress --------------------------------------------------------------------

    def delivered(self, user: str) -> int:
        """Messages delivered so far into the user's Maildir ``new/``."""
        try:
            with os.scandir(self.maildir(user) / "new") as entries:
                return sum(1 for _ in entries)
        except FileNotFoundError:
            return 0

    def wait_delivered(self, user: str, target: int, stall_timeout: float = 20.0,
                       limit: float = 180.0) -> tuple[float | None, int]:
        """Wait until ``target`` messages are in ``new/``; return (monotonic time, count).

        The time is None when delivery stalled for ``stall_timeout`` seconds or took longer
        than ``limit`` in all: the run is then reported as not fully delivered.
        """
        start = last_progress = time.monotonic()
        count = self.delivered(user)
        while count < target:
            now = time.monotonic()
            if now - last_progress > stall_timeout or now - start > limit:
                return None, count
            time.sleep(0.02)
            new_count = self.delivered(user)
            if new_count != count:
                count, last_progress = new_count, time.monotonic()
        return time.monotonic(), count

    def log_problems(self, lines: int = 10) -> str:
        """Recent warnings and errors from the instance's log, for a failure report."""
        text = tail(self.log_path, 2000)
        bad = [line for line in text.splitlines()
               if any(word in line for word in ("warning:", "error:", "fatal:", "panic:",
                                                "status=deferred", "status=bounced"))]
        return "\n".join(bad[-lines:]) or "(no warnings in the log)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

