"""Helpers shared by the benchmarks: clean-up, scratch directories, the mailpost server, statistics
and result files.

Theory of operation
-------------------
A benchmark starts real servers as subprocesses and gives them scratch directories. Whatever it
starts must go away again however the run ends (normal end, an exception, Ctrl-C, SIGTERM), so
every resource registers an undo action with :data:`CLEANUP` as soon as it exists. The actions run
in reverse order from the ``finally`` of the benchmark's ``main`` and, as a backstop, from
``atexit``; each runs at most once. SIGTERM and SIGHUP are turned into ``SystemExit`` so that the
same ``finally`` blocks run as for Ctrl-C.

Scratch directories live under ``/var/tmp``, which is on the normal disk on Debian (``/tmp`` may
be a tmpfs, where fsync costs nothing and a mail server benchmark would measure the wrong thing).

:class:`MailpostServer` runs ``python -m mailpost --config FILE serve`` with a temporary
configuration whose listeners use port 0; the bound ports are read back from the server's
"listening NAME HOST:PORT" log lines, which avoids the race of picking a free port first. The
server's output goes to a log file rather than a pipe, so a chatty server can never block on a
full pipe buffer.

The statistics are deliberately simple: medians over repetitions (robust on a shared, noisy
machine) and percentiles by linear interpolation between closest ranks.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
SCRATCH_ROOT = Path("/var/tmp")


class BenchError(Exception):
    """A benchmark cannot go on: a server did not start, a set-up command failed."""


# ---------------------------------------------------------------------------------------------
# Clean-up


class Cleanup:
    """Undo actions run once, last registered first, even if one of them fails."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, action: Callable[[], None]) -> None:
        self._actions.append((what, action))

    def run_all(self) -> None:
        while self._actions:
            what, action = self._actions.pop()
            try:
                action()
            except Exception as exc:  # noqa: BLE001 -- one failed undo must not stop the rest
                print(f"warning: clean-up of {what} failed: {exc}", file=sys.stderr)


CLEANUP = Cleanup()
atexit.register(CLEANUP.run_all)


class BenchMain(Protocol):
    def __call__(self, argv: list[str] | None = None) -> int: ...


def bench_main(run: Callable[[list[str] | None], int]) -> BenchMain:
    """The exit contract every benchmark shares: its own status (1 = a problem was found),
    2 when a server could not be set up (BenchError), 130 on Ctrl-C; clean-up always runs."""

    def main(argv: list[str] | None = None) -> int:
        try:
            return run(argv)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted; cleaning up", file=sys.stderr)
            return 130
        finally:
            CLEANUP.run_all()

    return main


def exit_cleanly_on_signals() -> None:
    """Make SIGTERM and SIGHUP unwind like Ctrl-C does, so ``finally`` clean-up runs."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)


def scratch_dir(prefix: str) -> Path:
    """A new directory on the normal disk, removed at clean-up; readable by service users."""
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=SCRATCH_ROOT))
    # Servers drop privileges (Postfix runs as postfix/nobody) and must traverse into it.
    path.chmod(0o755)
    CLEANUP.push(f"directory {path}", lambda: remove_tree(path))
    return path


def remove_tree(path: Path, attempts: int = 5) -> None:
    """Remove ``path``; retry briefly because exiting servers may still be writing into it."""
    for attempt in range(attempts):
        try:
            shutil.rmtree(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def filesystem_type(path: Path) -> str:
    """The type of the file system holding ``path`` ("ext4", "tmpfs", ...), from /proc/mounts."""
    best, fstype = "", "unknown"
    resolved = str(path.resolve())
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 3:
                continue
            mount_point = fields[1]
            inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) > len(best):
                best, fstype = mount_point, fields[2]
    return fstype


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for servers that cannot bind port 0 themselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def run_command(args: Sequence[str], what: str, stdin: str | None = None,
                env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """Run a set-up command; return its stdout or raise :class:`BenchError` with its output."""
    try:
        done = subprocess.run(list(args), input=stdin, capture_output=True, text=True,
                              env=env, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{what}: {exc}") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()
        raise BenchError(f"{what} failed (exit {done.returncode}): {output}")
    return done.stdout


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3 onwards of /proc/PID/stat (proc(5)), or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; the rest cannot.
    return stat.rsplit(")", 1)[1].split()


def _process_table() -> dict[int, list[str]]:
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                table[int(entry.name)] = fields
    return table


def process_tree_cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) used so far by ``pid`` and all its descendants.

    A process's own times plus the times of the children it has reaped (cutime, cstime) plus,
    recursively, those of its live children. The difference of two readings is the CPU the
    whole tree used in between, even when children come and go (Postfix's do), because a child
    that exits moves its time into its parent's cutime/cstime once reaped. None if ``pid`` is
    gone.
    """
    table = _process_table()
    if pid not in table:
        return None
    children: dict[int, list[int]] = {}
    for child, fields in table.items():
        children.setdefault(int(fields[1]), []).append(child)
    ticks, pending = 0, [pid]
    while pending:
        current = pending.pop()
        # utime, stime, cutime, cstime are fields 14-17 of proc(5): indexes 11-14 here.
        ticks += sum(int(value) for value in table[current][11:15])
        pending.extend(children.get(current, []))
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree_members(pid: int) -> dict[int, tuple[str, float]]:
    """``pid`` and its live descendants: pid -> (command line, the process's own CPU seconds).

    Unlike :func:`process_tree_cpu_seconds` this leaves out reaped children, so it suits
    long-lived members of a process tree (Dovecot's auth processes): the difference of a pid's
    CPU between two readings is what that process used in between. The command line is what
    the process shows in ``/proc/PID/cmdline`` (servers that set their process title show it).
    """
    table = _process_table()
    if pid not in table:
        return {}
    children: dict[int, list[int]] = {}
    for child, fields in table.items():
        children.setdefault(int(fields[1]), []).append(child)
    members, pending = {}, [pid]
    clock = os.sysconf("SC_CLK_TCK")
    while pending:
        current = pending.pop()
        own = sum(int(value) for value in table[current][11:13]) / clock  # utime, stime
        members[current] = (_command_line(current), own)
        pending.extend(children.get(current, []))
    return members


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


# ---------------------------------------------------------------------------------------------
# The mailpost server


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    # A JSON string of printable text is also a valid TOML basic string.
    return json.dumps(str(value))


_LISTENING = re.compile(r"listening (\w+) (\S+):(\d+)")
_READY = "mailpost ready"


class MailpostServer:
    """A ``mailpost serve`` subprocess with its own configuration and data directory.

    ``listen`` maps protocol names to addresses (use port 0); ``limits`` are ``[limits]`` keys.
    After :meth:`start`, :attr:`ports` maps each protocol to its bound port.
    """

    def __init__(self, workdir: Path, listen: dict[str, str],
                 limits: dict[str, int | float] | None = None,
                 hostname: str = "mx.bench.test", log_level: str = "info") -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config_path = workdir / "mailpost.toml"
        self.log_path = workdir / "mailpost.log"
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config(listen, limits or {}, hostname, log_level)

    def _write_config(self, listen: dict[str, str], limits: dict[str, int | float],
                      hostname: str, log_level: str) -> None:
        lines = [f"hostname = {_toml_value(hostname)}",
                 f"data_dir = {_toml_value(self.data_dir)}", "", "[listen]"]
        lines += [f"{name} = {_toml_value(address)}" for name, address in listen.items()]
        lines += ["", "[limits]"]
        lines += [f"{name} = {_toml_value(value)}" for name, value in limits.items()]
        lines += ["", "[log]", f"level = {_toml_value(log_level)}", ""]
        self.config_path.write_text("\n".join(lines), encoding="utf-8")

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mailpost", "--config", str(self.config_path), *args]

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run an administrative command against this server's store; return its output."""
        return run_command(self.command(*args), f"mailpost {' '.join(args[:2])}", stdin=stdin)

    def add_account(self, address: str, password: str) -> None:
        """Create ``address`` (and its domain, if new) before or while the server runs."""
        domain = address.rpartition("@")[2]
        if domain not in self.cli("domain", "list").split():
            self.cli("domain", "add", domain)
        self.cli("user", "add", address, "--password-stdin", stdin=password + "\n")

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it logs that it is ready."""
        log = self.log_path.open("wb")
        # A session of its own: a Ctrl-C in the terminal reaches only the benchmark, which then
        # stops the server in order instead of racing it.
        self.process = subprocess.Popen(self.command("serve"), stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        CLEANUP.push("mailpost server", self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            if _READY in text:
                self.ports = {m[1]: int(m[3]) for m in _LISTENING.finditer(text)}
                return
            if self.process.poll() is not None:
                raise BenchError(f"mailpost exited with status {self.process.returncode}:\n"
                                 f"{tail(self.log_path)}")
            time.sleep(0.1)
        raise BenchError(f"mailpost not ready after {timeout:.0f} s:\n{tail(self.log_path)}")

    def cpu_seconds(self) -> float | None:
        return None if self.process is None else process_tree_cpu_seconds(self.process.pid)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (mailpost's orderly shutdown), then SIGKILL if it does not exit in time."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# ---------------------------------------------------------------------------------------------
# Statistics


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0-1) percentile, interpolating linearly between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 0.5)


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum and maximum: what the reports quote for repeated measurements."""
    if not values:
        nan = float("nan")
        return {"median": nan, "min": nan, "max": nan}
    return {"median": median(values), "min": min(values), "max": max(values)}


# ---------------------------------------------------------------------------------------------
# Reporting


def format_table(headers: Sequence[str], rows: Iterable[Sequence[str]],
                 right_aligned: Iterable[int] = ()) -> str:
    """A plain-text table; columns in ``right_aligned`` (indexes) are aligned right (numbers)."""
    grid = [list(headers)] + [list(row) for row in rows]
    widths = [max(len(row[i]) for row in grid) for i in range(len(headers))]
    right = set(right_aligned)

    def line(row: Sequence[str]) -> str:
        cells = (cell.rjust(w) if i in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(row, widths)))
        return "  ".join(cells).rstrip()

    separator = "  ".join("-" * w for w in widths)
    return "\n".join([line(grid[0]), separator, *(line(row) for row in grid[1:])])


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_bytes() -> int | None:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", encoding="ascii") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def machine_info() -> dict[str, Any]:
    """What the numbers depend on: cores, CPU, memory, kernel, Python, load, date."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_bytes(),
        "kernel": platform.release(),
        "os": _os_release(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "load_average_at_start": list(load) if load else None,
    }


def _os_release() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release", encoding="utf-8") as release:
        for line in release:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return platform.platform()


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` as ``bench/results/NAME-<UTC timestamp>.json`` and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    text = json.dumps(_finite(data), indent=2, allow_nan=False, default=str)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by null, which JSON can represent."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------------
# Clients


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a load generator on uvloop when present: less client CPU on a shared machine."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def int_list(text: str, low: int = 1, high: int = 500) -> list[int]:
    """Parse "1,10,50" (an argparse type); every value must lie in [low, high]."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or any(value < low or value > high for value in values):
        raise argparse.ArgumentTypeError(f"values must be {low}-{high}")
    return values


def git_describe() -> str | None:
    """``git describe --always --dirty`` of the work tree the benchmark runs from."""
    try:
        done = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=False, timeout=10, cwd=BENCH_DIR)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None
