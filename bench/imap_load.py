"""IMAP load benchmark: mailpost against Dovecot, a mixed workload of many clients, in one run.

Theory of operation
-------------------
Both servers run at the same time on loopback, each with its own scratch directory on the
normal disk: mailpost as ``python -m mailpost serve`` with only an ``imaps`` listener, Dovecot
as a private instance (``dovecot_instance.py``) with only ``imaps``. Both present the same ECDSA
certificate (made with mailpost's own generator), and every user has the same argon2id password
hash on both (mailpost's, copied into Dovecot's passwd-file).

Every user (``u000@bench.test`` ...) has an INBOX of ``--messages`` realistic messages
(``mailboxes.MessageCorpus``: sizes around a 10 KiB median, 2-50 KiB, different for every user,
identical octets on both servers), filled before the servers start (mailpost through its store
API, Dovecot by writing Maildir files); the fill is not measured.

A *run* is N simulated clients at once for a warm-up plus a measured window; client *i* uses
user *i* and loops over sessions of the mixed workload in ``imap_client.py`` (TLS, LOGIN,
SELECT, a flag resync, the newest headers, a few bodies, STORE, APPEND, STORE \\Deleted +
EXPUNGE, LOGOUT). Rates are the sessions and the commands completed inside the window per
second; latencies are per command. Every reply is checked; a run in which anything failed is
reported as failed.

Before measuring, every user runs one session on each server ("first session", reported
separately): it builds Dovecot's index and cache of the mailbox, fills both servers'
authentication caches, and tells which capabilities the servers offer: the APPEND literal is
non-synchronising (LITERAL+) only if all servers offer it, so both get the same octets. The
measured runs then alternate the servers, and the one that goes first alternates between
repetitions, so slow drifts of a shared machine hit both alike. Server CPU is read from
``/proc`` at the window's start and end for the whole process tree (all of Dovecot's processes,
all of mailpost's threads); for Dovecot the share of its long-lived auth processes (where the
argon2id verifications run) is shown too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
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
    process_tree_members,
    run_async,
    scratch_dir,
    spread,
    write_results,
)
from dovecot_instance import DovecotInstance, dovecot_version, ensure_installed
from imap_client import (
    BoxFacts,
    CpuProbe,
    LoadPlan,
    LoadResult,
    append_pool,
    client_context,
    run_load,
    run_once,
)
from mailboxes import (
    MessageCorpus,
    create_accounts,
    deliver_to_mailpost,
    open_mailpost_store,
)

DOMAIN = "bench.test"
HOSTNAME = "mx.bench.test"
SERVERS = ("mailpost", "dovecot")
TARGET = 1.5  # the project's target: mailpost at least 1.5 x Dovecot's sessions per second
COMMANDS = ("connect", "LOGIN", "SELECT", "FETCH FLAGS", "FETCH HEADERS", "FETCH BODY",
            "STORE", "APPEND", "EXPUNGE", "LOGOUT", "close", "session")

LEGEND = (
    ("sessions/s, ops/s: sessions (LOGOUT replies) and commands (tagged OK replies) completed "
     "inside the measured window, per second."),
    ("latency: write of the command to its tagged reply, ms; connect = TCP + TLS + greeting; "
     "session = connect to LOGOUT reply."),
    ("server cpu: CPU of all the server's processes and threads per second of window; 100% = "
     "one core; dovecot auth: its auth processes' share. client cpu: the benchmark's own."),
)

AUTH_NOTES = (
    "both servers verify the same argon2id hash (m=19456 KiB, t=2, p=1) of one password",
    ("mailpost remembers a successful verification for 5 minutes: after the first session its "
     "logins skip argon2id"),
    ("dovecot: auth_cache_size=10M, auth_cache_ttl=5 mins; its cache keeps the hash and "
     "verifies it again on every login (one argon2id run per session, in auth-worker processes)"),
)


# ---------------------------------------------------------------------------------------------
# Accounts and mailboxes


async def fill(corpus: MessageCorpus, addresses: list[str], count: int,
               mailpost: MailpostServer | None, dovecot: DovecotInstance | None
               ) -> list[BoxFacts]:
    """Deliver the same ``count`` messages per user to both servers; what each box holds."""
    async with contextlib.AsyncExitStack() as stack:
        store = None if mailpost is None else await stack.enter_async_context(
            open_mailpost_store(mailpost.data_dir))
        slots = asyncio.Semaphore(8)  # a few users at a time share the store's group commits

        async def fill_user(user: int) -> BoxFacts:
            async with slots:
                messages = list(corpus.mailbox(user, count))
                if dovecot is not None:
                    dovecot.add_messages(addresses[user], messages)
                if store is not None:
                    await deliver_to_mailpost(store, addresses[user], messages)
                return BoxFacts.of(user, addresses[user], messages)

        return list(await asyncio.gather(*(fill_user(u) for u in range(len(addresses)))))


# ---------------------------------------------------------------------------------------------
# Servers under test and runs


@dataclass
class Target:
    name: str
    port: int
    probe: CpuProbe
    runs: list[dict[str, Any]] = field(default_factory=list)
    first_sessions: dict[str, Any] | None = None
    capabilities: frozenset[str] = frozenset()


def mailpost_probe(server: MailpostServer) -> CpuProbe:
    def probe() -> dict[str, float]:
        cpu = server.cpu_seconds()
        return {} if cpu is None else {"server": cpu}
    return probe


def dovecot_probe(instance: DovecotInstance) -> CpuProbe:
    """The whole tree's CPU, and each live auth process's own (keys ``auth/PID``)."""
    def probe() -> dict[str, float]:
        pid = instance.master_pid()
        total = None if pid is None else process_tree_cpu_seconds(pid)
        if pid is None or total is None:
            return {}
        found = {"server": total}
        for member, (title, seconds) in process_tree_members(pid).items():
            if title.startswith("dovecot/auth"):
                found[f"auth/{member}"] = seconds
        return found
    return probe


def run_record(result: LoadResult) -> dict[str, Any]:
    duration = result.duration
    latency = {name: {"p50_ms": 1000 * percentile(values, 0.5),
                      "p99_ms": 1000 * percentile(values, 0.99), "count": len(values)}
               for name, values in result.latencies.items()}
    record: dict[str, Any] = {
        "clients": result.clients, "sessions": result.sessions,
        "sessions_total": result.sessions_total, "commands": result.commands,
        "session_rate": result.sessions / duration, "ops_rate": result.commands / duration,
        "latency": latency, "client_cpu_percent": 100 * result.client_cpu_seconds / duration,
        "failures": result.failures, "failure_examples": result.failure_examples,
        "tls": result.tls,
    }
    if "server" in result.cpu:
        record["server_cpu_percent"] = 100 * result.cpu["server"] / duration
    auth = [value for key, value in result.cpu.items() if key.startswith("auth/")]
    if auth:
        record["auth_cpu_percent"] = 100 * sum(auth) / duration
    return record


def progress_line(target: Target, label: str, record: dict[str, Any]) -> str:
    cpu = record.get("server_cpu_percent")
    session = record["latency"].get("session", {})
    return (f"  {label}  {record['clients']:>3} clients  {target.name:<8} "
            f"{record['session_rate']:7.1f} sessions/s {record['ops_rate']:7.0f} ops/s  "
            f"session p50 {session.get('p50_ms', float('nan')):6.0f} ms "
            f"p99 {session.get('p99_ms', float('nan')):6.0f} ms"
            f"  server cpu {'?' if cpu is None else f'{cpu:3.0f}%'}"
            f"  client cpu {record['client_cpu_percent']:3.0f}%"
            f"  errors {sum(record['failures'].values())}")


def first_sessions(targets: list[Target], plan_for: Callable[[Target, bool], LoadPlan],
                   boxes: list[BoxFacts]) -> bool:
    """One verified session per user on each server; whether all offer LITERAL+."""
    for target in targets:
        started = time.monotonic()
        result = run_async(run_once(plan_for(target, False), boxes))
        wall = time.monotonic() - started
        target.capabilities = result.capabilities
        target.first_sessions = {"clients": len(boxes), "wall_s": wall,
                                 "sessions": result.sessions_total,
                                 "failures": result.failures,
                                 "failure_examples": result.failure_examples,
                                 "capabilities": sorted(result.capabilities)}
        print(f"  first session of {len(boxes)} users on {target.name}: {wall:.1f} s, "
              f"{result.sessions_total} ok, errors {result.failure_count}", flush=True)
    return all("LITERAL+" in target.capabilities for target in targets)


def run_all(targets: list[Target], plan_for: Callable[[Target, bool], LoadPlan],
            boxes: list[BoxFacts], args: argparse.Namespace) -> bool:
    """The measured runs; returns whether LITERAL+ was used."""
    literal_plus = first_sessions(targets, plan_for, boxes) and not args.sync_literals
    total, done = args.repetitions * len(args.clients) * len(targets), 0
    for repetition in range(args.repetitions):
        # Alternate who goes first, so neither server always runs on a "warmer" machine.
        order = targets if repetition % 2 == 0 else targets[::-1]
        for clients in args.clients:
            for target in order:
                result = run_async(run_load(plan_for(target, literal_plus), boxes[:clients],
                                            target.probe))
                record = run_record(result)
                record["repetition"] = repetition + 1
                target.runs.append(record)
                done += 1
                print(progress_line(target, f"rep {repetition + 1}/{args.repetitions}", record)
                      + f"  [{done}/{total}]", flush=True)
    return literal_plus


# ---------------------------------------------------------------------------------------------
# Summary and report


def summarise(target: Target, clients: int) -> dict[str, Any]:
    runs = [run for run in target.runs if run["clients"] == clients]

    def median_of(key: str) -> float:
        values = [run[key] for run in runs if key in run]
        return median(values) if values else float("nan")

    latency = {}
    for name in COMMANDS:
        found = [run["latency"][name] for run in runs if name in run["latency"]]
        if found:
            latency[name] = {"p50_ms": median([f["p50_ms"] for f in found]),
                             "p99_ms": median([f["p99_ms"] for f in found])}
    return {
        "session_rate": spread([run["session_rate"] for run in runs]),
        "ops_rate": spread([run["ops_rate"] for run in runs]),
        "latency": latency,
        "server_cpu_percent": median_of("server_cpu_percent"),
        "auth_cpu_percent": median_of("auth_cpu_percent"),
        "client_cpu_percent": median_of("client_cpu_percent"),
        "errors": sum(sum(run["failures"].values()) for run in runs),
        "failed_runs": sum(bool(run["failures"]) for run in runs),
        "tls": sorted({tls for run in runs for tls in run["tls"]}),
    }


def ratios(summaries: dict[str, dict[int, dict[str, Any]]]) -> dict[int, dict[str, float]]:
    if not set(SERVERS) <= summaries.keys():
        return {}
    mine, theirs = summaries["mailpost"], summaries["dovecot"]
    found = {}
    for clients in mine:
        found[clients] = {
            key: (mine[clients][key]["median"] / theirs[clients][key]["median"]
                  if theirs[clients][key]["median"] else float("nan"))
            for key in ("session_rate", "ops_rate")}
    return found


def _range(values: dict[str, float], digits: int = 0) -> str:
    return (f"{values['median']:.{digits}f} "
            f"({values['min']:.{digits}f}-{values['max']:.{digits}f})")


def _cpu(summary: dict[str, Any]) -> str:
    text = f"{summary['server_cpu_percent']:.0f}%"
    auth = summary["auth_cpu_percent"]
    return text if math.isnan(auth) else f"{text} (auth {auth:.0f}%)"


def rate_table(summaries: dict[str, dict[int, dict[str, Any]]], clients: list[int]) -> str:
    headers = ["server", "clients", "sessions/s median (min-max)", "ops/s median (min-max)",
               "session p50 ms", "p99 ms", "server cpu", "client cpu", "errors"]
    rows = []
    for n in clients:
        for name, by_clients in summaries.items():
            s = by_clients[n]
            session = s["latency"].get("session", {})
            errors = str(s["errors"]) + (f" ({s['failed_runs']} failed run(s))"
                                         if s["failed_runs"] else "")
            rows.append([name, str(n), _range(s["session_rate"], 1), _range(s["ops_rate"]),
                         f"{session.get('p50_ms', float('nan')):.0f}",
                         f"{session.get('p99_ms', float('nan')):.0f}", _cpu(s),
                         f"{s['client_cpu_percent']:.0f}%", errors])
    return format_table(headers, rows, right_aligned=(1, 2, 3, 4, 5, 6, 7))


def latency_table(summaries: dict[str, dict[int, dict[str, Any]]], clients: list[int]) -> str:
    columns = [(name, n) for n in clients for name in summaries]
    headers = ["p50/p99 ms", *(f"{name} {n}" for name, n in columns)]
    rows = []
    for command in COMMANDS:
        row = [command]
        for name, n in columns:
            found = summaries[name][n]["latency"].get(command)
            row.append("-" if found is None else
                       f"{found['p50_ms']:.1f}/{found['p99_ms']:.1f}")
        rows.append(row)
    return format_table(headers, rows, right_aligned=range(1, len(headers)))


def report(targets: list[Target], summaries: dict[str, dict[int, dict[str, Any]]],
           ratio: dict[int, dict[str, float]], literal_plus: bool,
           args: argparse.Namespace) -> str:
    lines = ["", (f"IMAP load: {args.messages} messages per INBOX, implicit TLS, "
                  f"{args.warmup:g} s warm-up + {args.duration:g} s per run, "
                  f"{args.repetitions} repetition(s); medians over repetitions"), "",
             rate_table(summaries, args.clients), "",
             "per-command latency (clients in the column head)", "",
             latency_table(summaries, args.clients), ""]
    for clients, value in ratio.items():
        met = "met" if value["session_rate"] >= TARGET else "NOT met"
        lines.append(f"mailpost/dovecot at {clients:>3} clients: {value['session_rate']:.2f}x "
                     f"sessions/s, {value['ops_rate']:.2f}x ops/s  (target {TARGET}x: {met})")
    for target in targets:
        first = target.first_sessions
        if first is not None:
            lines.append(f"first session per user (not in the table): {target.name} "
                         f"{first['clients']} users in {first['wall_s']:.1f} s")
    tls = sorted({t for by_clients in summaries.values() for s in by_clients.values()
                  for t in s["tls"]})
    literal = "LITERAL+ ({n+})" if literal_plus else "synchronising ({n} and wait for +)"
    lines.append(f"TLS negotiated: {', '.join(tls) or '?'}; APPEND literal: {literal}")
    return "\n".join([*lines, "", *LEGEND,
                      f"project target: mailpost at least {TARGET}x Dovecot's sessions/s."])


def problems_found(targets: list[Target],
                   summaries: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    problems = []
    for target in targets:
        for record in [target.first_sessions or {}, *target.runs]:
            for key, count in record.get("failures", {}).items():
                example = record["failure_examples"].get(key, "")
                problems.append(f"{target.name} at {record['clients']} clients: {count} x "
                                f"{key}: {example}")
    for name, by_clients in summaries.items():
        for clients, summary in by_clients.items():
            if summary["client_cpu_percent"] > 85:
                problems.append(f"{name} at {clients} clients: the client used "
                                f"{summary['client_cpu_percent']:.0f}% of a core and may have "
                                "been the bottleneck")
    return problems


# ---------------------------------------------------------------------------------------------
# Set-up


def start_servers(names: list[str], args: argparse.Namespace, corpus: MessageCorpus,
                  password: str) -> tuple[list[Target], list[BoxFacts], Path]:
    """Create both servers' accounts and mailboxes, start them; (targets, mailboxes, cert)."""
    from mailpost.net.tls import generate_self_signed

    users = max(args.clients)
    addresses = [f"u{user:03d}@{DOMAIN}" for user in range(users)]
    limit = max(2 * users, 100)
    mailpost = dovecot = None
    if "mailpost" in names:
        mailpost = MailpostServer(scratch_dir("bench-mailpost"), {"imaps": "127.0.0.1:0"},
                                  {"max_connections_per_ip": limit}, hostname=HOSTNAME)
    if "dovecot" in names:
        ensure_installed(["imap"])
        dovecot = DovecotInstance(scratch_dir("bench-dovecot"), free_port(), ("imap",))
    # mailpost uses data_dir/tls/*.pem when its configuration names no certificate.
    tls_dir = (mailpost.data_dir if mailpost else scratch_dir("bench-tls")) / "tls"
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    generate_self_signed(cert, key, HOSTNAME)
    started = time.monotonic()
    data_dir = mailpost.data_dir if mailpost is not None else None
    hashes = run_async(create_accounts(data_dir, addresses, password))
    if dovecot is not None:
        dovecot.configure(hashes, cert, key, process_limit=limit)
    boxes = run_async(fill(corpus, addresses, args.messages, mailpost, dovecot))
    octets = sum(box.octets for box in boxes)
    print(f"filled {users} mailbox(es) of {args.messages} messages ({octets / 1e6:.0f} MB per "
          f"server) in {time.monotonic() - started:.0f} s", flush=True)
    targets = []
    if mailpost is not None:
        mailpost.start()
        targets.append(Target("mailpost", mailpost.ports["imaps"], mailpost_probe(mailpost)))
    if dovecot is not None:
        dovecot.start()
        targets.append(Target("dovecot", dovecot.port, dovecot_probe(dovecot)))
    return targets, boxes, cert


# ---------------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Sessions/s and commands/s of a mixed IMAP workload (TLS): mailpost vs "
                    "Dovecot.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repetition, 1 s warm-up + 3 s, clients 1,10, "
                             "200 messages per user")
    parser.add_argument("--only", choices=SERVERS, help="benchmark one server only")
    parser.add_argument("--clients", type=int_list,
                        help="comma-separated concurrent client counts (default: 1,10,50)")
    parser.add_argument("--messages", type=int, help="messages per INBOX (default 500)")
    parser.add_argument("--repetitions", type=int, help="runs per case (default 3)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run (default 2)")
    parser.add_argument("--headers", type=int, default=50,
                        help="newest messages whose headers a session fetches (default 50)")
    parser.add_argument("--bodies", type=int, default=3,
                        help="random messages whose body a session fetches (default 3)")
    parser.add_argument("--sync-literals", action="store_true",
                        help="APPEND with a synchronising literal even if LITERAL+ is offered")
    parser.add_argument("--median-size", type=int, default=10240,
                        help="median message size in octets (default 10240; 2-50 KiB range)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the mail and the choices")
    args = parser.parse_args(argv)
    quick = args.quick
    args.clients = args.clients or ([1, 10] if quick else [1, 10, 50])
    args.messages = args.messages or (200 if quick else 500)
    args.repetitions = args.repetitions or (1 if quick else 3)
    args.duration = args.duration or (3.0 if quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 2.0)
    if args.repetitions < 1 or args.duration <= 0 or args.warmup < 0 or args.bodies < 0:
        parser.error("need --repetitions >= 1, --duration > 0, --warmup >= 0, --bodies >= 0")
    if not 1 <= args.headers <= args.messages:
        parser.error("need 1 <= --headers <= --messages")
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


@bench_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_signals()
    names = [args.only] if args.only else list(SERVERS)
    info = machine_info()
    scratch_fs = filesystem_type(SCRATCH_ROOT)
    print(f"machine: {info['cores']} cores, {info['cpu_model']}, Python {info['python']}, "
          f"load {info['load_average_at_start']}")
    print(f"scratch directories under {SCRATCH_ROOT} ({scratch_fs}); servers: "
          f"{', '.join(names)}; clients {args.clients}; {args.messages} messages per user; "
          f"{args.repetitions} repetition(s)", flush=True)
    corpus = MessageCorpus(args.seed, args.median_size)
    password = secrets.token_urlsafe(16)
    appends = tuple(append_pool(args.seed))
    targets, boxes, cert = start_servers(names, args, corpus, password)
    context = client_context(cert)

    def plan_for(target: Target, literal_plus: bool) -> LoadPlan:
        return LoadPlan("127.0.0.1", target.port, context, password, args.warmup,
                        args.duration, args.headers, args.bodies, literal_plus, args.seed,
                        appends)

    literal_plus = run_all(targets, plan_for, boxes, args)
    summaries = {t.name: {n: summarise(t, n) for n in args.clients} for t in targets}
    ratio = ratios(summaries)
    problems = problems_found(targets, summaries)
    print(report(targets, summaries, ratio, literal_plus, args))
    for problem in problems:
        print(f"PROBLEM: {problem}")
    path = write_results("imap_load", {
        "benchmark": "imap_load",
        "machine": info,
        "parameters": {"messages": args.messages, "clients": args.clients,
                       "repetitions": args.repetitions, "duration_s": args.duration,
                       "warmup_s": args.warmup, "headers": args.headers,
                       "bodies": args.bodies, "literal_plus": literal_plus,
                       "append_sizes": sorted(len(m) for m in appends),
                       "seed": args.seed, "median_size": args.median_size,
                       "scratch_dir": str(SCRATCH_ROOT), "scratch_filesystem": scratch_fs},
        "versions": versions(names),
        "mailboxes": {"octets_per_user": [box.octets for box in boxes]},
        "auth": AUTH_NOTES,
        "servers": {t.name: {"first_sessions": t.first_sessions, "runs": t.runs,
                             "summary": summaries[t.name]} for t in targets},
        "ratio_mailpost_over_dovecot": ratio,
        "target_ratio": TARGET,
        "problems": problems,
    })
    print(f"results written to {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
