"""A private Dovecot instance on loopback, serving virtual users' Maildirs over implicit TLS.

Theory of operation
-------------------
The system's Dovecot configuration in /etc/dovecot is never read or changed: the instance is
started as ``dovecot -F -c FILE`` with a configuration written from scratch into a scratch
directory, and its ``base_dir`` (sockets, ``master.pid``), ``state_dir`` and log file live there
too. A system Dovecot that the Debian package may have started keeps running untouched; it
cannot conflict, because the instance listens only on ``127.0.0.1`` at a port of its own and
shares no directory with it.

Only the implicit-TLS listeners of the chosen protocols are open (``pop3s``, ``imaps``); the
plain ones get ``port = 0``. ``ssl = required`` and ``disable_plaintext_auth = yes`` refuse
credentials without TLS, as mailpost does. The certificate is whatever the caller passes in, so
both servers of a benchmark can present the same key and TLS costs the same on both.

Users come from a ``passwd-file`` with the caller's password hashes (mailpost's argon2id
strings are valid ``{ARGON2ID}`` hashes for Dovecot's libsodium-backed scheme, so both servers
verify the very same hash). The userdb is ``static``: every user's mail belongs to one
unprivileged system account (``nobody``, as the Postfix instance's deliveries do) and lives in
``<scratch>/home/<domain>/<user>/Maildir``.

The authentication cache is on (``auth_cache_size``), with the TTL mailpost's verification cache
uses. Note that Dovecot's cache keeps the passdb *hash* and verifies the password against it
again on every login, so each Dovecot login costs one argon2id run; mailpost remembers a
successful verification instead. ``auth_cache_verify_password_with_worker`` spreads those runs
over auth-worker processes, i.e. over all cores.

Process model: Debian's defaults are kept (one ``pop3-login`` process per connection doing the
TLS and proxying to one ``pop3`` process per session); only the process limits are raised so
that every benchmark connection gets its processes. All of them are descendants of the master,
so :func:`common.process_tree_cpu_seconds` of :meth:`DovecotInstance.master_pid` is the CPU the
whole server used.

Mail is put in place by writing files into ``Maildir/cur`` directly, named with ``,S=`` (file
size) and ``,W=`` (size with CRLF line ends, the size POP3 reports) so that Dovecot needs to
read no file to answer LIST. The files use CRLF line ends, so Dovecot sends them unchanged.
Dovecot builds its index and ``dovecot-uidlist`` on the first access of each mailbox; a caller
that does not want that cost in its measurement makes one pass before measuring.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from common import CLEANUP, BenchError, run_command, tail

DOVECOT = "/usr/sbin/dovecot"
DOVEADM = "/usr/bin/doveadm"
MAIL_USER = "nobody"
INTERNAL_USER = "dovecot"  # default_internal_user of the Debian package
# Package per protocol; dovecot-core brings the master, auth and doveadm.
PACKAGES = {"pop3": "dovecot-pop3d", "imap": "dovecot-imapd"}
TLS_PORT_NAMES = {"pop3": "pop3s", "imap": "imaps"}
PLAIN_PORT_NAMES = {"pop3": "pop3", "imap": "imap"}
GREETINGS = {"pop3": b"+OK", "imap": b"* OK"}
_FIRST_TIME = 1_600_000_000  # Maildir name times of filled messages count up from here
AUTH_CACHE_TTL = "5 mins"  # mailpost's verification cache keeps a success for 5 minutes


def ensure_installed(protocols: Iterable[str]) -> None:
    """Install Debian's dovecot-core and the protocols' packages if missing (needs root).

    The packages' maintainer scripts try to start a system Dovecot through invoke-rc.d; where
    there is no init system that fails harmlessly, and where there is one the system instance
    does not conflict with ours (see the module docstring).
    """
    wanted = ["dovecot-core", *(PACKAGES[protocol] for protocol in protocols)]
    missing = [package for package in wanted if not _package_installed(package)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise BenchError(f"{' '.join(missing)} not installed and installing needs root "
                         "(or run with --only mailpost)")
    print(f"installing Debian's {' '.join(missing)} ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    try:
        run_command(install, "apt-get install dovecot", env=env, timeout=600)
    except BenchError:
        # A fresh machine may not have package lists yet.
        run_command(["apt-get", "update", "-q"], "apt-get update", env=env, timeout=600)
        run_command(install, "apt-get install dovecot", env=env, timeout=600)


def _package_installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package],
                          capture_output=True, text=True, check=False)
    return done.returncode == 0 and done.stdout.endswith("installed")


def dovecot_version() -> str:
    return run_command([DOVECOT, "--version"], "dovecot --version").strip()


class DovecotInstance:
    """One private Dovecot: :meth:`configure`, fill Maildirs, :meth:`start`, :meth:`stop`."""

    def __init__(self, workdir: Path, port: int, protocols: tuple[str, ...] = ("pop3",),
                 lmtp_port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port
        self.protocols = protocols
        # Dovecot's own delivery agent (RFC 2033 LMTP) on loopback, for benchmarks that time
        # a delivery; None leaves LMTP off.
        self.lmtp_port = lmtp_port
        self.login_client_limit: int | None = None
        self.config_path = workdir / "dovecot.conf"
        self.passwd_path = workdir / "passwd"
        self.base_dir = workdir / "run"
        self.state_dir = workdir / "state"
        self.home_base = workdir / "home"
        self.log_path = workdir / "dovecot.log"
        self.cert_path = workdir / "cert.pem"
        self.key_path = workdir / "key.pem"
        self.process: subprocess.Popen[bytes] | None = None
        self._account = pwd.getpwnam(MAIL_USER)
        self._serial = 0

    # -- configuration ------------------------------------------------------------------------

    def configure(self, users: Mapping[str, str], cert: Path, key: Path,
                  process_limit: int = 500, login_client_limit: int | None = None) -> None:
        """Write the configuration and the passwd-file; ``users`` maps address to hash.

        A hash without a ``{SCHEME}`` prefix is taken as an argon2id PHC string.
        ``login_client_limit`` switches the login services to Dovecot's documented
        "high-performance" mode for many connections (``service_count = 0``: a few long-lived
        login processes, each terminating TLS for up to that many clients) instead of one
        login process per connection; every other service keeps its model.
        """
        self.login_client_limit = login_client_limit
        for directory in (self.base_dir, self.state_dir, self.home_base):
            directory.mkdir(mode=0o755)
        os.chown(self.home_base, self._account.pw_uid, self._account.pw_gid)
        shutil.copyfile(cert, self.cert_path)
        shutil.copyfile(key, self.key_path)
        self.key_path.chmod(0o600)
        lines = [f"{address}:{_with_scheme(hashed)}::::::\n" for address, hashed in users.items()]
        self.passwd_path.write_text("".join(lines), encoding="utf-8")
        # Read by the auth process, which runs as Dovecot's internal user.
        internal = pwd.getpwnam(INTERNAL_USER)
        os.chown(self.passwd_path, 0, internal.pw_gid)
        self.passwd_path.chmod(0o640)
        self.config_path.write_text(self._config_text(process_limit), encoding="utf-8")
        run_command(["doveconf", "-n", "-c", str(self.config_path)], "doveconf check")

    def _config_text(self, process_limit: int) -> str:
        dh = Path("/usr/share/dovecot/dh.pem")
        settings = {
            "base_dir": self.base_dir,
            "state_dir": self.state_dir,
            "log_path": self.log_path,
            "info_log_path": self.log_path,
            "protocols": " ".join(self.protocols),
            "listen": "127.0.0.1",
            "ssl": "required",
            "ssl_cert": f"<{self.cert_path}",
            "ssl_key": f"<{self.key_path}",
            "disable_plaintext_auth": "yes",
            "auth_mechanisms": "plain",
            "auth_cache_size": "10M",
            "auth_cache_ttl": AUTH_CACHE_TTL,
            "auth_cache_verify_password_with_worker": "yes",
            "mail_location": "maildir:~/Maildir",
            "mail_fsync": "optimized",
            "mail_max_userip_connections": process_limit,
            "default_process_limit": process_limit,
        }
        if dh.exists():
            settings["ssl_dh"] = f"<{dh}"
        if self.lmtp_port is not None:
            settings["protocols"] = f"{settings['protocols']} lmtp"
            settings["postmaster_address"] = "postmaster@localhost"
        if self.login_client_limit is not None:
            # Every process keeps connections to the log, anvil and stats services, and auth
            # counts the login, LMTP and urlauth services' limits together.
            settings["default_client_limit"] = 3 * process_limit + 100
        text = "".join(f"{key} = {value}\n" for key, value in settings.items())
        text += ("passdb {\n  driver = passwd-file\n"
                 f"  args = scheme=ARGON2ID {self.passwd_path}\n}}\n")
        text += ("userdb {\n  driver = static\n"
                 f"  args = uid={self._account.pw_uid} gid={self._account.pw_gid} "
                 f"home={self.home_base}/%d/%n\n}}\n")
        for protocol in self.protocols:
            text += (f"service {protocol}-login {{\n"
                     f"  inet_listener {PLAIN_PORT_NAMES[protocol]} {{\n    port = 0\n  }}\n"
                     f"  inet_listener {TLS_PORT_NAMES[protocol]} {{\n"
                     f"    address = 127.0.0.1\n    port = {self.port}\n    ssl = yes\n  }}\n"
                     f"  process_limit = {process_limit}\n{self._login_mode()}}}\n"
                     f"service {protocol} {{\n  process_limit = {process_limit}\n}}\n")
        if self.lmtp_port is not None:
            text += ("service lmtp {\n  inet_listener lmtp {\n    address = 127.0.0.1\n"
                     f"    port = {self.lmtp_port}\n  }}\n}}\n")
        return text

    def _login_mode(self) -> str:
        """Extra settings of the login services (see :meth:`configure`); empty by default."""
        if self.login_client_limit is None:
            return ""
        return ("  service_count = 0\n"
                f"  client_limit = {self.login_client_limit}\n"
                f"  process_min_avail = {os.cpu_count() or 1}\n"
                "  vsz_limit = 2G\n")

    # -- mail ---------------------------------------------------------------------------------

    def maildir(self, address: str) -> Path:
        local, _, domain = address.rpartition("@")
        return self.home_base / domain / local / "Maildir"

    def create_maildir(self, address: str) -> Path:
        """Create the user's home and Maildir (cur, new, tmp), owned by the mail user."""
        maildir = self.maildir(address)
        for directory in (maildir.parent.parent, maildir.parent, maildir,
                          maildir / "cur", maildir / "new", maildir / "tmp"):
            directory.mkdir(mode=0o700, exist_ok=True)
            os.chown(directory, self._account.pw_uid, self._account.pw_gid)
        return maildir

    def add_messages(self, address: str, messages: Iterable[bytes]) -> int:
        """Write ``messages`` (CRLF line ends) into the Maildir's ``cur/`` as unseen mail.

        The file names start with increasing numbers, so Dovecot, which orders new files by
        name, gives them UIDs in the order given here. Returns the number written.
        """
        cur = self.create_maildir(address) / "cur"
        count = 0
        for message in messages:
            self._serial += 1
            # Maildir names start with the delivery time in seconds; a made-up, increasing
            # one keeps the order. S= and W= spare Dovecot reading the file for its size.
            size = len(message)
            path = cur / (f"{_FIRST_TIME + self._serial}.M{self._serial}P{os.getpid()}"
                          f".bench,S={size},W={size}:2,")
            path.write_bytes(message)
            os.chown(path, self._account.pw_uid, self._account.pw_gid)
            count += 1
        return count

    def message_count(self, address: str) -> int:
        maildir = self.maildir(address)
        return sum(len(os.listdir(maildir / sub)) for sub in ("cur", "new"))

    # -- running ------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Run ``dovecot -F`` (in the foreground, as our child) and wait for a TLS greeting."""
        log = (self.workdir / "dovecot.stderr").open("wb")
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config_path)],
                                        stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        CLEANUP.push("dovecot instance", self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"dovecot exited with status {self.process.returncode}:\n"
                                 f"{tail(self.workdir / 'dovecot.stderr')}\n{tail(self.log_path)}")
            if self._greets():
                return
            time.sleep(0.2)
        raise BenchError(f"dovecot not answering on port {self.port}:\n{tail(self.log_path)}")

    def _greets(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        greeting = GREETINGS[self.protocols[0]]
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw, \
                    context.wrap_socket(raw) as sock:
                return sock.recv(512).startswith(greeting)
        except OSError:
            return False

    def master_pid(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the master (it stops its children), SIGKILL if it will not exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def log_problems(self, lines: int = 10) -> str:
        """Recent errors and warnings from the instance's log, for a failure report."""
        text = tail(self.log_path, 2000)
        bad = [line for line in text.splitlines()
               if any(word in line for word in ("Error:", "Warning:", "Fatal:", "Panic:"))]
        return "\n".join(bad[-lines:]) or "(no errors in the log)"


def _with_scheme(hashed: str) -> str:
    return hashed if hashed.startswith("{") else "{ARGON2ID}" + hashed
