"""The servers of the push benchmark: accounts, mailboxes, start-up, and reading their memory.

Theory of operation
-------------------
Both servers get the same accounts with the same argon2id hash (mailpost's, copied into
Dovecot's passwd-file), the same certificate, and INBOXes of the same size: the *spread*
accounts ``s0000@bench.test`` ... with ``--messages`` messages each and the one *fan-out*
account ``fan@bench.test`` with ``--fanout-messages``. What is in the mailboxes does not matter
for push, only how many messages there are (a server's per-session state may grow with it), so
every mailbox holds the same small messages: mailpost's are delivered through its store API, one
delivery per message with every account as a target (the body is stored once); Dovecot's are
hard links to one file per message in each ``Maildir/cur``, with ``S=``/``W=`` in the name so
that Dovecot reads none of them when it indexes the mailbox at the first SELECT.

Delivery under test: mailpost receives the measured messages on its SMTP MX listener (what an
MTA or a peer does); Dovecot on its LMTP listener (RFC 2033, Dovecot's own delivery agent, as
an MTA in front of it would hand them over). Both answer ``250`` after the message is in the
mailbox store.

Dovecot keeps its process model: one ``imap`` process per session. Only what ten thousand
connections need is changed: the process and client limits, and the login services in Dovecot's
documented high-performance mode (a few ``imap-login`` processes terminating TLS for many
clients each), because one login process per connection would mean 20,000 processes.

Memory is read from ``/proc``: ``VmRSS`` of every process of the server's tree (for mailpost one
process; for Dovecot the master and all its descendants) and, from ``smaps_rollup``, the
proportional set size (``Pss``, shared pages divided among their users, so a sum over
processes counts each page once) and the private pages.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import (
    CLEANUP,
    BenchError,
    MailpostServer,
    free_port,
    process_tree_cpu_seconds,
    scratch_dir,
)
from dovecot_instance import DovecotInstance, ensure_installed
from mailboxes import MessageCorpus, open_mailpost_store

DOMAIN = "bench.test"
HOSTNAME = "mx.bench.test"
FANOUT_ACCOUNT = f"fan@{DOMAIN}"


def spread_account(index: int) -> str:
    return f"s{index:04d}@{DOMAIN}"


@dataclass
class Plan:
    """Who exists and how full their INBOXes are."""

    spread_accounts: int
    spread_messages: int
    fanout_messages: int
    max_connections: int  # the most idlers any run holds at once

    @property
    def addresses(self) -> list[str]:
        return [FANOUT_ACCOUNT, *(spread_account(i) for i in range(self.spread_accounts))]


@dataclass
class Target:
    """A server under test, started."""

    name: str
    imaps_port: int
    delivery_port: int
    lmtp: bool
    pid: Callable[[], int | None]
    stop: Callable[[], None]
    problems: Callable[[], str]  # recent errors and warnings from its log


def filler_messages(count: int) -> list[bytes]:
    """Small, realistic messages: the mailboxes' content is not what is measured."""
    corpus = MessageCorpus(seed=7, median_size=2048, min_size=1024, max_size=4096)
    return [corpus.message(0, index) for index in range(count)]


# ---------------------------------------------------------------------------------------------
# mailpost


def prepare_mailpost(plan: Plan, password_hash: str) -> tuple[MailpostServer, Path, Path]:
    """Create mailpost's accounts and fill them (before it starts); (server, cert, key)."""
    from mailpost.net.tls import generate_self_signed

    room = plan.max_connections + 100
    limits: dict[str, int | float] = {"max_connections_per_ip": room,
                                      "max_connections_per_user": room}
    server = MailpostServer(scratch_dir("bench-mailpost"),
                            {"imaps": "127.0.0.1:0", "smtp": "127.0.0.1:0"}, limits,
                            hostname=HOSTNAME)
    tls_dir = server.data_dir / "tls"
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    generate_self_signed(cert, key, HOSTNAME)
    asyncio.run(_fill_mailpost(server.data_dir, plan, password_hash))
    return server, cert, key


async def _fill_mailpost(data_dir: Path, plan: Plan, password_hash: str) -> None:
    from mailpost.admin import ops
    from mailpost.store import DeliveryTarget

    async with open_mailpost_store(data_dir) as store:
        await ops.add_domain(store, DOMAIN)
        ids = {}
        for address in plan.addresses:
            ids[address] = (await store.add_account(address, password_hash)).id
        spread = [DeliveryTarget(ids[a]) for a in plan.addresses[1:]]
        fan = [DeliveryTarget(ids[FANOUT_ACCOUNT])]
        messages = filler_messages(max(plan.spread_messages, plan.fanout_messages))
        for index, message in enumerate(messages):
            targets = (spread if index < plan.spread_messages else []) + \
                (fan if index < plan.fanout_messages else [])
            writer = store.blobs.writer()
            writer.write(message)
            await store.deliver(await writer.finish(), targets)


def start_mailpost(server: MailpostServer) -> Target:
    server.start()

    def pid() -> int | None:
        process = server.process
        return None if process is None or process.poll() is not None else process.pid

    def problems() -> str:
        text = server.log_path.read_text(encoding="utf-8", errors="replace")
        bad = [line for line in text.splitlines() if " ERROR " in line or " WARNING " in line]
        return "\n".join(bad[-10:]) or "(no errors in the log)"

    return Target("mailpost", server.ports["imaps"], server.ports["smtp"], False, pid,
                  server.stop, problems)


# ---------------------------------------------------------------------------------------------
# Dovecot


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


def raise_inotify_instances(needed: int) -> str:
    """Let one user own ``needed`` inotify instances while the benchmark runs.

    Dovecot's ``imap`` watches the selected mailbox with an inotify instance of its own per
    process, and all virtual users' processes run as one system user; beyond Linux's default
    of 128 instances per user it logs "Inotify instance limit ... exceeded" and falls back to
    looking every ``mailbox_idle_check_interval`` (30 s). A site with thousands of IDLE
    clients raises the limit; so does the benchmark (as root), restoring it at clean-up.
    Returns what was done, for the report.
    """
    try:
        current = int(INOTIFY_INSTANCES.read_text())
    except (OSError, ValueError):
        return "fs.inotify.max_user_instances unreadable"
    if current >= needed:
        return f"fs.inotify.max_user_instances {current} (enough)"
    try:
        INOTIFY_INSTANCES.write_text(f"{needed}\n")
    except OSError as exc:
        print(f"warning: cannot raise fs.inotify.max_user_instances ({exc}): Dovecot will fall "
              "back to 30-second checks beyond 128 idlers", flush=True)
        return f"fs.inotify.max_user_instances {current} (could not raise: {exc})"

    def restore() -> None:
        INOTIFY_INSTANCES.write_text(f"{current}\n")

    CLEANUP.push("inotify limit", restore)
    return f"fs.inotify.max_user_instances raised from {current} to {needed} for the run"


def prepare_dovecot(plan: Plan, password_hash: str, cert: Path, key: Path) -> DovecotInstance:
    ensure_installed(["imap"])
    ensure_lmtp()
    print(f"  dovecot: {raise_inotify_instances(plan.max_connections + 500)}", flush=True)
    instance = DovecotInstance(scratch_dir("bench-dovecot"), free_port(), ("imap",),
                               lmtp_port=free_port())
    limit = plan.max_connections + 100
    instance.configure({address: password_hash for address in plan.addresses}, cert, key,
                       process_limit=limit, login_client_limit=limit)
    _fill_dovecot(instance, plan)
    return instance


def _fill_dovecot(instance: DovecotInstance, plan: Plan) -> None:
    """The same messages as mailpost's, as hard links to one file per message."""
    messages = filler_messages(max(plan.spread_messages, plan.fanout_messages))
    source = instance.workdir / "filler"
    source.mkdir(mode=0o755)
    names = []
    for index, message in enumerate(messages):
        name = f"{1_600_000_000 + index}.M{index}P1.bench,S={len(message)},W={len(message)}:2,"
        (source / name).write_bytes(message)
        os.chown(source / name, instance._account.pw_uid, instance._account.pw_gid)
        names.append(name)
    for address in plan.addresses:
        count = plan.fanout_messages if address == FANOUT_ACCOUNT else plan.spread_messages
        cur = instance.create_maildir(address) / "cur"
        for name in names[:count]:
            os.link(source / name, cur / name)


def start_dovecot(instance: DovecotInstance) -> Target:
    instance.start()
    assert instance.lmtp_port is not None
    return Target("dovecot", instance.port, instance.lmtp_port, True, instance.master_pid,
                  instance.stop, instance.log_problems)


def lmtp_installed() -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", "dovecot-lmtpd"],
                          capture_output=True, text=True, check=False)
    return done.returncode == 0 and done.stdout.endswith("installed")


def ensure_lmtp() -> None:
    """Debian ships Dovecot's LMTP server separately (``dovecot-lmtpd``)."""
    if lmtp_installed():
        return
    if os.geteuid() != 0:
        raise BenchError("dovecot-lmtpd not installed and installing needs root "
                         "(or run with --only mailpost)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "dovecot-lmtpd"]
    print("installing Debian's dovecot-lmtpd ...", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False,
                          timeout=600)
    if done.returncode != 0:
        raise BenchError(f"apt-get install dovecot-lmtpd failed: {done.stderr.strip()}")


# ---------------------------------------------------------------------------------------------
# Memory and CPU


@dataclass
class Memory:
    """One reading of a process tree: sums over its processes, in KiB."""

    processes: int
    rss_kib: int
    pss_kib: int | None
    private_kib: int | None

    def minus(self, other: Memory) -> dict[str, float | None]:
        def delta(a: int | None, b: int | None) -> float | None:
            return None if a is None or b is None else float(a - b)
        return {"processes": float(self.processes - other.processes),
                "rss_kib": float(self.rss_kib - other.rss_kib),
                "pss_kib": delta(self.pss_kib, other.pss_kib),
                "private_kib": delta(self.private_kib, other.private_kib)}


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def _fields(path: str, names: tuple[str, ...]) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open(path, encoding="ascii", errors="replace") as source:
            for line in source:
                key, _, rest = line.partition(":")
                if key in names:
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        pass
    return values


def tree_memory(root: int) -> Memory:
    """``VmRSS``, ``Pss`` and private pages summed over ``root`` and its descendants."""
    pids = tree_pids(root)
    rss = pss = private = 0
    pss_known = True
    for pid in pids:
        rss += _fields(f"/proc/{pid}/status", ("VmRSS",)).get("VmRSS", 0)
        rollup = _fields(f"/proc/{pid}/smaps_rollup",
                         ("Pss", "Private_Clean", "Private_Dirty"))
        if "Pss" not in rollup:
            pss_known = False
            continue
        pss += rollup["Pss"]
        private += rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
    return Memory(len(pids), rss, pss if pss_known else None, private if pss_known else None)


def cpu_seconds(target: Target) -> float | None:
    pid = target.pid()
    return None if pid is None else process_tree_cpu_seconds(pid)


async def settle(target: Target, seconds: float) -> float | None:
    """Wait ``seconds``; the server's CPU use in that time as a percentage of one core."""
    before = cpu_seconds(target)
    await asyncio.sleep(seconds)
    after = cpu_seconds(target)
    if before is None or after is None:
        return None
    return 100.0 * (after - before) / seconds
