"""POP3 download benchmark: mailpost against Dovecot, side by side in one run.

Theory of operation
-------------------
Both servers run at the same time on loopback, each with its own scratch directory on the
normal disk: mailpost as ``python -m mailpost serve`` with only a ``pop3s`` listener, Dovecot as
a private instance (``dovecot_instance.py``) with only ``pop3s``. Both present the same ECDSA
certificate (made with mailpost's own generator), and every user has the same argon2id password
hash on both (mailpost's, copied into Dovecot's passwd-file).

Every user (``u000@bench.test`` ...) has an INBOX of ``--messages`` realistic messages
(``mailboxes.MessageCorpus``: sizes around a 10 KiB median, 2-50 KiB, different for every
user, identical octets on both servers). mailpost's mailboxes are filled through its store API
before it starts, Dovecot's by writing Maildir files; the fill is not measured.

A *run* is N sessions at once, one per user, of the client in ``pop3_client.py``: what a
"leave mail on server" client does (TLS, login, LIST, UIDL, RETR of everything, QUIT), with up
to ``--window`` RETR commands in flight when PIPELINING is offered; the same client, with the
same settings, runs against both servers. With ``--delete`` the sessions DELE everything before
QUIT and the mailboxes are refilled between runs, outside the measurement. Rates are the
messages and message octets (MB = 10^6 octets) of all sessions divided by the run's wall time.
Every session checks what it received (counts, sizes, a sample of SHA-256 digests); a run in
which any session failed is reported as failed.

Before measuring, every user's mailbox is downloaded once on both servers ("first download",
reported separately): that builds Dovecot's index and uidlist and lets mailpost mark the
messages \\Seen, both of which happen once per message in real life, and it fills both servers'
authentication caches. The measured runs then alternate the servers, and the one that goes
first alternates between repetitions, so slow drifts of a shared machine hit both alike. Server
CPU is read from ``/proc`` for the whole process tree (all of Dovecot's processes, all of
mailpost's threads); the client's CPU is the benchmark process's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from common import (
    SCRATCH_ROOT,
    MailpostServer,
    bench_main,
    exit_cleanly_on_signals,
    filesystem_type,
    format_table,
    free_port,
    git_describe,
    int_list,
    machine_info,
    median,
    percentile,
    process_tree_cpu_seconds,
    run_async,
    scratch_dir,
    spread,
    write_results,
)
from dovecot_instance import DovecotInstance, dovecot_version, ensure_installed
from mailboxes import (
    MessageCorpus,
    create_accounts,
    deliver_to_mailpost,
    open_mailpost_store,
)
from pop3_client import SAMPLE_EVERY, ClientPlan, Mailbox, Session, client_context, download_all

DOMAIN = "bench.test"
HOSTNAME = "mx.bench.test"
SERVERS = ("mailpost", "dovecot")
TARGET_NOTE = "project target: mailpost at least at Dovecot's rate"
SETTLE_SECONDS = 0.5  # after a run, before reading the server's CPU: exiting workers finish

LEGEND = (
    "msg/s, MB/s: messages and message octets (MB = 10^6) of all sessions / the run's wall time.",
    "session: one user's connect + TLS + login + LIST + UIDL + RETR all + QUIT, in seconds.",
    ("server cpu: CPU of all the server's processes and threads per second of run; 100% = one "
     "core. client cpu: the benchmark's own."),
)


# ---------------------------------------------------------------------------------------------
# Accounts and mailboxes


async def fill(corpus: MessageCorpus, addresses: list[str], users: list[int], count: int,
               mailpost: MailpostServer | None, dovecot: DovecotInstance | None
               ) -> list[Mailbox]:
    """Deliver the same ``count`` messages per user to both servers; what each box holds."""
    async with contextlib.AsyncExitStack() as stack:
        store = None if mailpost is None else await stack.enter_async_context(
            open_mailpost_store(mailpost.data_dir))
        # A few users at a time: their deliveries share the store's group commits.
        slots = asyncio.Semaphore(8)

        async def fill_user(user: int) -> Mailbox:
            async with slots:
                messages = list(corpus.mailbox(user, count))
                if dovecot is not None:
                    dovecot.add_messages(addresses[user], messages)
                if store is not None:
                    await deliver_to_mailpost(store, addresses[user], messages)
                return Mailbox.of(user, addresses[user], messages)

        return list(await asyncio.gather(*(fill_user(user) for user in users)))


# ---------------------------------------------------------------------------------------------
# Servers under test and runs


@dataclass
class Target:
    name: str
    port: int
    cpu_seconds: Callable[[], float | None]
    refill: Callable[[list[int]], None]
    runs: list[dict[str, Any]] = field(default_factory=list)
    first_download: dict[str, Any] | None = None


def one_run(target: Target, plan: ClientPlan, boxes: list[Mailbox]) -> dict[str, Any]:
    cpu_before = target.cpu_seconds()
    result = run_async(download_all(plan, boxes))
    time.sleep(SETTLE_SECONDS)
    cpu_after = target.cpu_seconds()
    sessions: list[Session] = result.pop("sessions")
    wall = result["wall_s"]
    messages = sum(s.messages for s in sessions)
    octets = sum(s.octets for s in sessions)
    times = [s.seconds for s in sessions]
    errors = [f"{s.address}: {s.error}" for s in sessions if s.error]
    record = {
        "users": len(boxes), **result, "messages": messages, "octets": octets,
        "msg_rate": messages / wall, "mb_rate": octets / wall / 1e6,
        "session_p50_s": percentile(times, 0.5), "session_p99_s": percentile(times, 0.99),
        "errors": errors, "tls": sorted({s.tls for s in sessions if s.tls}),
        "pipelining": all(s.pipelining for s in sessions),
    }
    if cpu_before is not None and cpu_after is not None:
        record["server_cpu_seconds"] = cpu_after - cpu_before
        record["server_cpu_percent"] = 100 * (cpu_after - cpu_before) / wall
    if plan.delete:
        target.refill([box.user for box in boxes])
    return record


def progress_line(target: Target, label: str, record: dict[str, Any]) -> str:
    cpu = record.get("server_cpu_percent")
    return (f"  {label}  {record['users']:>3} users  {target.name:<8} "
            f"{record['msg_rate']:8.0f} msg/s {record['mb_rate']:7.1f} MB/s  "
            f"session p50 {record['session_p50_s']:6.2f} s p99 {record['session_p99_s']:6.2f} s"
            f"  server cpu {'?' if cpu is None else f'{cpu:3.0f}%'}"
            f"  client cpu {record['client_cpu_percent']:3.0f}%  errors {len(record['errors'])}")


def run_all(targets: list[Target], plan_for: Callable[[Target], ClientPlan],
            boxes: list[Mailbox], args: argparse.Namespace) -> None:
    for target in targets:
        record = one_run(target, plan_for(target), boxes)
        target.first_download = record
        print(progress_line(target, "first download", record), flush=True)
    total, done = args.repetitions * len(args.users) * len(targets), 0
    for repetition in range(args.repetitions):
        # Alternate who goes first, so neither server always runs on a "warmer" machine.
        order = targets if repetition % 2 == 0 else targets[::-1]
        for users in args.users:
            for target in order:
                record = one_run(target, plan_for(target), boxes[:users])
                record["repetition"] = repetition + 1
                target.runs.append(record)
                done += 1
                print(progress_line(target, f"rep {repetition + 1}/{args.repetitions}", record)
                      + f"  [{done}/{total}]", flush=True)


# ---------------------------------------------------------------------------------------------
# Summary and report


def summarise(target: Target, users: int) -> dict[str, Any]:
    runs = [run for run in target.runs if run["users"] == users]
    cpu = [run["server_cpu_percent"] for run in runs if "server_cpu_percent" in run]
    return {
        "msg_rate": spread([run["msg_rate"] for run in runs]),
        "mb_rate": spread([run["mb_rate"] for run in runs]),
        "session_p50_s": median([run["session_p50_s"] for run in runs]),
        "session_p99_s": median([run["session_p99_s"] for run in runs]),
        "server_cpu_percent": median(cpu) if cpu else float("nan"),
        "client_cpu_percent": median([run["client_cpu_percent"] for run in runs]),
        "errors": sum(len(run["errors"]) for run in runs),
        "failed_runs": sum(bool(run["errors"]) for run in runs),
        "tls": sorted({tls for run in runs for tls in run["tls"]}),
        "pipelining": all(run["pipelining"] for run in runs),
    }


def ratios(summaries: dict[str, dict[int, dict[str, Any]]]) -> dict[int, float]:
    if not set(SERVERS) <= summaries.keys():
        return {}
    mine, theirs = summaries["mailpost"], summaries["dovecot"]
    return {users: (mine[users]["msg_rate"]["median"] / theirs[users]["msg_rate"]["median"]
                    if theirs[users]["msg_rate"]["median"] else float("nan"))
            for users in mine}


def _range(values: dict[str, float], digits: int = 0) -> str:
    return (f"{values['median']:.{digits}f} "
            f"({values['min']:.{digits}f}-{values['max']:.{digits}f})")


def report(targets: list[Target], summaries: dict[str, dict[int, dict[str, Any]]],
           ratio: dict[int, float], args: argparse.Namespace) -> str:
    headers = ["server", "users", "msg/s median (min-max)", "MB/s median (min-max)",
               "session p50 s", "p99 s", "server cpu", "client cpu", "errors"]
    rows = []
    for users in args.users:
        for name, by_users in summaries.items():
            s = by_users[users]
            errors = str(s["errors"]) + (f" ({s['failed_runs']} failed run(s))"
                                         if s["failed_runs"] else "")
            rows.append([name, str(users), _range(s["msg_rate"]), _range(s["mb_rate"], 1),
                         f"{s['session_p50_s']:.2f}", f"{s['session_p99_s']:.2f}",
                         f"{s['server_cpu_percent']:.0f}%", f"{s['client_cpu_percent']:.0f}%",
                         errors])
    mode = "DELE all + QUIT, refilled between runs" if args.delete else "leave on server"
    lines = ["", (f"POP3 download: {args.messages} messages per user ({mode}), implicit TLS, "
                  f"up to {args.window} RETR in flight, {args.repetitions} repetition(s); "
                  "medians over repetitions"), "",
             format_table(headers, rows, right_aligned=(1, 2, 3, 4, 5, 6, 7))]
    for users, value in ratio.items():
        lines.append(f"mailpost/dovecot at {users:>3} users: {value:.2f}x (msg/s and MB/s)")
    for target in targets:
        first = target.first_download
        if first is not None:
            lines.append(f"first download ({first['users']} users at once, not in the table): "
                         f"{target.name} {first['msg_rate']:.0f} msg/s, {first['wall_s']:.1f} s")
    tls = sorted({t for by_users in summaries.values() for s in by_users.values()
                  for t in s["tls"]})
    pipelining = all(s["pipelining"] for by_users in summaries.values()
                     for s in by_users.values())
    lines.append(f"TLS negotiated: {', '.join(tls) or '?'}; PIPELINING offered by all: "
                 f"{'yes' if pipelining else 'no'}")
    return "\n".join([*lines, "", *LEGEND, TARGET_NOTE + "."])


def problems_found(targets: list[Target],
                   summaries: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    problems = []
    for target in targets:
        for record in [target.first_download or {}, *target.runs]:
            for error in record.get("errors", [])[:3]:
                problems.append(f"{target.name} at {record['users']} users: {error}")
    for name, by_users in summaries.items():
        for users, summary in by_users.items():
            if summary["client_cpu_percent"] > 85:
                problems.append(f"{name} at {users} users: the client used "
                                f"{summary['client_cpu_percent']:.0f}% of a core and may have "
                                "been the bottleneck")
    return problems


# ---------------------------------------------------------------------------------------------
# Set-up

AUTH_NOTES = (
    "both servers verify the same argon2id hash (m=19456 KiB, t=2, p=1) of one password",
    ("mailpost remembers a successful verification for 5 minutes: after the first download "
     "its logins skip argon2id"),
    ("dovecot: auth_cache_size=10M, auth_cache_ttl=5 mins; its cache keeps the hash and "
     "verifies it again on every login (one argon2id run per session, in auth-worker processes)"),
)


def start_servers(names: list[str], args: argparse.Namespace, corpus: MessageCorpus,
                  password: str) -> tuple[list[Target], list[Mailbox], Path]:
    """Create both servers' accounts and mailboxes, start them; (targets, mailboxes, cert)."""
    from mailpost.net.tls import generate_self_signed

    users = max(args.users)
    addresses = [f"u{user:03d}@{DOMAIN}" for user in range(users)]
    limit = max(2 * users, 100)
    mailpost = dovecot = None
    if "mailpost" in names:
        mailpost = MailpostServer(scratch_dir("bench-mailpost"), {"pop3s": "127.0.0.1:0"},
                                  {"max_connections_per_ip": limit}, hostname=HOSTNAME)
    if "dovecot" in names:
        ensure_installed(["pop3"])
        dovecot = DovecotInstance(scratch_dir("bench-dovecot"), free_port())
    # mailpost uses data_dir/tls/*.pem when its configuration names no certificate.
    tls_dir = (mailpost.data_dir if mailpost else scratch_dir("bench-tls")) / "tls"
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    generate_self_signed(cert, key, HOSTNAME)
    started = time.monotonic()
    data_dir = mailpost.data_dir if mailpost is not None else None
    hashes = run_async(create_accounts(data_dir, addresses, password))
    if dovecot is not None:
        dovecot.configure(hashes, cert, key, process_limit=limit)
    boxes = run_async(fill(corpus, addresses, list(range(users)), args.messages,
                           mailpost, dovecot))
    octets = sum(box.octets for box in boxes)
    print(f"filled {users} mailbox(es) of {args.messages} messages ({octets / 1e6:.0f} MB per "
          f"server) in {time.monotonic() - started:.0f} s", flush=True)
    targets = []
    if mailpost is not None:
        mailpost.start()
        targets.append(Target("mailpost", mailpost.ports["pop3s"], mailpost.cpu_seconds,
                              _refiller(corpus, addresses, args.messages, mailpost, None)))
    if dovecot is not None:
        dovecot.start()
        instance = dovecot

        def dovecot_cpu() -> float | None:
            pid = instance.master_pid()
            return None if pid is None else process_tree_cpu_seconds(pid)

        targets.append(Target("dovecot", dovecot.port, dovecot_cpu,
                              _refiller(corpus, addresses, args.messages, None, dovecot)))
    return targets, boxes, cert


def _refiller(corpus: MessageCorpus, addresses: list[str], count: int,
              mailpost: MailpostServer | None,
              dovecot: DovecotInstance | None) -> Callable[[list[int]], None]:
    """For ``--delete``: deliver the users' mailboxes again (into the running server)."""
    def refill(users: list[int]) -> None:
        run_async(fill(corpus, addresses, users, count, mailpost, dovecot))
    return refill


# ---------------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Messages/s and MB/s downloaded over POP3 (TLS): mailpost vs Dovecot.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repetition, 200 messages per user")
    parser.add_argument("--only", choices=SERVERS, help="benchmark one server only")
    parser.add_argument("--users", default="1,10", type=int_list,
                        help="comma-separated concurrent user counts (default: 1,10)")
    parser.add_argument("--messages", type=int, help="messages per mailbox (default 1000)")
    parser.add_argument("--repetitions", type=int, help="runs per case (default 3)")
    parser.add_argument("--window", type=int, default=16,
                        help="RETR commands in flight when PIPELINING is offered; 1 = one "
                             "at a time (default 16)")
    parser.add_argument("--delete", action="store_true",
                        help="DELE every message before QUIT; refill between runs")
    parser.add_argument("--median-size", type=int, default=10240,
                        help="median message size in octets (default 10240; 2-50 KiB range)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated mail")
    parser.add_argument("--session-timeout", type=float, default=300.0,
                        help="seconds one session may take before it counts as failed")
    args = parser.parse_args(argv)
    quick = (1, 200) if args.quick else (3, 1000)
    args.repetitions = args.repetitions or quick[0]
    args.messages = args.messages or quick[1]
    if args.repetitions < 1 or args.messages < 1 or args.window < 1:
        parser.error("need --repetitions >= 1, --messages >= 1, --window >= 1")
    if not 2048 <= args.median_size <= 51200:
        parser.error("--median-size must be 2048-51200")
    return args


def versions(names: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    if "mailpost" in names:
        found["mailpost"] = metadata.version("mailpost")
        found["mailpost_git"] = git_describe()
    if "dovecot" in names:
        found["dovecot"] = dovecot_version()
    return found


def print_preamble(info: dict[str, Any], scratch_fs: str, args: argparse.Namespace,
                   names: list[str]) -> None:
    print(f"machine: {info['cores']} cores, {info['cpu_model']}, Python {info['python']}, "
          f"load {info['load_average_at_start']}")
    print(f"scratch directories under {SCRATCH_ROOT} ({scratch_fs}); servers: "
          f"{', '.join(names)}; users {args.users}; {args.messages} messages per user; "
          f"{args.repetitions} repetition(s)", flush=True)


@bench_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_signals()
    names = [args.only] if args.only else list(SERVERS)
    info = machine_info()
    scratch_fs = filesystem_type(SCRATCH_ROOT)
    print_preamble(info, scratch_fs, args, names)
    corpus = MessageCorpus(args.seed, args.median_size)
    password = secrets.token_urlsafe(16)
    targets, boxes, cert = start_servers(names, args, corpus, password)
    context = client_context(cert)

    def plan_for(target: Target) -> ClientPlan:
        return ClientPlan("127.0.0.1", target.port, context, password, args.window,
                          args.delete, args.session_timeout)

    run_all(targets, plan_for, boxes, args)
    summaries = {t.name: {n: summarise(t, n) for n in args.users} for t in targets}
    ratio = ratios(summaries)
    problems = problems_found(targets, summaries)
    print(report(targets, summaries, ratio, args))
    for problem in problems:
        print(f"PROBLEM: {problem}")
    path = write_results("pop3_download", {
        "benchmark": "pop3_download",
        "machine": info,
        "parameters": {"messages": args.messages, "users": args.users,
                       "repetitions": args.repetitions, "window": args.window,
                       "delete": args.delete, "seed": args.seed,
                       "median_size": args.median_size, "sample_every": SAMPLE_EVERY,
                       "scratch_dir": str(SCRATCH_ROOT), "scratch_filesystem": scratch_fs},
        "versions": versions(names),
        "mailboxes": {"octets_per_user": [box.octets for box in boxes]},
        "auth": AUTH_NOTES,
        "servers": {t.name: {"first_download": t.first_download, "runs": t.runs,
                             "summary": summaries[t.name]} for t in targets},
        "ratio_mailpost_over_dovecot": ratio,
        "problems": problems,
    })
    print(f"results written to {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
