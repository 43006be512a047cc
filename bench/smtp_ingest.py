"""SMTP ingest benchmark: mailpost against Postfix, side by side in one run.

Theory of operation
-------------------
Both servers run at the same time on loopback, each with its own scratch directory on the
normal disk (fsync must cost what it costs in production): mailpost as ``python -m mailpost
serve`` with a temporary configuration, Postfix as a private instance (see
``postfix_instance.py``) that never touches /etc/postfix. One recipient, ``rcpt@bench.test``,
exists on both.

For every repetition and every connection count, each server gets one run of the load generator
(``smtp_load.py``): N connections sending 10 KB messages back to back for a warm-up and then a
measured window. Runs of the two servers alternate, and the server that goes first alternates
between repetitions, so slow drifts of a shared machine hit both alike. After a Postfix run the
benchmark waits until every accepted message has reached the Maildir, so a delivery backlog never
competes with the next run; the time that takes gives Postfix's end-to-end rate.

What a 250 means differs, and the report says so: Postfix answers 250 once the message is in its
fsynced queue and delivers to the Maildir afterwards; mailpost answers 250 once the message is
stored in the mailbox. So the "delivered msg/s" column (all messages of a run divided by the time
from the run's start until the last one was delivered) compares like with like; the "msg/s"
column is the rate of 250 replies in the measured window.

Rates are quoted as the median of the repetitions (with min and max), latencies as the median of
the repetitions' percentiles, and the ratio mailpost/Postfix from the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

from common import (
    SCRATCH_ROOT,
    BenchError,
    MailpostServer,
    bench_main,
    exit_cleanly_on_signals,
    filesystem_type,
    format_table,
    free_port,
    machine_info,
    median,
    percentile,
    process_tree_cpu_seconds,
    scratch_dir,
    spread,
    write_results,
)
from postfix_instance import PostfixInstance, ensure_installed, postfix_version
from smtp_load import LoadPlan, LoadResult, run_load

DOMAIN = "bench.test"
USER = "rcpt"
RECIPIENT = f"{USER}@{DOMAIN}"
SENDER = "sender@bench-client.test"
SERVERS = ("mailpost", "postfix")
TARGET_NOTE = ("project target: mailpost at least Postfix's 250-rate at 20 connections, "
               "with fsync")

LEGEND = (
    "msg/s: 250 replies to the end of DATA inside the measured window.",
    "  postfix's 250 = queued (fsynced); it delivers to the Maildir afterwards.",
    "  mailpost's 250 = stored in the mailbox (fsynced).",
    "delivered msg/s: messages of a run / time from its start until the last one was delivered.",
    "latency: from writing MAIL FROM to the 250 after the message. server cpu: 100% = one core.",
)

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------
# Servers under test


@dataclass
class Target:
    """A server under test, as the runs see it."""

    name: str
    port: int
    durability: str
    cpu_seconds: Callable[[], float | None]
    # Postfix only: wait for the Maildir to receive what was accepted; (time, count).
    wait_delivered: Callable[[int], tuple[float | None, int]] | None = None
    delivered_so_far: Callable[[], int] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)


def start_mailpost(max_connections: int) -> tuple[Target, MailpostServer]:
    server = MailpostServer(scratch_dir("bench-mailpost"), {"smtp": "127.0.0.1:0"},
                            {"max_connections_per_ip": max(2 * max_connections, 100)})
    server.add_account(RECIPIENT, secrets.token_urlsafe(16))
    server.start()
    target = Target("mailpost", server.ports["smtp"],
                    "250 after the message is stored in the mailbox (fsync)", server.cpu_seconds)
    return target, server


def start_postfix() -> tuple[Target, PostfixInstance]:
    ensure_installed()
    instance = PostfixInstance(scratch_dir("bench-postfix"), free_port(), DOMAIN, [USER])
    instance.configure()
    instance.start()

    def cpu() -> float | None:
        pid = instance.master_pid()
        return None if pid is None else process_tree_cpu_seconds(pid)

    target = Target("postfix", instance.port,
                    "250 after the message is in the fsynced queue; Maildir delivery follows",
                    cpu, lambda count: instance.wait_delivered(USER, count),
                    lambda: instance.delivered(USER))
    return target, instance


# ---------------------------------------------------------------------------------------------
# Runs


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run the load generator on uvloop when present: less client CPU on a shared machine."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def one_run(target: Target, plan: LoadPlan) -> dict[str, Any]:
    """One load run against ``target``, plus the wait for delivery where that is separate."""
    delivered_before = target.delivered_so_far() if target.delivered_so_far else 0
    cpu_before = target.cpu_seconds()
    result = run_async(run_load(plan))
    load_seconds = time.monotonic() - result.started
    record = _run_record(result)
    done_at: float | None = result.last_accept
    if target.wait_delivered is not None:
        done_at, delivered = target.wait_delivered(delivered_before + result.accepted_total)
        record["delivered"] = delivered - delivered_before
        record["drain_seconds"] = None if done_at is None else done_at - result.last_accept
    else:
        record["delivered"] = result.accepted_total
    # Measured after the delivery wait: Postfix's deliveries are part of the work it does.
    cpu_after = target.cpu_seconds()
    wall = time.monotonic() - result.started
    if cpu_before is not None and cpu_after is not None:
        record["server_cpu_percent"] = 100 * (cpu_after - cpu_before) / wall
    record["client_cpu_percent"] = 100 * result.client_cpu_seconds / load_seconds
    record["fully_delivered"] = done_at is not None
    elapsed = (done_at - result.started) if done_at else float("nan")
    record["delivered_rate"] = result.accepted_total / elapsed if result.accepted_total else 0.0
    return record


def _run_record(result: LoadResult) -> dict[str, Any]:
    return {
        "connections": result.connections,
        "rate": result.rate,
        "accepted_in_window": result.in_window,
        "accepted_total": result.accepted_total,
        "p50_ms": 1000 * percentile(result.latencies, 0.50),
        "p99_ms": 1000 * percentile(result.latencies, 0.99),
        "failures": result.failure_count,
        "failure_kinds": result.failures,
        "failure_examples": result.failure_examples,
        "pipelining": result.pipelining,
    }


def progress_line(target: Target, repetition: str, record: dict[str, Any]) -> str:
    parts = [f"  rep {repetition}  {record['connections']:>3} conn  {target.name:<8}",
             f"{record['rate']:8.1f} msg/s",
             f"p50 {record['p50_ms']:6.1f} ms  p99 {record['p99_ms']:6.1f} ms",
             f"delivered {record['delivered_rate']:7.1f} msg/s"]
    if record.get("drain_seconds") is not None:
        parts.append(f"(drain {record['drain_seconds']:.1f} s)")
    if "server_cpu_percent" in record:
        parts.append(f"server cpu {record['server_cpu_percent']:3.0f}%")
    parts.append(f"client cpu {record['client_cpu_percent']:3.0f}%")
    parts.append(f"failures {record['failures']}")
    if not record["fully_delivered"]:
        parts.append("NOT ALL DELIVERED")
    return "  ".join(parts)


def run_all(targets: list[Target], args: argparse.Namespace) -> None:
    total = args.repetitions * len(args.connections) * len(targets)
    done = 0
    for repetition in range(args.repetitions):
        # Alternate who goes first, so neither server always runs on a "warmer" machine.
        order = targets if repetition % 2 == 0 else targets[::-1]
        for connections in args.connections:
            for target in order:
                plan = LoadPlan("127.0.0.1", target.port, connections, args.warmup,
                                args.duration, SENDER, RECIPIENT, args.size)
                record = one_run(target, plan)
                record["repetition"] = repetition + 1
                target.runs.append(record)
                done += 1
                print(progress_line(target, f"{repetition + 1}/{args.repetitions}", record)
                      + f"  [{done}/{total}]", flush=True)


# ---------------------------------------------------------------------------------------------
# Summary


def summarise(target: Target, connections: int) -> dict[str, Any]:
    runs = [run for run in target.runs if run["connections"] == connections]
    cpu = [run["server_cpu_percent"] for run in runs if "server_cpu_percent" in run]
    return {
        "rate": spread([run["rate"] for run in runs]),
        "p50_ms": median([run["p50_ms"] for run in runs]),
        "p99_ms": median([run["p99_ms"] for run in runs]),
        "delivered_rate": spread([run["delivered_rate"] for run in runs]),
        "failures": sum(run["failures"] for run in runs),
        "not_fully_delivered_runs": sum(not run["fully_delivered"] for run in runs),
        "server_cpu_percent": median(cpu) if cpu else float("nan"),
        "pipelining": all(run["pipelining"] for run in runs),
    }


def ratios(summaries: dict[str, dict[int, dict[str, Any]]]) -> dict[int, dict[str, float]]:
    if not {"mailpost", "postfix"} <= summaries.keys():
        return {}
    mine, theirs = summaries["mailpost"], summaries["postfix"]
    return {connections: {key: mine[connections][key]["median"] /
                          theirs[connections][key]["median"]
                          if theirs[connections][key]["median"] else float("nan")
                          for key in ("rate", "delivered_rate")}
            for connections in mine}


def _range(values: dict[str, float]) -> str:
    return f"{values['median']:.1f} ({values['min']:.0f}-{values['max']:.0f})"


def report(summaries: dict[str, dict[int, dict[str, Any]]],
           ratio: dict[int, dict[str, float]], args: argparse.Namespace) -> str:
    headers = ["server", "conns", "msg/s median (min-max)", "p50 ms", "p99 ms",
               "delivered msg/s", "server cpu", "pipelining", "failures"]
    rows = []
    for connections in args.connections:
        for name, by_connections in summaries.items():
            s = by_connections[connections]
            failures = str(s["failures"])
            if s["not_fully_delivered_runs"]:
                failures += f" ({s['not_fully_delivered_runs']} run(s) not fully delivered)"
            rows.append([name, str(connections), _range(s["rate"]), f"{s['p50_ms']:.1f}",
                         f"{s['p99_ms']:.1f}", _range(s["delivered_rate"]),
                         f"{s['server_cpu_percent']:.0f}%", "yes" if s["pipelining"] else "no",
                         failures])
    lines = [
        "",
        (f"SMTP ingest: {args.size}-byte messages, {args.warmup:g} s warm-up + "
         f"{args.duration:g} s measured, {args.repetitions} repetition(s); "
         "medians over repetitions"),
        "",
        format_table(headers, rows, right_aligned=(1, 2, 3, 4, 5, 6)),
    ]
    for connections, values in ratio.items():
        lines.append(f"mailpost/postfix at {connections:>2} conn: {values['rate']:.2f}x "
                     f"(250 rate), {values['delivered_rate']:.2f}x (delivered rate)")
    return "\n".join([*lines, "", *LEGEND, TARGET_NOTE + "."])


def mailpost_stored(server: MailpostServer) -> int | None:
    """Messages in the recipient's mailbox according to ``mailpost user list``."""
    try:
        output = server.cli("user", "list")
    except BenchError:
        return None
    for line in output.splitlines():
        fields = line.split()
        if fields and fields[0] == RECIPIENT and fields[-1].isdigit():
            return int(fields[-1])
    return None


def git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=False, timeout=10,
                              cwd=os.path.dirname(os.path.abspath(__file__)))
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


# ---------------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Messages/s accepted and made durable over SMTP: mailpost vs Postfix.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repetition of 3 s after a 1 s warm-up")
    parser.add_argument("--only", choices=SERVERS, help="benchmark one server only")
    parser.add_argument("--connections", default="1,20", type=_int_list,
                        help="comma-separated concurrent connection counts (default: 1,20)")
    parser.add_argument("--size", type=int, default=10240,
                        help="message size in octets, headers included (default: 10240)")
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run (default 2)")
    parser.add_argument("--repetitions", type=int, help="runs per case (default 3)")
    args = parser.parse_args(argv)
    quick = (1, 3.0, 1.0) if args.quick else (3, 10.0, 2.0)
    args.repetitions = args.repetitions or quick[0]
    args.duration = args.duration or quick[1]
    args.warmup = args.warmup if args.warmup is not None else quick[2]
    if args.size < 512 or args.repetitions < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("need --size >= 512, --repetitions >= 1, --duration > 0, --warmup >= 0")
    return args


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or any(value < 1 or value > 500 for value in values):
        raise argparse.ArgumentTypeError("connection counts must be 1-500")
    return values


def versions(names: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    if "mailpost" in names:
        found["mailpost"] = metadata.version("mailpost")
        found["mailpost_git"] = git_commit()
    if "postfix" in names:
        found["postfix"] = postfix_version()
    return found


def consistency(targets: list[Target], mailpost: MailpostServer | None) -> dict[str, Any]:
    """Acknowledged messages against what the mailbox holds at the end."""
    checks: dict[str, Any] = {}
    for target in targets:
        acknowledged = sum(run["accepted_total"] for run in target.runs)
        if target.name == "mailpost" and mailpost is not None:
            in_mailbox = mailpost_stored(mailpost)
        else:
            in_mailbox = target.delivered_so_far() if target.delivered_so_far else None
        checks[target.name] = {"acknowledged": acknowledged, "in_mailbox": in_mailbox}
    return checks


def problems_found(summaries: dict[str, dict[int, dict[str, Any]]],
                   checks: dict[str, Any]) -> list[str]:
    problems = []
    for name, by_connections in summaries.items():
        for connections, summary in by_connections.items():
            if summary["failures"]:
                problems.append(f"{name} at {connections} conn: {summary['failures']} failed "
                                "transaction(s)")
            if summary["not_fully_delivered_runs"]:
                problems.append(f"{name} at {connections} conn: not every accepted message "
                                "was delivered")
    for name, check in checks.items():
        if check["in_mailbox"] is not None and check["in_mailbox"] < check["acknowledged"]:
            problems.append(f"{name}: {check['acknowledged']} messages acknowledged with 250 "
                            f"but only {check['in_mailbox']} in the mailbox")
    return problems


def print_preamble(info: dict[str, Any], scratch_fs: str, args: argparse.Namespace,
                   names: list[str]) -> None:
    print(f"machine: {info['cores']} cores, {info['cpu_model']}, Python {info['python']}, "
          f"load {info['load_average_at_start']}")
    print(f"scratch directories under {SCRATCH_ROOT} ({scratch_fs}); servers: "
          f"{', '.join(names)}; connections {args.connections}; "
          f"{args.repetitions} x ({args.warmup:g} s + {args.duration:g} s)", flush=True)
    if scratch_fs in ("tmpfs", "ramfs"):
        print(f"WARNING: {SCRATCH_ROOT} is a {scratch_fs}: fsync costs nothing there, "
              "so the numbers overstate both servers", flush=True)


@bench_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_signals()
    names = [args.only] if args.only else list(SERVERS)
    info = machine_info()
    scratch_fs = filesystem_type(SCRATCH_ROOT)
    print_preamble(info, scratch_fs, args, names)
    mailpost: MailpostServer | None = None
    targets: list[Target] = []
    if "mailpost" in names:
        target, mailpost = start_mailpost(max(args.connections))
        targets.append(target)
    if "postfix" in names:
        targets.append(start_postfix()[0])
    run_all(targets, args)
    summaries = {t.name: {c: summarise(t, c) for c in args.connections} for t in targets}
    ratio = ratios(summaries)
    checks = consistency(targets, mailpost)
    problems = problems_found(summaries, checks)
    print(report(summaries, ratio, args))
    for problem in problems:
        print(f"PROBLEM: {problem}")
    path = write_results("smtp_ingest", {
        "benchmark": "smtp_ingest",
        "machine": info,
        "parameters": {"message_size": args.size, "warmup_s": args.warmup,
                       "duration_s": args.duration, "repetitions": args.repetitions,
                       "connections": args.connections, "scratch_dir": str(SCRATCH_ROOT),
                       "scratch_filesystem": scratch_fs},
        "versions": versions(names),
        "servers": {t.name: {"durability": t.durability, "runs": t.runs,
                             "summary": summaries[t.name]} for t in targets},
        "ratio_mailpost_over_postfix": ratio,
        "consistency": checks,
        "problems": problems,
    })
    print(f"results written to {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
