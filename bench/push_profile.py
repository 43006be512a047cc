"""Where mailpost's memory per idle connection and its push latency go: an in-process profile.

Theory of operation
-------------------
``push_latency.py`` measures from the outside. This helper runs ``mailpost.app.Server`` inside
its own process so that it can look inside: ``tracemalloc`` snapshots before and after the
idlers connect (compared by allocation site, divided by the number of idlers), a count of live
objects by type, and the process's RSS, whose difference to what tracemalloc saw is memory
allocated outside Python's allocator (OpenSSL, libuv, malloc's own overhead and arenas). The
idlers live in a child process (``push_client.py``'s hold mode) so that none of the client's
allocations are counted. With ``--cpu``, the deliveries run under ``cProfile`` (tracing off)
and the functions with the most cumulative time are printed.

Before the first snapshot a few warm-up idlers on other accounts log in and leave again, so
that one-off costs (argon2's 19 MiB working memory kept by malloc in each worker thread's arena,
first-use caches) are not charged to the measured connections.

    .venv/bin/python bench/push_profile.py --idlers 1000 --messages 1000     # fan-out shape
    .venv/bin/python bench/push_profile.py --idlers 2000 --accounts 200 --messages 100
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ctypes
import gc
import io
import json
import pstats
import secrets
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from common import BENCH_DIR, CLEANUP, run_async
from push_client import GCPauses
from push_latency import raise_open_files
from push_servers import FANOUT_ACCOUNT, Plan, prepare_mailpost, spread_account

WARMUP_IDLERS = 12


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def malloc_in_use() -> int | None:
    """Bytes the C allocator has handed out and not got back (glibc ``mallinfo2``): blocks
    in use in the heap arenas plus mmapped blocks, touched or not."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def type_counts(wanted: bool) -> Counter[str]:
    """Live objects by type; this collects garbage first, which a server would not do."""
    if not wanted:
        return Counter()
    gc.collect()
    return Counter(type(obj).__qualname__ for obj in gc.get_objects())


class HeldIdlers:
    """A ``push_client.py`` child process holding idlers open."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, ports: dict[str, int], cert: Path, password: str,
                    idlers: list[str]) -> tuple[HeldIdlers, dict[str, Any]]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(BENCH_DIR / "push_client.py"), "--port", str(ports["imaps"]),
            "--smtp-port", str(ports["smtp"]), "--cert", str(cert), f"--password={password}",
            *idlers, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        held = cls(process)
        return held, await held.answer()

    async def answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError("the idler process ended")
        result: dict[str, Any] = json.loads(line)
        return result

    async def command(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def stop(self) -> None:
        await self.command("quit")
        await self.process.wait()


def top_sites(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, idlers: int,
              limit: int) -> list[str]:
    lines = []
    stats = after.compare_to(before, "traceback")
    total = sum(stat.size_diff for stat in stats)
    lines.append(f"tracemalloc: {total / idlers / 1024:.1f} KiB per idler in Python's "
                 "allocator (all sites)")
    for stat in stats[:limit]:
        if stat.size_diff <= 0:
            continue
        # A traceback runs from the oldest frame to the newest: show the newest first.
        frames = [f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback)]
        lines.append(f"  {stat.size_diff / idlers:8.0f} B/idler  {stat.count_diff / idlers:6.1f} "
                     f"blocks  {' <- '.join(frames[:5])}")
    return lines


def top_types(before: Counter[str], after: Counter[str], idlers: int,
              limit: int) -> list[str]:
    grown = Counter({name: after[name] - before[name] for name in after})
    return ["objects per idler, by type:"] + [
        f"  {count / idlers:7.2f}  {name}" for name, count in grown.most_common(limit)
        if count > 0]


async def profile(args: argparse.Namespace, cert: Path, config_path: Path,
                  password: str) -> None:
    from mailpost.app import Server, configure_logging
    from mailpost.config import load

    configure_logging("warning")
    server = Server(load(config_path))
    await server.start()
    ports = {"imaps": server.port("imaps"), "smtp": server.port("smtp")}
    try:
        warm = [f"{spread_account(args.accounts + i)}" for i in range(WARMUP_IDLERS)]
        held, _ = await HeldIdlers.start(ports, cert, password, warm)
        await held.stop()
        await asyncio.sleep(1)
        if args.trace:
            tracemalloc.start(args.depth)
        counts_before, rss_before, malloc_before = type_counts(args.counts), rss_kib(), \
            malloc_in_use()
        snap_before = tracemalloc.take_snapshot() if args.trace else None
        accounts = [FANOUT_ACCOUNT] if args.accounts == 0 else \
            [spread_account(i) for i in range(args.accounts)]
        per = max(1, args.idlers // len(accounts))
        held, ready = await HeldIdlers.start(ports, cert, password,
                                             [f"{a}*{per}" for a in accounts])
        idlers = ready["ready"]
        await asyncio.sleep(2)
        counts_after, rss_after, malloc_after = type_counts(args.counts), rss_kib(), \
            malloc_in_use()
        snap_after = tracemalloc.take_snapshot() if args.trace else None
        tracemalloc.stop()
        print(f"{idlers} idlers ready ({ready['seconds']} s, errors {ready['errors']}); RSS "
              f"{(rss_after - rss_before) / idlers:.1f} KiB per idler"
              + (" (with tracemalloc's own bookkeeping)" if args.trace else ""))
        if malloc_before is not None and malloc_after is not None:
            print(f"C allocator in use: {(malloc_after - malloc_before) / idlers / 1024:.1f} KiB "
                  "per idler (allocated, touched or not)")
        if snap_before is not None and snap_after is not None:
            print("\n".join(top_sites(snap_before, snap_after, idlers, args.top)))
        print("\n".join(top_types(counts_before, counts_after, idlers, args.top)))
        del snap_before, snap_after
        profiler = cProfile.Profile() if args.cpu else None
        if profiler is not None:
            profiler.enable()
        with GCPauses() as pauses:
            await held.command(f"deliver {accounts[0]} {args.deliveries}")
            answer = await held.answer()
        print(f"deliveries to {accounts[0]}: {answer}")
        print(f"garbage collections during the deliveries: {pauses.summary()}; tracked "
              f"objects {len(gc.get_objects())}")
        if profiler is not None:
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.top)
            print(out.getvalue())
        await held.stop()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="In-process memory/CPU profile of mailpost's "
                                                 "idle connections and push.")
    parser.add_argument("--idlers", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=0,
                        help="spread the idlers over this many accounts; 0: all on one mailbox")
    parser.add_argument("--messages", type=int, default=1000, help="messages per INBOX")
    parser.add_argument("--deliveries", type=int, default=10)
    parser.add_argument("--depth", type=int, default=8, help="traceback depth")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cpu", action="store_true", help="cProfile the deliveries")
    parser.add_argument("--no-counts", dest="counts", action="store_false",
                        help="skip the object counts (and the full collection they need), so "
                             "the deliveries meet the collector as a server would")
    parser.add_argument("--no-trace", dest="trace", action="store_false",
                        help="RSS and object counts only, without tracemalloc's overhead")
    args = parser.parse_args(argv)
    raise_open_files(args.idlers + 1000)
    from mailpost.auth.passwords import hash_password
    password = secrets.token_urlsafe(16)
    spread = args.accounts + WARMUP_IDLERS
    plan = Plan(spread, args.messages, args.messages, args.idlers)
    try:
        server, cert, _ = prepare_mailpost(plan, hash_password(password))
        run_async(profile(args, cert, server.config_path, password))
    finally:
        CLEANUP.run_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
