"""Push latency and the memory of idle connections: mailpost against Dovecot, in one run.

Theory of operation
-------------------
The question is what an IMAP server's real-time push costs and how fast it is at scale: many
clients sit in IDLE (RFC 2177, RFC 9051 §6.3.13) over TLS, a message arrives, and the clients
of that mailbox must hear ``* n EXISTS`` at once. Two shapes, on each server in turn:

* **spread**: ``--spread-idlers`` idlers (default 10,000) over ``--spread-accounts`` accounts
  (1,000; ten devices per account), all connected at once. ``--deliveries`` messages go to
  accounts chosen at random, one at a time; each is timed at that account's idlers while
  everyone else idles. This asks whether the idle crowd costs the active user anything, and
  what an idle TLS connection costs in server memory.
* **fan-out**: 1, 100 and 1,000 idlers on one mailbox (``--fanout``); every delivery must reach
  all of them. The idlers are added between the steps (1, then 99 more, then 900 more).

A delivery is timed from the moment the client reads the delivery's final ``250`` (mailpost:
SMTP on its MX port; Dovecot: LMTP, its own delivery agent) to the moment each idler reads its
``* n EXISTS``; one sample per idler and delivery. The next delivery starts once every idler of
the mailbox has its ``EXISTS`` (or after ``--timeout``, which counts the rest as missed) and a
short pause. Percentiles are over all samples of a case.

Memory: the server's process tree is read from ``/proc`` (see ``push_servers``) right before
the idlers of a shape connect and again once they all idle (after a short settle, whose server
CPU is the "idle cpu" column): (after - before) / idlers, for the resident set (RSS) and, for a
multi-process server like Dovecot, also the proportional set (PSS), which counts a page shared
by many processes once. It is read once more after the deliveries, since a server may build
per-session state only when something changes.

The client is one asyncio process (``push_client``): its open-files limit is raised at start
(and the servers, its children, inherit it), connection set-up is paced (``--concurrency``
handshakes and logins in flight), and connections come from 40 loopback source addresses, as
devices do from many. mailpost runs to completion and stops before Dovecot starts, so neither
has the other's idlers on the machine. Everything is torn down at the end, also on errors or
signals (see ``common.CLEANUP``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import secrets
import sys
import time
from collections.abc import Callable
from functools import partial
from importlib import metadata
from typing import Any

from common import (
    BenchError,
    bench_main,
    exit_cleanly_on_signals,
    format_table,
    git_describe,
    int_list,
    machine_info,
    percentile,
    run_async,
    scratch_dir,
    write_results,
)
from dovecot_instance import dovecot_version
from mailboxes import MessageCorpus
from push_client import (
    Arrivals,
    Deliverer,
    GCPauses,
    Idler,
    abort_all,
    client_context,
    connect_idlers,
    set_aside_garbage_collection,
)
from push_servers import (
    FANOUT_ACCOUNT,
    HOSTNAME,
    Plan,
    Target,
    prepare_dovecot,
    prepare_mailpost,
    settle,
    spread_account,
    start_dovecot,
    start_mailpost,
    tree_memory,
)

SERVERS = ("mailpost", "dovecot")
SENDER = "sender@example.net"
# The targets for mailpost.
TARGET_KIB_PER_CONNECTION = 50
TARGET_SPREAD_P99_MS = 5.0
TARGET_FANOUT_P99_MS = {100: 10.0, 1000: 50.0}


# ---------------------------------------------------------------------------------------------
# One case: deliveries and their samples


class Series:
    """The samples of one case, and the CPU the client used while collecting them."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.missed = 0
        self.deliveries = 0
        self.client_cpu = 0.0
        self.wall = 0.0
        self.client_gc = GCPauses()
        # Per delivery: the mailbox, then min, median and max in ms, and idlers missed.
        self.per_delivery: list[tuple[str, float, float, float, int]] = []

    def summary(self) -> dict[str, Any]:
        values = self.samples
        return {"deliveries": self.deliveries, "samples": len(values), "missed": self.missed,
                "p50_ms": percentile(values, 0.5), "p99_ms": percentile(values, 0.99),
                "max_ms": max(values) if values else float("nan"),
                "client_cpu_percent": 100 * self.client_cpu / self.wall if self.wall else 0.0,
                "client_gc": self.client_gc.summary(),
                "client_gc_longest_ms": self.client_gc.longest_ms,
                "per_delivery": [
                    {"mailbox": address, "min_ms": low, "median_ms": mid, "max_ms": high,
                     "missed": missed}
                    for address, low, mid, high, missed in self.per_delivery]}


async def deliver_and_time(deliverer: Deliverer, idlers: list[Idler], address: str,
                           message: bytes, series: Series, timeout: float) -> None:
    """One delivery to ``address``; one sample per idler of that mailbox."""
    arrivals = Arrivals({idler: idler.count + 1 for idler in idlers if not idler.closed})
    delivered_at = await deliverer.deliver(SENDER, address, message)
    await arrivals.wait(timeout)
    found, missed = arrivals.latencies_ms(delivered_at)
    series.samples.extend(found)
    series.per_delivery.append((address, min(found, default=float("nan")),
                                percentile(found, 0.5), max(found, default=float("nan")),
                                missed))
    series.missed += missed + sum(idler.closed for idler in idlers)
    series.deliveries += 1


async def run_series(deliverer: Deliverer, plan: list[tuple[str, list[Idler]]],
                     messages: MessageCorpus, args: argparse.Namespace) -> Series:
    series = Series()
    cpu, wall = time.process_time(), time.perf_counter()
    with series.client_gc:
        for index, (address, idlers) in enumerate(plan):
            await deliver_and_time(deliverer, idlers, address, messages.message(1, index),
                                   series, args.timeout)
            await asyncio.sleep(args.gap)
    series.client_cpu = time.process_time() - cpu
    series.wall = time.perf_counter() - wall
    return series


# ---------------------------------------------------------------------------------------------
# The two shapes


def per_connection(after: Any, before: Any, idlers: int) -> dict[str, float | None]:
    delta = after.minus(before)
    return {key: (None if value is None else value / max(idlers, 1))
            for key, value in delta.items() if key != "processes"} | {
        "processes_added": delta["processes"]}


async def connect(target: Target, addresses: list[str], args: argparse.Namespace,
                  password: str, label: str) -> tuple[list[Idler], dict[str, Any]]:
    def progress(done: int, total: int) -> None:
        print(f"    {target.name} {label}: {done}/{total} connected", flush=True)

    report = await connect_idlers("127.0.0.1", target.imaps_port, args.context, password,
                                  addresses, args.concurrency, progress)
    set_aside_garbage_collection()
    info = {"wanted": report.wanted, "connected": len(report.idlers),
            "errors": len(report.errors), "error_examples": report.errors[:5],
            "seconds": report.seconds, "tls": sorted(report.tls)}
    return report.idlers, info


async def memory_now(target: Target) -> Any:
    pid = target.pid()
    if pid is None:
        raise BenchError(f"{target.name} is not running")
    return await asyncio.to_thread(tree_memory, pid)


def merged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The set-up records of two groups of idlers as one."""
    return {"wanted": first["wanted"] + second["wanted"],
            "connected": first["connected"] + second["connected"],
            "errors": first["errors"] + second["errors"],
            "error_examples": (first["error_examples"] + second["error_examples"])[:5],
            "seconds": first["seconds"] + second["seconds"],
            "tls": sorted(set(first["tls"]) | set(second["tls"]))}


async def spread_shape(target: Target, deliverer: Deliverer, args: argparse.Namespace,
                       password: str, corpus: MessageCorpus) -> dict[str, Any]:
    """The idlers connect in two groups: the first tenth (which makes every account's first
    login, so it carries the one-off costs of password checks and caches) and the rest, whose
    memory per connection is the marginal cost of one more idle connection."""
    accounts = args.spread_accounts
    await settle(target, 1.0)
    before = await memory_now(target)
    addresses = [spread_account(i % accounts) for i in range(args.spread_idlers)]
    split = max(accounts, len(addresses) // 10) if len(addresses) > accounts else len(addresses)
    idlers, setup = await connect(target, addresses[:split], args, password, "spread")
    await settle(target, 1.0)
    middle = await memory_now(target)
    rest: list[Idler] = []
    if split < len(addresses):
        rest, more = await connect(target, addresses[split:], args, password, "spread")
        setup = merged(setup, more)
    idle_cpu = await settle(target, args.settle)
    after = await memory_now(target)
    idlers += rest
    by_account: dict[str, list[Idler]] = {}
    for idler in idlers:
        by_account.setdefault(idler.address, []).append(idler)
    rng = random.Random(args.seed)
    chosen = [rng.choice(sorted(by_account)) for _ in range(args.deliveries)]
    series = await run_series(deliverer, [(a, by_account[a]) for a in chosen], corpus, args)
    after_deliveries = await memory_now(target)
    abort_all(idlers)
    await asyncio.sleep(1.0)
    return {"idlers": len(idlers), "accounts": len(by_account), "setup": setup,
            "idle_cpu_percent": idle_cpu, "memory_before": vars(before),
            "memory_after_first_group": vars(middle), "first_group": split,
            "memory_idle": vars(after), "memory_after_deliveries": vars(after_deliveries),
            "per_connection_idle": per_connection(after, before, len(idlers)),
            "per_connection_marginal": per_connection(after, middle, len(rest)) if rest
            else None,
            "per_connection_after_deliveries": per_connection(after_deliveries, before,
                                                              len(idlers)),
            **series.summary(), "samples_ms": [round(v, 3) for v in series.samples]}


def fanout_deliveries(idlers: int) -> int:
    """Enough samples for a p99 without making a slow server's 1,000-idler case take minutes."""
    return max(10, min(30, 10_000 // max(idlers, 1)))


async def fanout_shape(target: Target, deliverer: Deliverer, args: argparse.Namespace,
                       password: str, corpus: MessageCorpus) -> list[dict[str, Any]]:
    await settle(target, 1.0)
    before = previous = await memory_now(target)
    idlers: list[Idler] = []
    results: list[dict[str, Any]] = []
    for size in sorted(args.fanout):
        added, setup = await connect(target, [FANOUT_ACCOUNT] * (size - len(idlers)), args,
                                     password, f"fan-out {size}")
        idlers += added
        idle_cpu = await settle(target, args.settle)
        after = await memory_now(target)
        deliveries = args.fanout_deliveries or fanout_deliveries(size)
        series = await run_series(deliverer, [(FANOUT_ACCOUNT, idlers)] * deliveries, corpus,
                                  args)
        results.append({"idlers": len(idlers), "wanted": size, "setup": setup,
                        "idle_cpu_percent": idle_cpu, "memory_idle": vars(after),
                        "per_connection_idle": per_connection(after, before, len(idlers)),
                        "per_connection_marginal": per_connection(after, previous, len(added))
                        if results else None,
                        **series.summary(),
                        "samples_ms": [round(v, 3) for v in series.samples]})
        previous = after
        print(f"  {target.name:<8} fan-out {len(idlers):>5} idlers: "
              f"{_latency_text(results[-1])}", flush=True)
    abort_all(idlers)
    await asyncio.sleep(1.0)
    return results


def _latency_text(record: dict[str, Any]) -> str:
    return (f"p50 {record['p50_ms']:8.1f} ms  p99 {record['p99_ms']:8.1f} ms  "
            f"max {record['max_ms']:8.1f} ms  ({record['samples']} samples, "
            f"{record['missed']} missed)")


async def measure(target: Target, shape: str, args: argparse.Namespace,
                  password: str) -> Any:
    """One shape on a freshly started server."""
    corpus = MessageCorpus(seed=args.seed, median_size=4096, min_size=2048, max_size=8192)
    deliverer = Deliverer("127.0.0.1", target.delivery_port, target.lmtp)
    await deliverer.open()
    try:
        if shape == "fanout":
            return await fanout_shape(target, deliverer, args, password, corpus)
        spread = await spread_shape(target, deliverer, args, password, corpus)
        kib = spread["per_connection_idle"]["rss_kib"]
        print(f"  {target.name:<8} spread {spread['idlers']:>5} idlers over "
              f"{spread['accounts']} accounts: {_latency_text(spread)}; "
              f"{kib:.1f} KiB RSS per idle connection", flush=True)
        return spread
    finally:
        await deliverer.close()


# ---------------------------------------------------------------------------------------------
# Report


def _kib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    headers = ["server", "shape", "idlers", "p50 ms", "p99 ms", "max ms", "samples", "missed",
               "RSS/conn", "marginal", "PSS/conn", "marginal", "idle cpu", "set-up s",
               "errors"]
    rows = []
    for name, result in results.items():
        cases = ([("spread", result["spread"])] if "spread" in result else []) + \
            [("fan-out", case) for case in result.get("fanout", [])]
        for shape, case in cases:
            memory = case["per_connection_idle"]
            marginal = case["per_connection_marginal"] or {}
            cpu = case["idle_cpu_percent"]
            rows.append([name, shape, str(case["idlers"]), f"{case['p50_ms']:.1f}",
                         f"{case['p99_ms']:.1f}", f"{case['max_ms']:.1f}",
                         str(case["samples"]), str(case["missed"]), _kib(memory["rss_kib"]),
                         _kib(marginal.get("rss_kib")), _kib(memory["pss_kib"]),
                         _kib(marginal.get("pss_kib")), "-" if cpu is None else f"{cpu:.0f}%",
                         f"{case['setup']['seconds']:.0f}", str(case["setup"]["errors"])])
    lines = ["", (f"Push latency: SMTP/LMTP 250 -> untagged EXISTS at each idler (IMAP IDLE over "
                  f"TLS); spread INBOXes {args.messages} messages, fan-out INBOX "
                  f"{args.fanout_messages}"), "",
             format_table(headers, rows, right_aligned=range(2, 15)), "",
             ("RSS/conn, PSS/conn (KiB): (server memory with the idlers idling - before they "
              "connected) / idlers; fan-out: from before the first step."),
             ("marginal (KiB): the same for the idlers after the first tenth (spread; the first "
              "tenth makes every account's first login) or added by the step (fan-out)."),
             "idle cpu: the server's CPU while the idlers idled (100% = one core)."]
    return "\n".join(lines + target_lines(results.get("mailpost")))


def target_lines(result: dict[str, Any] | None) -> list[str]:
    if result is None:
        return []
    checks = []
    if "spread" in result:
        spread = result["spread"]
        kib = spread["per_connection_idle"]["rss_kib"]
        marginal = (spread["per_connection_marginal"] or {}).get("rss_kib")
        checks.append((f"memory per idle TLS connection <= {TARGET_KIB_PER_CONNECTION} KB",
                       kib * 1024 / 1000 <= TARGET_KIB_PER_CONNECTION,
                       f"{kib * 1024 / 1000:.1f} KB" + (
                           "" if marginal is None else
                           f" ({marginal * 1024 / 1000:.1f} KB marginal)")))
        checks.append((f"spread p99 < {TARGET_SPREAD_P99_MS:g} ms",
                       spread["p99_ms"] < TARGET_SPREAD_P99_MS, f"{spread['p99_ms']:.1f} ms"))
    for case in result.get("fanout", []):
        limit = TARGET_FANOUT_P99_MS.get(case["idlers"])
        if limit is not None:
            checks.append((f"fan-out {case['idlers']} p99 < {limit:g} ms",
                           case["p99_ms"] < limit, f"{case['p99_ms']:.1f} ms"))
    return ["", "mailpost against the issue's targets:"] + [
        f"  {'met   ' if ok else 'MISSED'} {what}: {value}" for what, ok, value in checks]


def problems_found(results: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    for name, result in results.items():
        cases = ([result["spread"]] if "spread" in result else []) + result.get("fanout", [])
        for case in cases:
            setup = case["setup"]
            if setup["errors"]:
                problems.append(f"{name}: {setup['errors']} idler(s) failed to set up, e.g. "
                                f"{setup['error_examples'][:1]}")
            if case["missed"]:
                problems.append(f"{name} {case['idlers']} idlers: {case['missed']} EXISTS "
                                "never arrived")
            if case["client_gc_longest_ms"] > 5:
                problems.append(f"{name} {case['idlers']} idlers: the client's garbage "
                                f"collector paused for {case['client_gc_longest_ms']:.0f} ms "
                                "during the deliveries")
            if case["client_cpu_percent"] > 85:
                problems.append(f"{name} {case['idlers']} idlers: the client used "
                                f"{case['client_cpu_percent']:.0f}% of a core")
    return problems


# ---------------------------------------------------------------------------------------------
# Set-up and entry point


def raise_open_files(needed: int) -> int:
    """Lift RLIMIT_NOFILE for this process and the servers it starts (they inherit it): the
    soft limit to the hard one, and the hard one too where that is allowed. Raises BenchError
    when the limit stays below ``needed``."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            hard = needed
        except (ValueError, OSError):
            pass  # no privilege to raise the hard limit (e.g. in a container)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise BenchError(f"open-files limit {hard} < {needed} needed: raise it "
                         "(ulimit -Hn) or use fewer idlers")
    return hard


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="IMAP IDLE push latency and memory per idle TLS connection: mailpost vs "
                    "Dovecot.")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1,000 idlers over 100 accounts; fan-out 1,100")
    parser.add_argument("--only", choices=SERVERS, help="benchmark one server only")
    parser.add_argument("--spread-idlers", type=int, help="idlers of the spread shape "
                        "(default 10000; 0 skips it)")
    parser.add_argument("--spread-accounts", type=int, help="accounts they spread over "
                        "(default 1000)")
    parser.add_argument("--fanout", type=lambda t: int_list(t, 1, 5000),
                        help="idlers on one mailbox, comma-separated (default 1,100,1000)")
    parser.add_argument("--no-fanout", action="store_true", help="skip the fan-out shape")
    parser.add_argument("--deliveries", type=int, help="spread deliveries (default 100)")
    parser.add_argument("--fanout-deliveries", type=int, default=0,
                        help="deliveries per fan-out step (default: 30, 30, 10 for 1, 100, "
                             "1000 idlers)")
    parser.add_argument("--messages", type=int, default=100,
                        help="messages in each spread INBOX (default 100)")
    parser.add_argument("--fanout-messages", type=int, default=1000,
                        help="messages in the fan-out INBOX (default 1000)")
    parser.add_argument("--concurrency", type=int, default=300,
                        help="connection set-ups (TLS + LOGIN + SELECT + IDLE) in flight")
    parser.add_argument("--timeout", type=float, default=35.0,
                        help="seconds to wait for a delivery's EXISTS at every idler (default "
                             "35: longer than Dovecot's 30-second fallback check)")
    parser.add_argument("--gap", type=float, default=0.05,
                        help="pause between deliveries, seconds (default 0.05)")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds of idling before memory is read (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    quick = args.quick
    args.spread_idlers = args.spread_idlers if args.spread_idlers is not None else \
        (1000 if quick else 10_000)
    args.spread_accounts = args.spread_accounts or (100 if quick else 1000)
    args.fanout = [] if args.no_fanout else (args.fanout or ([1, 100] if quick else
                                                              [1, 100, 1000]))
    args.deliveries = args.deliveries or (30 if quick else 100)
    if args.quick and args.messages == 100:
        args.messages = 50
    if args.spread_idlers < 0 or args.spread_accounts < 1 or args.concurrency < 1:
        parser.error("need --spread-idlers >= 0, --spread-accounts >= 1, --concurrency >= 1")
    return args


def versions(names: list[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    if "mailpost" in names:
        found["mailpost"] = metadata.version("mailpost")
        found["mailpost_git"] = git_describe()
    if "dovecot" in names:
        found["dovecot"] = dovecot_version()
    return found


def run_server(name: str, plan: Plan, args: argparse.Namespace, password: str,
               password_hash: str, tls: dict[str, Any]) -> dict[str, Any]:
    """Prepare one server, then measure each shape on a fresh start of it: memory freed by
    one shape's sessions must not flatter the next one's figures."""
    started = time.monotonic()
    start: Callable[[], Target]
    if name == "mailpost":
        server, tls["cert"], tls["key"] = prepare_mailpost(plan, password_hash)
        start = partial(start_mailpost, server)
    else:
        if "cert" not in tls:
            from mailpost.net.tls import generate_self_signed
            directory = scratch_dir("bench-tls")
            tls["cert"], tls["key"] = directory / "cert.pem", directory / "key.pem"
            generate_self_signed(tls["cert"], tls["key"], HOSTNAME)
        start = partial(start_dovecot, prepare_dovecot(plan, password_hash, tls["cert"],
                                                       tls["key"]))
    print(f"  {name}: accounts and mailboxes ready in {time.monotonic() - started:.0f} s",
          flush=True)
    args.context = client_context(tls["cert"])
    result: dict[str, Any] = {"server_log": {}}
    shapes = (["spread"] if args.spread_idlers else []) + (["fanout"] if args.fanout else [])
    for shape in shapes:
        target = start()
        try:
            result[shape] = run_async(measure(target, shape, args, password))
        finally:
            result["server_log"][shape] = target.problems()
            target.stop()
    return result


@bench_main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_cleanly_on_signals()
    names = [args.only] if args.only else list(SERVERS)
    most = max([args.spread_idlers, *args.fanout])
    info = machine_info()
    limit = raise_open_files(most + 1000)
    print(f"machine: {info['cores']} cores, {info['cpu_model']}, Python {info['python']}, "
          f"load {info['load_average_at_start']}; open-files limit {limit}")
    print(f"servers: {', '.join(names)}; spread {args.spread_idlers} idlers over "
          f"{args.spread_accounts} accounts, {args.deliveries} deliveries; fan-out "
          f"{args.fanout}", flush=True)
    from mailpost.auth.passwords import hash_password
    password = secrets.token_urlsafe(16)
    password_hash = hash_password(password)
    plan = Plan(args.spread_accounts, args.messages, args.fanout_messages, most)
    tls: dict[str, Any] = {}
    results = {name: run_server(name, plan, args, password, password_hash, tls)
               for name in names}
    print(report(results, args))
    for name, result in results.items():
        for shape, text in result["server_log"].items():
            if not text.startswith("(no errors"):
                print(f"{name} log after {shape}:\n{text}")
    problems = problems_found(results)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    parameters = {key: value for key, value in vars(args).items() if key != "context"}
    path = write_results("push_latency", {
        "benchmark": "push_latency", "machine": info, "parameters": parameters,
        "versions": versions(names), "servers": results, "problems": problems})
    print(f"results written to {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
